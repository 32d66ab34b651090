import Foundation

/// Where one tensor lives in a GGUF file.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// ggml order: `dimensions[0]` (ne0) varies fastest, i.e. a PyTorch `[rows, cols]` weight is `[cols, rows]` here.
    public let dimensions: [Int]
    public let type: GGMLType
    /// Absolute byte offset of the tensor's data in the file.
    public let offset: Int
    public let byteCount: Int
    public let elementCount: Int
}

/// A GGUF model file (v2 or v3), memory-mapped and validated before anything in it is trusted.
public final class GGUFFile: @unchecked Sendable {
    // @unchecked Sendable: all state is immutable after init; the mapping is read-only.
    public let url: URL
    public let version: Int
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    /// Tensors in file order.
    public let tensors: [GGUFTensorInfo]
    /// Data alignment (`general.alignment`, default 32).
    public let alignment: Int
    /// Absolute offset of the tensor data section.
    public let dataOffset: Int

    private let file: MappedFile

    /// Drops the file's pages from resident memory (see `MappedFile.releaseResidentPages`).
    public func releaseResidentPages() { file.releaseResidentPages() }
    private let tensorIndex: [String: Int]

    public static let defaultAlignment = 32
    static let magic: UInt32 = 0x4655_4747  // "GGUF" read as a little-endian UInt32
    /// Nested arrays deeper than this are rejected rather than recursed into (a hostile file could overflow the stack).
    static let maximumArrayDepth = 8
    static let maximumDimensions = 4

    public init(url: URL) throws {
        self.url = url
        let file = try MappedFile(url: url)
        self.file = file
        let path = url.path
        var reader = GGUFByteReader(bytes: file.bytes, path: path)

        let magic = try reader.read(UInt32.self, "magic")
        guard magic == Self.magic else {
            throw FormatError(path: path, problem: "not a GGUF file (the first 4 bytes are not \"GGUF\")",
                              fix: "pass a .gguf model file")
        }
        let version = try reader.read(UInt32.self, "version")
        switch version {
        case 2, 3: break
        case 1:
            throw FormatError(path: path, problem: "GGUF version 1 is not supported",
                              fix: "re-convert the model with a current llama.cpp (convert_hf_to_gguf.py) to get version 3")
        default:
            let bigEndianHint = version.byteSwapped <= 3 ? "; the file looks big-endian, which is not supported" : ""
            throw FormatError(path: path, problem: "unsupported GGUF version \(version)\(bigEndianHint)",
                              fix: "versions 2 and 3 are supported")
        }
        self.version = Int(version)

        let tensorCount = try reader.read(UInt64.self, "tensor count")
        let keyValueCount = try reader.read(UInt64.self, "metadata count")
        // Smallest possible entries: a key/value is an empty key (8) + type (4) + a 1-byte value; a tensor info is
        // an empty name (8) + dimension count (4) + type (4) + offset (8).
        guard keyValueCount <= UInt64(file.count / 13) else {
            throw FormatError(path: path, problem: "header claims \(keyValueCount) metadata entries, more than fit in a \(file.count)-byte file",
                              fix: "the file is corrupt or truncated")
        }
        guard tensorCount <= UInt64(file.count / 24) else {
            throw FormatError(path: path, problem: "header claims \(tensorCount) tensors, more than fit in a \(file.count)-byte file",
                              fix: "the file is corrupt or truncated")
        }

        var keys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        keys.reserveCapacity(Int(keyValueCount))
        for index in 0..<Int(keyValueCount) {
            let key = try reader.readString("key of metadata entry \(index)")
            let rawType = try reader.read(UInt32.self, "value type of \(key)")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw FormatError(path: path, problem: "metadata \(key) has unknown value type \(rawType)",
                                  fix: "the file is corrupt or from a newer GGUF revision")
            }
            let value = try reader.readValue(type, key: key, depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw FormatError(path: path, problem: "metadata key \(key) appears twice")
            }
            keys.append(key)
        }
        self.metadataKeys = keys
        self.metadata = metadata

        var alignment = Self.defaultAlignment
        if let value = metadata["general.alignment"] {
            guard case .uint32(let declared) = value, declared > 0, declared & (declared - 1) == 0 else {
                throw FormatError(path: path, problem: "general.alignment must be a power-of-two uint32, found \(value)")
            }
            alignment = Int(declared)
        }
        self.alignment = alignment

