import XCTest
@testable import LatheFormats

/// Reading reference.gguf, written by gguf-py's GGUFWriter (fixture reference_gguf.json holds the expectations).
final class GGUFFileTests: XCTestCase {
    struct Expected: Decodable {
        struct Tensor: Decodable {
            let name: String
            let type: String
            let dimensions: [Int]
            let values: [UInt32]
        }
        let tensors: [Tensor]
        let metadataKeys: [String]
        let tensorOffsets: [String: Int]
    }

    func testReadsGGUFPyFile() throws {
        let expected = try Fixtures.decode(Expected.self, from: "reference_gguf.json")
        let gguf = try GGUFFile(url: Fixtures.url("reference.gguf"))
        XCTAssertEqual(gguf.version, 3)
        XCTAssertEqual(gguf.alignment, 32)
        XCTAssertEqual(gguf.metadataKeys, expected.metadataKeys)
        XCTAssertEqual(gguf.tensors.map(\.name), expected.tensors.map(\.name))

        for tensor in expected.tensors {
            let info = try XCTUnwrap(gguf.tensor(named: tensor.name))
            XCTAssertEqual(info.type.description, tensor.type, tensor.name)
            XCTAssertEqual(info.dimensions, tensor.dimensions, tensor.name)
            XCTAssertEqual(info.offset, expected.tensorOffsets[tensor.name], tensor.name)
            XCTAssertEqual(gguf.rawBytes(of: info).count, info.byteCount)
            assertBitIdentical(try gguf.floats(named: tensor.name), Fixtures.floats(fromBits: tensor.values), tensor.name)
        }
    }

    func testMetadataValuesOfEveryType() throws {
        let gguf = try GGUFFile(url: Fixtures.url("reference.gguf"))
        let m = gguf.metadata
        XCTAssertEqual(try gguf.requiredString("general.architecture"), "llama")
        XCTAssertEqual(m["test.u8"], .uint8(200))
        XCTAssertEqual(m["test.i8"], .int8(-100))
        XCTAssertEqual(m["test.u16"], .uint16(60000))
        XCTAssertEqual(m["test.i16"], .int16(-30000))
        XCTAssertEqual(m["test.u32"], .uint32(4_000_000_000))
        XCTAssertEqual(m["test.i32"], .int32(-2_000_000_000))
        XCTAssertEqual(m["test.f32"], .float32(0.1))
        XCTAssertEqual(m["test.bool_true"], .bool(true))
        XCTAssertEqual(m["test.bool_false"], .bool(false))
        XCTAssertEqual(m["test.string"], .string("héllo ▁wörld \n\"quoted\""))
        XCTAssertNil(m["test.empty_string"], "gguf-py skips empty strings")
        XCTAssertEqual(m["test.u64"], .uint64(18_000_000_000_000_000_000))
        XCTAssertEqual(m["test.i64"], .int64(-9_000_000_000_000_000_000))
        XCTAssertEqual(m["test.f64"], .float64(3.141592653589793))
        XCTAssertEqual(m["test.string_array"]?.stringArray, ["a", "", "Ġthe", "<|im_start|>", "日本"])
        XCTAssertEqual(m["test.int32_array"], .array(elementType: .int32, elements: [.int32(1), .int32(-2), .int32(3)]))
        XCTAssertEqual(try gguf.requiredIntArray("test.int32_array"), [1, -2, 3])
        XCTAssertEqual(try gguf.requiredFloatArray("test.float_array"), [0.5, -1.25, 1e-7])
        XCTAssertEqual(m["test.u8_array"]?.intArray, [1, 2, 255])
        XCTAssertEqual(m["test.bool_array"]?.array?.compactMap(\.bool), [true, false, true])
        let nested = try XCTUnwrap(m["test.nested_array"]?.array)
        XCTAssertEqual(nested.map(\.intArray), [[1, 2], [3, 4, 5]])
        XCTAssertEqual(m["test.nested_strings"]?.array?.map(\.stringArray), [["x", "yy"], ["zzz"]])
        XCTAssertEqual(try gguf.requiredInt("llama.block_count"), 2)
        XCTAssertEqual(try gguf.requiredDouble("test.f32"), Double(Float(0.1)))
        XCTAssertEqual(m["test.u64"]?.int, nil, "a UInt64 above Int.max has no Int value")
    }

    func testRequiredAccessorsNameTheKey() throws {
        let gguf = try GGUFFile(url: Fixtures.url("reference.gguf"))
        assertFormatError(["reference.gguf", "llama.missing_key", "missing"]) { _ = try gguf.requiredInt("llama.missing_key") }
        assertFormatError(["test.string", "integer", "string"]) { _ = try gguf.requiredInt("test.string") }
        assertFormatError(["test.int32_array", "array of strings"]) { _ = try gguf.requiredStringArray("test.int32_array") }
        assertFormatError(["no tensor named nope"]) { _ = try gguf.floats(named: "nope") }
    }

    func testDequantizeChecksDestinationSize() throws {
        let gguf = try GGUFFile(url: Fixtures.url("reference.gguf"))
        let info = try XCTUnwrap(gguf.tensor(named: "t.q4_1"))
        var tooSmall = [Float](repeating: 0, count: info.elementCount - 1)
        assertFormatError(["t.q4_1", "128 elements"]) {
            try tooSmall.withUnsafeMutableBufferPointer { try gguf.dequantize(info, into: $0) }
        }
        let unsupported = try XCTUnwrap(GGMLType(rawValue: 10))
        XCTAssertFalse(unsupported.canDequantize)
    }
}
