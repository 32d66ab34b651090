import Foundation

/// A safetensors element type, named as in the file header.
public enum SafetensorsDType: String, CaseIterable, Sendable {
    case bool = "BOOL", u8 = "U8", i8 = "I8", f8E5M2 = "F8_E5M2", f8E4M3 = "F8_E4M3"
    case i16 = "I16", u16 = "U16", f16 = "F16", bf16 = "BF16"
    case i32 = "I32", u32 = "U32", f32 = "F32", f64 = "F64", i64 = "I64", u64 = "U64"

    public var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8E5M2, .f8E4M3: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .f64, .i64, .u64: return 8
        }
    }

    /// Order the Python library stores tensors in (its Rust `Dtype` enum order, larger first).
    var storageRank: Int {
        switch self {
        case .bool: return 0
        case .u8: return 4
        case .i8: return 5
        case .f8E5M2: return 6
        case .f8E4M3: return 7
        case .i16: return 9
        case .u16: return 10
        case .f16: return 11
        case .bf16: return 12
        case .i32: return 13
        case .u32: return 14
        case .f32: return 15
        case .f64: return 16
        case .i64: return 17
        case .u64: return 18
        }
    }
}

/// Where one tensor lives in a safetensors file.
public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    /// Row-major (PyTorch) order: the last dimension varies fastest.
    public let dimensions: [Int]
    /// Absolute byte offset of the tensor's data in the file.
    public let offset: Int
    public let byteCount: Int
    public let elementCount: Int
}

/// A safetensors file, memory-mapped, its JSON header validated against the data it describes.
public final class SafetensorsFile: @unchecked Sendable {
    // @unchecked Sendable: all state is immutable after init; the mapping is read-only.
    public let url: URL
    /// The `__metadata__` string map (empty when absent).
    public let metadata: [String: String]
    /// Tensors in data order.
    public let tensors: [SafetensorsTensorInfo]

    private let file: MappedFile

    /// Drops the file's pages from resident memory (see `MappedFile.releaseResidentPages`).
    public func releaseResidentPages() { file.releaseResidentPages() }
    private let tensorIndex: [String: Int]

    /// The Python library refuses headers above 100 MB; so do we, before parsing anything.
    static let maximumHeaderSize = 100_000_000

