import Foundation

/// Builds a GGUF v3 file from ordered metadata and tensors (F32, F16, BF16 or quantized by `GGMLType.quantize`).
/// Used to export models and to build tiny test models.
public struct GGUFWriter {
    private struct PendingTensor {
        let name: String
        let dimensions: [Int]
        let type: GGMLType
        let bytes: [UInt8]
    }

    public let alignment: Int
    private var keys: [String] = []
    private var values: [String: GGUFValue] = [:]
    private var tensors: [PendingTensor] = []
    private var tensorNames: Set<String> = []

    /// `alignment` other than 32 is recorded as `general.alignment`, as readers require.
    public init(alignment: Int = GGUFFile.defaultAlignment) throws {
        guard alignment > 0, alignment & (alignment - 1) == 0, alignment <= Int(UInt32.max) else {
            throw FormatError(path: "(GGUF writer)", problem: "alignment \(alignment) is not a power of two")
        }
        self.alignment = alignment
        if alignment != GGUFFile.defaultAlignment {
            keys.append("general.alignment")
            values["general.alignment"] = .uint32(UInt32(alignment))
        }
    }

    /// Sets a metadata value. A new key goes after the existing ones; replacing a value keeps the key's position.
    public mutating func setValue(_ value: GGUFValue, forKey key: String) throws {
        try Self.validate(value, key: key)
        if key == "general.alignment" && value != .uint32(UInt32(alignment)) {
            throw FormatError(path: "(GGUF writer)", problem: "general.alignment is set from init(alignment:) (\(alignment)); got \(value)")
        }
        if values.updateValue(value, forKey: key) == nil {
            keys.append(key)
        }
    }

    /// Adds a tensor from Floats, encoding it as `type`. `dimensions` are in ggml order (ne0 first, fastest varying).
    public mutating func addTensor(name: String, dimensions: [Int], values: [Float], type: GGMLType) throws {
        let count = try checkedElementCount(name: name, dimensions: dimensions, type: type)
        guard count == values.count else {
            throw FormatError(path: "(GGUF writer)", problem: "tensor \(name) has dimensions \(dimensions) (\(count) elements) but \(values.count) values were given")
        }
        let bytes: [UInt8]
        do {
            bytes = try type.quantize(values)
        } catch let error as FormatError {
            throw FormatError(path: "(GGUF writer)", problem: "tensor \(name): \(error.problem)", fix: error.fix)
        }
        appendTensor(PendingTensor(name: name, dimensions: dimensions, type: type, bytes: bytes))
    }

    /// Adds a tensor whose bytes are already encoded in `type` (e.g. copied from another GGUF file).
    public mutating func addTensor(name: String, dimensions: [Int], type: GGMLType, rawBytes: [UInt8]) throws {
        let count = try checkedElementCount(name: name, dimensions: dimensions, type: type)
        guard let expected = type.byteCount(elementCount: count), expected == rawBytes.count else {
            throw FormatError(path: "(GGUF writer)", problem: "tensor \(name) of type \(type) and dimensions \(dimensions) takes \(type.byteCount(elementCount: count) ?? -1) bytes, \(rawBytes.count) given")
        }
        appendTensor(PendingTensor(name: name, dimensions: dimensions, type: type, bytes: rawBytes))
    }

    /// The whole file's bytes.
    public func encoded() -> Data {
        var data = Data()
        emit { data.append(contentsOf: $0) }
        return data
    }

    /// Writes the file atomically (temporary file, then rename).
    public func write(to url: URL) throws {
        try AtomicFileWriter(destination: url).write { handle in
            // Chunks are gathered into a few-MB buffer so large models are written without one giant Data.
            var buffer = Data()
            try emit { chunk in
                buffer.append(contentsOf: chunk)
                if buffer.count >= 1 << 22 {
                    try handle.write(contentsOf: buffer)
                    buffer.removeAll(keepingCapacity: true)
                }
            }
            try handle.write(contentsOf: buffer)
        }
    }

    // MARK: Encoding