        struct RawTensor { let name: String; let dimensions: [Int]; let type: GGMLType; let relativeOffset: UInt64; let elements: Int; let bytes: Int }
        var rawTensors: [RawTensor] = []
        rawTensors.reserveCapacity(Int(tensorCount))
        var tensorIndex: [String: Int] = [:]
        for index in 0..<Int(tensorCount) {
            let name = try reader.readString("name of tensor \(index)")
            let dimensionCount = try reader.read(UInt32.self, "dimension count of tensor \(name)")
            guard dimensionCount >= 1, dimensionCount <= UInt32(Self.maximumDimensions) else {
                throw FormatError(path: path, problem: "tensor \(name) has \(dimensionCount) dimensions; 1 to \(Self.maximumDimensions) are allowed")
            }
            var dimensions: [Int] = []
            var elements = 1
            for axis in 0..<Int(dimensionCount) {
                let size = try reader.read(UInt64.self, "dimension \(axis) of tensor \(name)")
                guard size > 0, size <= UInt64(Int.max) else {
                    throw FormatError(path: path, problem: "tensor \(name) has dimension \(axis) = \(size); dimensions must be positive")
                }
                let (product, overflow) = elements.multipliedReportingOverflow(by: Int(size))
                guard !overflow else {
                    throw FormatError(path: path, problem: "tensor \(name) has an element count that overflows (dimensions \(dimensions + [Int(size)]))")
                }
                elements = product
                dimensions.append(Int(size))
            }
            let typeID = try reader.read(UInt32.self, "type of tensor \(name)")
            guard let type = GGMLType(rawValue: typeID) else {
                throw FormatError(path: path, problem: "tensor \(name) has unknown ggml type id \(typeID)",
                                  fix: "the file needs a newer reader, or is corrupt")
            }
            guard dimensions[0] % type.blockSize == 0, let bytes = type.byteCount(elementCount: elements) else {
                throw FormatError(path: path, problem: "tensor \(name) of type \(type) has first dimension \(dimensions[0]), not a multiple of the block size \(type.blockSize)")
            }
            let relativeOffset = try reader.read(UInt64.self, "data offset of tensor \(name)")
            guard tensorIndex.updateValue(index, forKey: name) == nil else {
                throw FormatError(path: path, problem: "tensor name \(name) appears twice")
            }
            rawTensors.append(RawTensor(name: name, dimensions: dimensions, type: type, relativeOffset: relativeOffset, elements: elements, bytes: bytes))
        }

        let (alignedEnd, overflow) = reader.offset.addingReportingOverflow(alignment - 1)
        let dataOffset = overflow ? Int.max : alignedEnd / alignment * alignment
        guard dataOffset <= file.count || rawTensors.isEmpty else {
            throw FormatError(path: path, problem: "file ends at byte \(file.count) before the tensor data section (byte \(dataOffset))",
                              fix: "the file is truncated; download or convert it again")
        }
        self.dataOffset = dataOffset

        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(rawTensors.count)
        for raw in rawTensors {
            guard raw.relativeOffset % UInt64(alignment) == 0 else {
                throw FormatError(path: path, problem: "tensor \(raw.name) has data offset \(raw.relativeOffset), not a multiple of the alignment \(alignment)")
            }
            let available = UInt64(file.count - min(dataOffset, file.count))
            guard raw.relativeOffset <= available, UInt64(raw.bytes) <= available - raw.relativeOffset else {
                throw FormatError(path: path, problem: "tensor \(raw.name) (\(raw.bytes) bytes at data offset \(raw.relativeOffset)) extends past the end of the file (\(file.count) bytes)",
                                  fix: "the file is truncated or corrupt; download or convert it again")
            }
            tensors.append(GGUFTensorInfo(name: raw.name, dimensions: raw.dimensions, type: raw.type,
                                          offset: dataOffset + Int(raw.relativeOffset), byteCount: raw.bytes, elementCount: raw.elements))
        }
        self.tensors = tensors
        self.tensorIndex = tensorIndex
    }

    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The tensor's bytes in the mapping, without copying. Valid only while this `GGUFFile` is alive.
    public func rawBytes(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[tensor.offset..<(tensor.offset + tensor.byteCount)])
    }

    /// Decodes a tensor into `destination`, which must hold exactly `tensor.elementCount` floats.
    public func dequantize(_ tensor: GGUFTensorInfo, into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard destination.count == tensor.elementCount else {
            throw FormatError(path: url.path, problem: "tensor \(tensor.name) has \(tensor.elementCount) elements but the destination holds \(destination.count)")
        }
        do {
            try tensor.type.dequantize(rawBytes(of: tensor), into: destination)
        } catch let error as FormatError {
            throw FormatError(path: url.path, problem: "tensor \(tensor.name): \(error.problem)", fix: error.fix)
        }
    }

    /// The tensor's values as Floats, in ggml order (ne0 fastest).
    public func floats(of tensor: GGUFTensorInfo) throws -> [Float] {
        var values = [Float](repeating: 0, count: tensor.elementCount)
        try values.withUnsafeMutableBufferPointer { try dequantize(tensor, into: $0) }
        return values
    }

    public func floats(named name: String) throws -> [Float] {
        guard let tensor = tensor(named: name) else {
            throw FormatError(path: url.path, problem: "no tensor named \(name)")
        }
        return try floats(of: tensor)
    }

    // MARK: Typed metadata access that names the key when it fails.

    public func requiredValue(_ key: String) throws -> GGUFValue {
        guard let value = metadata[key] else {
            throw FormatError(path: url.path, problem: "metadata key \(key) is missing")
        }
        return value
    }

    public func requiredInt(_ key: String) throws -> Int {
        try typed(key, "an integer") { $0.int }
    }

    public func requiredDouble(_ key: String) throws -> Double {
        try typed(key, "a number") { $0.double }
    }

    public func requiredString(_ key: String) throws -> String {
        try typed(key, "a string") { $0.string }
    }

    public func requiredBool(_ key: String) throws -> Bool {
        try typed(key, "a bool") { $0.bool }
    }

    public func requiredStringArray(_ key: String) throws -> [String] {
        try typed(key, "an array of strings") { $0.stringArray }
    }

    public func requiredIntArray(_ key: String) throws -> [Int] {
        try typed(key, "an array of integers") { $0.intArray }
    }

    public func requiredFloatArray(_ key: String) throws -> [Float] {
        try typed(key, "an array of floats") { $0.floatArray }
    }

    private func typed<T>(_ key: String, _ expected: String, _ extract: (GGUFValue) -> T?) throws -> T {
        let value = try requiredValue(key)
        guard let result = extract(value) else {
            throw FormatError(path: url.path, problem: "metadata \(key) should be \(expected) but is of type \(value.type)")
        }
        return result
    }
}

