import XCTest
@testable import LatheFormats

/// Malformed files must throw a FormatError naming the file and the problem, never crash.
final class BadFileTests: XCTestCase {
    /// A minimal valid GGUF: metadata k = "v", tensor t (F32, 4 elements). Byte layout (offsets used below):
    /// 0 magic, 4 version, 8 tensor count, 16 metadata count, 24 key length, 32 "k", 33 value type,
    /// 37 string length, 45 "v", 46 tensor name length, 54 "t", 55 dimension count, 59 ne0, 67 type id,
    /// 71 data offset, 79 end of header → padded to 96, data 96..<112, padded to 128.
    func validGGUF() throws -> [UInt8] {
        var writer = try GGUFWriter()
        try writer.setValue(.string("v"), forKey: "k")
        try writer.addTensor(name: "t", dimensions: [4], values: [1, 2, 3, 4], type: .f32)
        return [UInt8](writer.encoded())
    }

    func write(_ bytes: [UInt8], _ name: String) throws -> URL {
        let url = try Fixtures.temporaryFolder(for: self).appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url
    }

    func patched<T: FixedWidthInteger>(_ bytes: [UInt8], at offset: Int, _ value: T) -> [UInt8] {
        var copy = bytes
        withUnsafeBytes(of: value.littleEndian) { copy.replaceSubrange(offset..<(offset + MemoryLayout<T>.size), with: $0) }
        return copy
    }

    func assertGGUFError(_ bytes: [UInt8], _ name: String, _ fragments: [String], line: UInt = #line) throws {
        let url = try write(bytes, name)
        assertFormatError([name] + fragments, line: line) { _ = try GGUFFile(url: url) }
    }

    func testValidBaselineOpens() throws {
        let bytes = try validGGUF()
        XCTAssertEqual(bytes.count, 128, "16 bytes of data padded to the 32-byte alignment")
        let gguf = try GGUFFile(url: try write(bytes, "ok.gguf"))
        XCTAssertEqual(try gguf.floats(named: "t"), [1, 2, 3, 4])
        XCTAssertEqual(gguf.dataOffset, 96)
    }

    func testMalformedGGUFFiles() throws {
        let good = try validGGUF()
        try assertGGUFError(patched(good, at: 0, UInt32(0x5846_4747)), "magic.gguf", ["not a GGUF file"])
        try assertGGUFError(patched(good, at: 4, UInt32(1)), "v1.gguf", ["version 1", "re-convert"])
        try assertGGUFError(patched(good, at: 4, UInt32(3).byteSwapped), "bigendian.gguf", ["big-endian"])
        try assertGGUFError(Array(good[0..<40]), "truncated.gguf", ["truncated"])
        try assertGGUFError(Array(good[0..<10]), "tiny.gguf", ["truncated", "tensor count"])
        try assertGGUFError([], "empty.gguf", ["truncated", "magic"])
        try assertGGUFError(patched(good, at: 37, UInt64(1_000_000)), "longstring.gguf", ["string value of k", "past the end"])
        try assertGGUFError(patched(good, at: 24, UInt64.max), "longkey.gguf", ["key of metadata entry 0", "past the end"])
        try assertGGUFError(patched(good, at: 71, UInt64(1024)), "offset.gguf", ["tensor t", "past the end of the file"])
        try assertGGUFError(patched(good, at: 71, UInt64(4)), "unaligned.gguf", ["tensor t", "alignment 32"])
        try assertGGUFError(patched(good, at: 67, UInt32(99)), "type.gguf", ["tensor t", "unknown ggml type id 99"])
        try assertGGUFError(patched(good, at: 59, UInt64(0)), "zerodim.gguf", ["tensor t", "dimensions must be positive"])
        try assertGGUFError(patched(good, at: 55, UInt32(9)), "dims.gguf", ["tensor t", "9 dimensions"])
        try assertGGUFError(patched(good, at: 8, UInt64(1) << 40), "tensorcount.gguf", ["tensors", "more than fit"])
        try assertGGUFError(patched(good, at: 16, UInt64.max), "kvcount.gguf", ["metadata entries", "more than fit"])
        try assertGGUFError(patched(good, at: 33, UInt32(77)), "valuetype.gguf", ["metadata k", "unknown value type 77"])
        try assertGGUFError(patched(good, at: 67, UInt32(GGMLType.q8_0.rawValue)), "blocks.gguf", ["tensor t", "block size 32"])
    }