    private func emit(_ sink: ([UInt8]) throws -> Void) rethrows {
        var header: [UInt8] = []
        Self.append(GGUFFile.magic, to: &header)
        Self.append(UInt32(3), to: &header)
        Self.append(UInt64(tensors.count), to: &header)
        Self.append(UInt64(keys.count), to: &header)
        for key in keys {
            guard let value = values[key] else { continue }
            Self.append(key, to: &header)
            Self.append(value.type.rawValue, to: &header)
            Self.append(value, to: &header)
        }
        var relativeOffset = 0
        for tensor in tensors {
            Self.append(tensor.name, to: &header)
            Self.append(UInt32(tensor.dimensions.count), to: &header)
            for size in tensor.dimensions { Self.append(UInt64(size), to: &header) }
            Self.append(tensor.type.rawValue, to: &header)
            Self.append(UInt64(relativeOffset), to: &header)
            relativeOffset += padded(tensor.bytes.count)
        }
        header += [UInt8](repeating: 0, count: padded(header.count) - header.count)
        try sink(header)
        for tensor in tensors {
            try sink(tensor.bytes)
            let padding = padded(tensor.bytes.count) - tensor.bytes.count
            if padding > 0 { try sink([UInt8](repeating: 0, count: padding)) }
        }
    }

    private func padded(_ count: Int) -> Int {
        (count + alignment - 1) / alignment * alignment
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    private static func append(_ string: String, to bytes: inout [UInt8]) {
        let utf8 = Array(string.utf8)
        append(UInt64(utf8.count), to: &bytes)
        bytes += utf8
    }

    private static func append(_ value: GGUFValue, to bytes: inout [UInt8]) {
        switch value {
        case .uint8(let v): append(v, to: &bytes)
        case .int8(let v): append(v, to: &bytes)
        case .uint16(let v): append(v, to: &bytes)
        case .int16(let v): append(v, to: &bytes)
        case .uint32(let v): append(v, to: &bytes)
        case .int32(let v): append(v, to: &bytes)
        case .uint64(let v): append(v, to: &bytes)
        case .int64(let v): append(v, to: &bytes)
        case .float32(let v): append(v.bitPattern, to: &bytes)
        case .float64(let v): append(v.bitPattern, to: &bytes)
        case .bool(let v): bytes.append(v ? 1 : 0)
        case .string(let v): append(v, to: &bytes)
        case .array(let elementType, let elements):
            append(elementType.rawValue, to: &bytes)
            append(UInt64(elements.count), to: &bytes)
            for element in elements { append(element, to: &bytes) }
        }
    }

    // MARK: Validation

    private static func validate(_ value: GGUFValue, key: String) throws {
        guard case .array(let elementType, let elements) = value else { return }
        for element in elements {
            guard element.type == elementType else {
                throw FormatError(path: "(GGUF writer)", problem: "metadata array \(key) is declared as \(elementType) but holds a \(element.type)",
                                  fix: "all elements of a GGUF array must have the declared type")
            }
            try validate(element, key: key)
        }
    }

    private func checkedElementCount(name: String, dimensions: [Int], type: GGMLType) throws -> Int {
        guard !tensorNames.contains(name) else {
            throw FormatError(path: "(GGUF writer)", problem: "tensor \(name) was added twice")
        }
        guard (1...GGUFFile.maximumDimensions).contains(dimensions.count), dimensions.allSatisfy({ $0 > 0 }) else {
            throw FormatError(path: "(GGUF writer)", problem: "tensor \(name) has dimensions \(dimensions); 1 to \(GGUFFile.maximumDimensions) positive sizes are required")
        }
        guard dimensions[0] % type.blockSize == 0 else {
            throw FormatError(path: "(GGUF writer)", problem: "tensor \(name): first dimension \(dimensions[0]) is not a multiple of the \(type) block size \(type.blockSize)",
                              fix: "store this tensor as F32, F16 or BF16")
        }
        var count = 1
        for size in dimensions {
            let (product, overflow) = count.multipliedReportingOverflow(by: size)
            guard !overflow else {
                throw FormatError(path: "(GGUF writer)", problem: "tensor \(name) has too many elements (dimensions \(dimensions))")
            }
            count = product
        }
        return count
    }

    private mutating func appendTensor(_ tensor: PendingTensor) {
        tensorNames.insert(tensor.name)
        tensors.append(tensor)
    }
}