    public init(url: URL) throws {
        self.url = url
        let file = try MappedFile(url: url)
        self.file = file
        let path = url.path
        let bytes = file.bytes
        guard bytes.count >= 8 else {
            throw FormatError(path: path, problem: "file has \(bytes.count) bytes, too short for a safetensors header",
                              fix: "the file is truncated or not a safetensors file")
        }
        let headerLength = UInt64(littleEndian: bytes.baseAddress!.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(Self.maximumHeaderSize), headerLength <= UInt64(bytes.count - 8) else {
            throw FormatError(path: path, problem: "header length \(headerLength) does not fit in the \(bytes.count)-byte file",
                              fix: "the file is truncated or not a safetensors file")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + Int(headerLength))])
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw FormatError(path: path, problem: "header does not start with '{'", fix: "not a safetensors file")
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(headerBytes), options: [])
        } catch {
            throw FormatError(path: path, problem: "header is not valid JSON (\(error.localizedDescription))")
        }
        guard let header = json as? [String: Any] else {
            throw FormatError(path: path, problem: "header is not a JSON object")
        }

        var metadata: [String: String] = [:]
        // MLX's save_safetensors writes `"__metadata__": null`, which the safetensors library reads as no metadata.
        if let rawMetadata = header["__metadata__"], !(rawMetadata is NSNull) {
            guard let map = rawMetadata as? [String: Any] else {
                throw FormatError(path: path, problem: "__metadata__ is not a JSON object of strings")
            }
            for (key, value) in map {
                guard let string = value as? String else {
                    throw FormatError(path: path, problem: "__metadata__ value for \(key) is not a string")
                }
                metadata[key] = string
            }
        }
        self.metadata = metadata

        let dataStart = 8 + Int(headerLength)
        let dataSize = bytes.count - dataStart
        var tensors: [SafetensorsTensorInfo] = []
        for (name, rawEntry) in header where name != "__metadata__" {
            tensors.append(try Self.parseEntry(name: name, rawEntry, dataStart: dataStart, dataSize: dataSize, path: path))
        }
        tensors.sort { $0.offset < $1.offset || ($0.offset == $1.offset && $0.byteCount < $1.byteCount) }
        // Like the Python library: tensors tile the data section exactly, with no gaps or overlaps.
        var expectedOffset = dataStart
        for tensor in tensors {
            guard tensor.offset == expectedOffset else {
                throw FormatError(path: path, problem: "tensor \(tensor.name) starts at data offset \(tensor.offset - dataStart), expected \(expectedOffset - dataStart) (tensors must cover the data without gaps or overlaps)",
                                  fix: "the file is corrupt; save it again")
            }
            expectedOffset += tensor.byteCount
        }
        guard expectedOffset == bytes.count else {
            throw FormatError(path: path, problem: "tensors cover \(expectedOffset - dataStart) bytes of data but the file holds \(dataSize)",
                              fix: "the file is truncated or corrupt")
        }
        self.tensors = tensors
        self.tensorIndex = Dictionary(uniqueKeysWithValues: tensors.enumerated().map { ($1.name, $0) })
    }

    private static func parseEntry(name: String, _ rawEntry: Any, dataStart: Int, dataSize: Int, path: String) throws -> SafetensorsTensorInfo {
        guard let entry = rawEntry as? [String: Any] else {
            throw FormatError(path: path, problem: "header entry for tensor \(name) is not a JSON object")
        }
        guard let dtypeName = entry["dtype"] as? String else {
            throw FormatError(path: path, problem: "tensor \(name) has no dtype")
        }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw FormatError(path: path, problem: "tensor \(name) has unknown dtype \(dtypeName)")
        }
        guard let shape = integers(entry["shape"]), shape.allSatisfy({ $0 >= 0 }) else {
            throw FormatError(path: path, problem: "tensor \(name) has no valid shape (a list of non-negative integers)")
        }
        guard let offsets = integers(entry["data_offsets"]), offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1] else {
            throw FormatError(path: path, problem: "tensor \(name) has no valid data_offsets (two increasing integers)")
        }
        guard offsets[1] <= dataSize else {
            throw FormatError(path: path, problem: "tensor \(name) has data_offsets \(offsets) outside the \(dataSize)-byte data section",
                              fix: "the file is truncated or corrupt")
        }
        var elements = 1
        for size in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: size)
            guard !overflow else {
                throw FormatError(path: path, problem: "tensor \(name) has a shape \(shape) whose element count overflows")
            }
            elements = product
        }
        let (expectedBytes, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow, expectedBytes == offsets[1] - offsets[0] else {
            throw FormatError(path: path, problem: "tensor \(name) of dtype \(dtype.rawValue) and shape \(shape) needs \(overflow ? -1 : expectedBytes) bytes but its data_offsets \(offsets) span \(offsets[1] - offsets[0])",
                              fix: "the header's dtype, shape and offsets disagree; the file is corrupt")
        }
        return SafetensorsTensorInfo(name: name, dtype: dtype, dimensions: shape, offset: dataStart + offsets[0],
                                     byteCount: expectedBytes, elementCount: elements)
    }

    /// JSON integers (JSONSerialization gives NSNumbers; fractions are rejected).
    private static func integers(_ value: Any?) -> [Int]? {
        guard let numbers = value as? [Any] else { return nil }
        var result: [Int] = []
        for number in numbers {
            guard let nsNumber = number as? NSNumber, let integer = Int(exactly: nsNumber.doubleValue) else { return nil }
            result.append(integer)
        }
        return result
    }

    public func tensor(named name: String) -> SafetensorsTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The tensor's bytes in the mapping, without copying. Valid only while this `SafetensorsFile` is alive.
    public func rawBytes(of tensor: SafetensorsTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[tensor.offset..<(tensor.offset + tensor.byteCount)])
    }

    /// The values of an F32, F16 or BF16 tensor as Floats, row-major.
    public func floats(of tensor: SafetensorsTensorInfo) throws -> [Float] {
        let type: GGMLType
        switch tensor.dtype {
        case .f32: type = .f32
        case .f16: type = .f16
        case .bf16: type = .bf16
        default:
            throw FormatError(path: url.path, problem: "tensor \(tensor.name) has dtype \(tensor.dtype.rawValue), which is not read as floats",
                              fix: "only F32, F16 and BF16 tensors can be read as floats")
        }
        var values = [Float](repeating: 0, count: tensor.elementCount)
        try values.withUnsafeMutableBufferPointer { try type.dequantize(rawBytes(of: tensor), into: $0) }
        return values
    }

    /// The values of a U8 tensor, row-major.
    public func bytes(of tensor: SafetensorsTensorInfo) throws -> [UInt8] {
        guard tensor.dtype == .u8 else {
            throw FormatError(path: url.path, problem: "tensor \(tensor.name) has dtype \(tensor.dtype.rawValue), expected U8")
        }
        return Array(rawBytes(of: tensor))
    }

    public func floats(named name: String) throws -> [Float] {
        guard let tensor = tensor(named: name) else {
            throw FormatError(path: url.path, problem: "no tensor named \(name)")
        }
        return try floats(of: tensor)
    }
}