    func testHugeArrayCountIsRejectedBeforeAllocating() throws {
        // k becomes an array of uint64 claiming 2^60 elements.
        var bytes = patched(try validGGUF(), at: 33, GGUFValueType.array.rawValue)
        bytes = patched(bytes, at: 37, UInt32(GGUFValueType.uint64.rawValue))
        bytes = patched(bytes, at: 41, UInt64(1) << 60)
        try assertGGUFError(bytes, "array.gguf", ["metadata array k", "more than the rest of the file"])
    }

    func testUnsupportedDequantizationNamesTensorAndType() throws {
        var writer = try GGUFWriter()
        try writer.addTensor(name: "iq", dimensions: [256], type: .iq2_XXS, rawBytes: [UInt8](repeating: 0, count: GGMLType.iq2_XXS.typeSize))
        let url = try write([UInt8](writer.encoded()), "iq.gguf")
        let gguf = try GGUFFile(url: url)
        assertFormatError(["iq.gguf", "tensor iq", "IQ2_XXS", "not supported"]) { _ = try gguf.floats(named: "iq") }
    }

    func testMalformedSafetensorsFiles() throws {
        let entry = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let data = [UInt8](repeating: 0, count: 8)
        func check(_ file: Data, _ name: String, _ fragments: [String], line: UInt = #line) throws {
            let url = try write([UInt8](file), name)
            assertFormatError([name] + fragments, line: line) { _ = try SafetensorsFile(url: url) }
        }
        XCTAssertNoThrow(try SafetensorsFile(url: write([UInt8](SafetensorsBytes.file(header: entry, data: data)), "ok.safetensors")))
        try check(SafetensorsBytes.file(header: entry, data: data, declaredLength: 10_000), "length.safetensors", ["header length 10000"])
        try check(SafetensorsBytes.file(header: entry, data: data, declaredLength: UInt64.max), "hugelength.safetensors", ["header length"])
        try check(Data([1, 2, 3]), "short.safetensors", ["too short"])
        try check(SafetensorsBytes.file(header: "[1,2]", data: data), "array.safetensors", ["does not start with '{'"])
        try check(SafetensorsBytes.file(header: "{\"w\":", data: data), "json.safetensors", ["not valid JSON"])
        try check(SafetensorsBytes.file(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}"#, data: data),
                  "outside.safetensors", ["tensor w", "outside"])
        try check(SafetensorsBytes.file(header: #"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: data),
                  "shape.safetensors", ["tensor w", "needs 12 bytes", "span 8"])
        try check(SafetensorsBytes.file(header: #"{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}}"#, data: data),
                  "dtype.safetensors", ["tensor w", "F16", "needs 4 bytes"])
        try check(SafetensorsBytes.file(header: #"{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#, data: data),
                  "unknown.safetensors", ["tensor w", "unknown dtype Q4"])
        try check(SafetensorsBytes.file(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: data),
                  "gap.safetensors", ["tensor w", "without gaps"])
        try check(SafetensorsBytes.file(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, data: data),
                  "reversed.safetensors", ["tensor w", "data_offsets"])
        try check(SafetensorsBytes.file(header: #"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: data),
                  "negative.safetensors", ["tensor w", "shape"])
        try check(SafetensorsBytes.file(header: entry, data: data + [0, 0, 0, 0]), "extra.safetensors", ["cover 8 bytes", "holds 12"])
        try check(SafetensorsBytes.file(header: #"{"__metadata__":{"a":1},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: data),
                  "metadata.safetensors", ["__metadata__ value for a"])
    }

    func testDirectoryIsNotAFile() throws {
        let folder = try Fixtures.temporaryFolder(for: self)
        assertFormatError([folder.path, "not a regular file"]) { _ = try MappedFile(url: folder) }
    }

    func testMissingFileIsNamed() {
        assertFormatError(["/no/such/model.gguf", "cannot open"]) { _ = try GGUFFile(url: URL(fileURLWithPath: "/no/such/model.gguf")) }
        assertFormatError(["/no/such/w.safetensors", "cannot open"]) { _ = try SafetensorsFile(url: URL(fileURLWithPath: "/no/such/w.safetensors")) }
    }
}