/// Bounds-checked little-endian reads from the GGUF header; every failure names the field and the file.
struct GGUFByteReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var offset = 0

    init(bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    private func require(_ count: Int, _ what: String) throws {
        guard count <= bytes.count - offset else {
            throw FormatError(path: path, problem: "truncated: \(what) at byte \(offset) needs \(count) bytes but the file has \(bytes.count)",
                              fix: "the file is incomplete or corrupt; download or convert it again")
        }
    }

    mutating func read<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
        try require(MemoryLayout<T>.size, what)
        let value = T(littleEndian: bytes.baseAddress!.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return value
    }

    mutating func readString(_ what: String) throws -> String {
        let length = try read(UInt64.self, "length of \(what)")
        guard length <= UInt64(bytes.count - offset) else {
            throw FormatError(path: path, problem: "\(what) at byte \(offset) claims \(length) bytes, past the end of the file (\(bytes.count) bytes)",
                              fix: "the file is truncated or corrupt")
        }
        let start = bytes.baseAddress! + offset
        offset += Int(length)
        // Invalid UTF-8 is repaired (U+FFFD) rather than rejected, as llama.cpp does not validate strings either.
        return String(decoding: UnsafeRawBufferPointer(start: start, count: Int(length)), as: UTF8.self)
    }

    mutating func readValue(_ type: GGUFValueType, key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try read(UInt8.self, "value of \(key)"))
        case .int8: return .int8(try read(Int8.self, "value of \(key)"))
        case .uint16: return .uint16(try read(UInt16.self, "value of \(key)"))
        case .int16: return .int16(try read(Int16.self, "value of \(key)"))
        case .uint32: return .uint32(try read(UInt32.self, "value of \(key)"))
        case .int32: return .int32(try read(Int32.self, "value of \(key)"))
        case .uint64: return .uint64(try read(UInt64.self, "value of \(key)"))
        case .int64: return .int64(try read(Int64.self, "value of \(key)"))
        case .float32: return .float32(Float(bitPattern: try read(UInt32.self, "value of \(key)")))
        case .float64: return .float64(Double(bitPattern: try read(UInt64.self, "value of \(key)")))
        case .bool:
            let byte = try read(UInt8.self, "value of \(key)")
            guard byte <= 1 else {
                throw FormatError(path: path, problem: "metadata \(key) is a bool stored as \(byte); only 0 and 1 are valid")
            }
            return .bool(byte == 1)
        case .string: return .string(try readString("string value of \(key)"))
        case .array:
            guard depth < GGUFFile.maximumArrayDepth else {
                throw FormatError(path: path, problem: "metadata \(key) nests arrays deeper than \(GGUFFile.maximumArrayDepth) levels")
            }
            let rawElementType = try read(UInt32.self, "array element type of \(key)")
            guard let elementType = GGUFValueType(rawValue: rawElementType) else {
                throw FormatError(path: path, problem: "metadata array \(key) has unknown element type \(rawElementType)")
            }
            let count = try read(UInt64.self, "array length of \(key)")
            // Each element takes at least this many bytes, so a count that cannot fit is rejected before allocating.
            let smallestElement = elementType.fixedSize ?? (elementType == .string ? 8 : 12)
            guard count <= UInt64((bytes.count - offset) / smallestElement) else {
                throw FormatError(path: path, problem: "metadata array \(key) claims \(count) elements of type \(elementType), more than the rest of the file holds",
                                  fix: "the file is truncated or corrupt")
            }
            var elements: [GGUFValue] = []
            elements.reserveCapacity(Int(count))
            for _ in 0..<Int(count) {
                elements.append(try readValue(elementType, key: key, depth: depth + 1))
            }
            return .array(elementType: elementType, elements: elements)
        }
    }
}
