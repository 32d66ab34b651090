import Foundation

/// Just enough of a GGUF reader to pull `tokenizer.ggml.*` out of the model file for these tests; the real
/// reader lives in LatheFormats, which this test target cannot depend on.
struct MinimalGGUFMetadata {
    enum Value {
        case integer(Int64)
        case string(String)
        case strings([String])
        case integers([Int64])
        case other
    }

    struct ReadError: Error, CustomStringConvertible {
        let description: String
    }

    private(set) var values: [String: Value] = [:]

    init(url: URL) throws {
        let data = try Data(contentsOf: url, options: .alwaysMapped)
        var reader = Reader(data: data)
        guard try reader.bytes(4) == Array("GGUF".utf8) else { throw ReadError(description: "\(url.path): not GGUF") }
        let version = try reader.uint32()
        guard version >= 2 else { throw ReadError(description: "\(url.path): GGUF version \(version) unsupported") }
        _ = try reader.uint64()  // tensor count
        let keyCount = try reader.uint64()
        for _ in 0..<keyCount {
            let key = try reader.string()
            let type = try reader.uint32()
            values[key] = try reader.value(type: type)
        }
    }

    func strings(_ key: String) -> [String]? {
        if case .strings(let list)? = values[key] { return list }
        return nil
    }

    func integers(_ key: String) -> [Int64]? {
        if case .integers(let list)? = values[key] { return list }
        return nil
    }

    func integer(_ key: String) -> Int64? {
        if case .integer(let value)? = values[key] { return value }
        return nil
    }

    func string(_ key: String) -> String? {
        if case .string(let value)? = values[key] { return value }
        return nil
    }

    private struct Reader {
        let data: Data
        var offset: Int

        init(data: Data) {
            self.data = data
            offset = data.startIndex
        }

        mutating func bytes(_ count: Int) throws -> [UInt8] {
            guard count >= 0, offset + count <= data.endIndex else { throw ReadError(description: "GGUF truncated") }
            defer { offset += count }
            return Array(data[offset..<offset + count])
        }

        mutating func integer(size: Int, signed: Bool) throws -> Int64 {
            let raw = try bytes(size)
            var value: UInt64 = 0
            for (index, byte) in raw.enumerated() { value |= UInt64(byte) << (8 * UInt64(index)) }
            if signed && size < 8 && value & (1 << (UInt64(size) * 8 - 1)) != 0 {
                value |= ~UInt64(0) << (UInt64(size) * 8)
            }
            return Int64(bitPattern: value)
        }

        mutating func uint32() throws -> UInt32 { UInt32(try integer(size: 4, signed: false)) }
        mutating func uint64() throws -> UInt64 { UInt64(bitPattern: try integer(size: 8, signed: false)) }

        mutating func string() throws -> String {
            let length = try uint64()
            guard length < UInt64(Int32.max) else { throw ReadError(description: "GGUF string too long") }
            return String(decoding: try bytes(Int(length)), as: UTF8.self)
        }

        mutating func value(type: UInt32) throws -> Value {
            switch type {
            case 0, 1: return .integer(try integer(size: 1, signed: type == 1))
            case 2, 3: return .integer(try integer(size: 2, signed: type == 3))
            case 4, 5: return .integer(try integer(size: 4, signed: type == 5))
            case 10, 11: return .integer(try integer(size: 8, signed: type == 11))
            case 7: return .integer(try integer(size: 1, signed: false))
            case 6: _ = try bytes(4); return .other
            case 12: _ = try bytes(8); return .other
            case 8: return .string(try string())
            case 9:
                let elementType = try uint32()
                let count = try uint64()
                guard count < UInt64(Int32.max) else { throw ReadError(description: "GGUF array too long") }
                var strings: [String] = []
                var integers: [Int64] = []
                for _ in 0..<count {
                    switch try value(type: elementType) {
                    case .string(let text): strings.append(text)
                    case .integer(let number): integers.append(number)
                    default: break
                    }
                }
                return elementType == 8 ? .strings(strings) : .integers(integers)
            default:
                throw ReadError(description: "GGUF value type \(type) unknown")
            }
        }
    }
}
