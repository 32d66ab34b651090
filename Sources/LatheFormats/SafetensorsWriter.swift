import Foundation

/// Builds a safetensors file (F32, F16, BF16) laid out as the Python `safetensors` library lays it out: tensors
/// ordered by dtype (F32, BF16, F16) then name, compact JSON header padded with spaces to a multiple of 8 bytes,
/// `__metadata__` keys sorted. Used to save adapters and test models.
public struct SafetensorsWriter {
    private struct PendingTensor {
        let name: String
        let dtype: SafetensorsDType
        let dimensions: [Int]
        let bytes: [UInt8]
    }

    /// Written as `__metadata__` when not empty.
    public var metadata: [String: String]
    private var tensors: [String: PendingTensor] = [:]

    public init(metadata: [String: String] = [:]) {
        self.metadata = metadata
    }

    /// Adds a tensor; `dimensions` in row-major (PyTorch) order. Values are rounded to nearest even for F16/BF16.
    public mutating func addTensor(name: String, dimensions: [Int], values: [Float], dtype: SafetensorsDType) throws {
        try checkNew(name: name, dimensions: dimensions, count: values.count)
        let type: GGMLType
        switch dtype {
        case .f32: type = .f32
        case .f16: type = .f16
        case .bf16: type = .bf16
        default:
            throw FormatError(path: "(safetensors writer)", problem: "tensor \(name): dtype \(dtype.rawValue) cannot be written",
                              fix: "use F32, F16 or BF16")
        }
        tensors[name] = PendingTensor(name: name, dtype: dtype, dimensions: dimensions, bytes: try type.quantize(values))
    }

    /// Adds a U8 tensor (codes, masks); `dimensions` in row-major order.
    public mutating func addTensor(name: String, dimensions: [Int], bytes: [UInt8]) throws {
        try checkNew(name: name, dimensions: dimensions, count: bytes.count)
        tensors[name] = PendingTensor(name: name, dtype: .u8, dimensions: dimensions, bytes: bytes)
    }

    /// A new tensor needs an unused name and a shape that holds exactly `count` elements.
    private func checkNew(name: String, dimensions: [Int], count elementCount: Int) throws {
        guard name != "__metadata__", tensors[name] == nil else {
            throw FormatError(path: "(safetensors writer)", problem: "tensor name \(name) is reserved or was added twice")
        }
        guard dimensions.allSatisfy({ $0 >= 0 }) else {
            throw FormatError(path: "(safetensors writer)", problem: "tensor \(name) has negative dimensions \(dimensions)")
        }
        var count: Int? = 1
        for size in dimensions {
            guard let current = count else { break }
            let (product, overflow) = current.multipliedReportingOverflow(by: size)
            count = overflow ? nil : product
        }
        guard count == elementCount else {
            throw FormatError(path: "(safetensors writer)", problem: "tensor \(name) has shape \(dimensions) but \(elementCount) values were given")
        }
    }

    /// The whole file's bytes.
    public func encoded() -> Data {
        let ordered = tensors.values.sorted { left, right in
            if left.dtype.storageRank != right.dtype.storageRank { return left.dtype.storageRank > right.dtype.storageRank }
            return Array(left.name.utf8).lexicographicallyPrecedes(Array(right.name.utf8))
        }
        var json = "{"
        var entries: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
                .map { "\(Self.quoted($0)):\(Self.quoted(metadata[$0] ?? ""))" }
            entries.append("\"__metadata__\":{" + pairs.joined(separator: ",") + "}")
        }
        var offset = 0
        for tensor in ordered {
            let shape = tensor.dimensions.map(String.init).joined(separator: ",")
            entries.append("\(Self.quoted(tensor.name)):{\"dtype\":\"\(tensor.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + tensor.bytes.count)]}")
            offset += tensor.bytes.count
        }
        json += entries.joined(separator: ",") + "}"
        var header = Array(json.utf8)
        header += [UInt8](repeating: UInt8(ascii: " "), count: (8 - header.count % 8) % 8)
        var data = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: header)
        for tensor in ordered { data.append(contentsOf: tensor.bytes) }
        return data
    }

    /// Writes the file atomically (temporary file, then rename).
    public func write(to url: URL) throws {
        let data = encoded()
        try AtomicFileWriter(destination: url).write { try $0.write(contentsOf: data) }
    }

    /// A JSON string as serde_json writes it: quote, backslash and control characters escaped, the rest raw UTF-8.
    static func quoted(_ string: String) -> String {
        var result = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case "\u{08}": result += "\\b"
            case "\u{0C}": result += "\\f"
            case let control where control.value < 0x20:
                result += "\\u00" + (control.value < 0x10 ? "0" : "") + String(control.value, radix: 16)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
