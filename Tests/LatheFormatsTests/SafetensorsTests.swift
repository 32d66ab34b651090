import XCTest
@testable import LatheFormats

/// safetensors files written by the Python library (fixture safetensors.json), and the Swift writer.
final class SafetensorsTests: XCTestCase {
    struct TensorExpectation: Decodable {
        let dtype: String
        let shape: [Int]
        let values: [UInt32]
    }
    struct Identity: Decodable {
        let file: String
        let tensors: [String: TensorExpectation]
    }
    struct Expected: Decodable {
        let single: [String: TensorExpectation]
        let sharded: [String: TensorExpectation]
        let identity: Identity
    }

    func expected() throws -> Expected { try Fixtures.decode(Expected.self, from: "safetensors.json") }

    func testReadsPythonLibraryFile() throws {
        let expected = try expected().single
        let file = try SafetensorsFile(url: Fixtures.url("single.safetensors"))
        XCTAssertEqual(file.metadata, ["format": "pt"])
        XCTAssertEqual(Set(file.tensors.map(\.name)), Set(expected.keys))
        for (name, tensor) in expected {
            let info = try XCTUnwrap(file.tensor(named: name))
            XCTAssertEqual(info.dtype.rawValue, tensor.dtype, name)
            XCTAssertEqual(info.dimensions, tensor.shape, name)
            XCTAssertEqual(file.rawBytes(of: info).count, info.elementCount * info.dtype.byteSize)
            assertBitIdentical(try file.floats(named: name), Fixtures.floats(fromBits: tensor.values), name)
        }
    }

    func testWriterIsByteIdenticalToPythonLibrary() throws {
        let identity = try expected().identity
        var writer = SafetensorsWriter(metadata: ["format": "pt"])
        // Added in an order different from the file's to check the writer's own ordering.
        for (name, tensor) in identity.tensors.sorted(by: { $0.key > $1.key }) {
            try writer.addTensor(name: name, dimensions: tensor.shape, values: Fixtures.floats(fromBits: tensor.values),
                                 dtype: try XCTUnwrap(SafetensorsDType(rawValue: tensor.dtype)))
        }
        let written = [UInt8](writer.encoded())
        let expectedBytes = Fixtures.bytes(fromHex: identity.file)
        XCTAssertEqual(String(decoding: written, as: UTF8.self), String(decoding: expectedBytes, as: UTF8.self))
        XCTAssertEqual(written, expectedBytes)
    }

    func testWriterRoundTrip() throws {
        var writer = SafetensorsWriter(metadata: ["format": "pt", "base": "smollm2 \"135M\"\n"])
        var generator = SystemRandomNumberGenerator()
        let values = (0..<24).map { _ in Float.random(in: -4...4, using: &generator) }
        try writer.addTensor(name: "lora.A", dimensions: [4, 6], values: values, dtype: .f32)
        try writer.addTensor(name: "lora.B", dimensions: [6, 4], values: values, dtype: .bf16)
        try writer.addTensor(name: "lora.C", dimensions: [2, 3, 4], values: values, dtype: .f16)
        try writer.addTensor(name: "empty", dimensions: [0, 3], values: [], dtype: .f32)
        let codes: [UInt8] = [0, 1, 127, 128, 254, 255]
        try writer.addTensor(name: "codes", dimensions: [2, 3], bytes: codes)
        let url = try Fixtures.temporaryFolder(for: self).appendingPathComponent("adapter.safetensors")
        try writer.write(to: url)

        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(file.metadata, writer.metadata)
        XCTAssertEqual(try XCTUnwrap(file.tensor(named: "lora.C")).dimensions, [2, 3, 4])
        assertBitIdentical(try file.floats(named: "lora.A"), values, "F32")
        assertBitIdentical(try file.floats(named: "lora.B"), values.map { HalfPrecision.float(fromBFloat16Bits: HalfPrecision.bfloat16Bits(from: $0)) }, "BF16")
        assertBitIdentical(try file.floats(named: "lora.C"), values.map { HalfPrecision.float(fromHalfBits: HalfPrecision.halfBits(from: $0)) }, "F16")
        XCTAssertEqual(try file.floats(named: "empty"), [])
        let codesInfo = try XCTUnwrap(file.tensor(named: "codes"))
        XCTAssertEqual(codesInfo.dtype, .u8)
        XCTAssertEqual(try file.bytes(of: codesInfo), codes)
        assertFormatError(["lora.A", "expected U8"]) { _ = try file.bytes(of: try XCTUnwrap(file.tensor(named: "lora.A"))) }
        let headerLength = try Data(contentsOf: url).prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
        XCTAssertEqual(headerLength % 8, 0, "header padded to 8 bytes")
    }

    func testNonFloatDTypesAreListedButNotReadAsFloats() throws {
        let url = try Fixtures.temporaryFolder(for: self).appendingPathComponent("ids.safetensors")
        try SafetensorsBytes.file(header: #"{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#, data: [UInt8](repeating: 1, count: 16)).write(to: url)
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(file.tensor(named: "ids")?.dtype, .i64)
        assertFormatError(["ids.safetensors", "I64", "F32, F16 and BF16"]) { _ = try file.floats(named: "ids") }
        var writer = SafetensorsWriter()
        assertFormatError(["I32", "cannot be written"]) { try writer.addTensor(name: "x", dimensions: [1], values: [1], dtype: .i32) }
    }

    /// MLX's `save_safetensors` (mlx 0.32) writes a null `__metadata__`, which the safetensors library reads as none.
    func testNullMetadataIsNoMetadata() throws {
        let url = try Fixtures.temporaryFolder(for: self).appendingPathComponent("mlx.safetensors")
        let one = withUnsafeBytes(of: Float(1).bitPattern.littleEndian) { Array($0) }
        try SafetensorsBytes.file(header: #"{"__metadata__":null,"x":{"data_offsets":[0,4],"dtype":"F32","shape":[1]}}"#, data: one).write(to: url)
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(file.metadata, [:])
        XCTAssertEqual(try file.floats(named: "x"), [1])
    }
}

/// Hand-built safetensors bytes for tests of malformed files.
enum SafetensorsBytes {
    static func file(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> Data {
        let headerBytes = Array(header.utf8)
        var result = Data()
        withUnsafeBytes(of: (declaredLength ?? UInt64(headerBytes.count)).littleEndian) { result.append(contentsOf: $0) }
        result.append(contentsOf: headerBytes)
        result.append(contentsOf: data)
        return result
    }
}
