import XCTest
@testable import LatheFormats

/// The Swift GGUFWriter: byte-identical to gguf-py for the same content, and round trips through GGUFFile.
final class GGUFWriterTests: XCTestCase {
    func testRewritingGGUFPyFileIsByteIdentical() throws {
        // Same metadata (in order) and the same raw tensors must give exactly gguf-py's bytes: header, padding, data.
        let original = try GGUFFile(url: Fixtures.url("reference.gguf"))
        var writer = try GGUFWriter()
        for key in original.metadataKeys {
            try writer.setValue(try XCTUnwrap(original.metadata[key]), forKey: key)
        }
        for tensor in original.tensors {
            try writer.addTensor(name: tensor.name, dimensions: tensor.dimensions, type: tensor.type,
                                 rawBytes: Array(original.rawBytes(of: tensor)))
        }
        let written = [UInt8](writer.encoded())
        let expected = try [UInt8](Data(contentsOf: Fixtures.url("reference.gguf")))
        XCTAssertEqual(written.count, expected.count)
        let firstDifference = zip(written, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        XCTAssertNil(firstDifference, "first differing byte at \(firstDifference ?? -1)")
    }

    func testRoundTripOfEveryValueAndTensorType() throws {
        var writer = try GGUFWriter(alignment: 64)
        let values: [(String, GGUFValue)] = [
            ("general.architecture", .string("llama")),
            ("a.u8", .uint8(7)), ("a.i8", .int8(-7)), ("a.u16", .uint16(65535)), ("a.i16", .int16(-1)),
            ("a.u32", .uint32(.max)), ("a.i32", .int32(.min)), ("a.f32", .float32(-0.0)), ("a.bool", .bool(true)),
            ("a.u64", .uint64(.max)), ("a.i64", .int64(.min)), ("a.f64", .float64(.pi)), ("a.empty_string", .string("")),
            ("a.empty", .array(elementType: .string, elements: [])),
            ("a.strings", .array(elementType: .string, elements: (0..<1000).map { .string("tok\($0)") })),
            ("a.nested", .array(elementType: .array, elements: [
                .array(elementType: .float32, elements: [.float32(1.5)]),
                .array(elementType: .string, elements: [.string("x")]),
            ])),
        ]
        for (key, value) in values { try writer.setValue(value, forKey: key) }
        try writer.setValue(.uint8(8), forKey: "a.u8")  // replacing keeps the key's position

        var generator = SystemRandomNumberGenerator()
        let source = (0..<64 * 3).map { _ in Float.random(in: -3...3, using: &generator) }
        let types: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1]
        for type in types {
            try writer.addTensor(name: "w.\(type)", dimensions: [64, 3], values: source, type: type)
        }
        let url = try Fixtures.temporaryFolder(for: self).appendingPathComponent("model.gguf")
        try writer.write(to: url)

        let gguf = try GGUFFile(url: url)
        XCTAssertEqual(gguf.version, 3)
        XCTAssertEqual(gguf.alignment, 64)
        XCTAssertEqual(gguf.metadataKeys, ["general.alignment"] + values.map(\.0))
        for (key, value) in values where key != "a.u8" {
            XCTAssertEqual(gguf.metadata[key], value, key)
        }
        XCTAssertEqual(gguf.metadata["a.u8"], .uint8(8))
        for type in types {
            let info = try XCTUnwrap(gguf.tensor(named: "w.\(type)"))
            XCTAssertEqual(info.type, type)
            XCTAssertEqual(info.dimensions, [64, 3])
            XCTAssertEqual(info.offset % 64, 0)
            // The stored bytes are the quantizer's, so reading gives quantize → dequantize of the source exactly.
            let bytes = try type.quantize(source)
            var expected = [Float](repeating: 0, count: source.count)
            try bytes.withUnsafeBytes { raw in try expected.withUnsafeMutableBufferPointer { try type.dequantize(raw, into: $0) } }
            assertBitIdentical(try gguf.floats(of: info), expected, "tensor \(type)")
        }
        assertBitIdentical(try gguf.floats(named: "w.F32"), source, "F32 tensor")
    }

    func testWriterRejectsInconsistentInput() throws {
        var writer = try GGUFWriter()
        assertFormatError(["w", "multiple of", "32"]) {
            try writer.addTensor(name: "w", dimensions: [3, 32], values: [Float](repeating: 0, count: 96), type: .q8_0)
        }
        assertFormatError(["w", "[4, 2]", "7 values"]) {
            try writer.addTensor(name: "w", dimensions: [4, 2], values: [Float](repeating: 0, count: 7), type: .f32)
        }
        assertFormatError(["a.bad", "int32", "string"]) {
            try writer.setValue(.array(elementType: .int32, elements: [.string("x")]), forKey: "a.bad")
        }
        try writer.addTensor(name: "w", dimensions: [2], values: [1, 2], type: .f32)
        assertFormatError(["w", "twice"]) { try writer.addTensor(name: "w", dimensions: [2], values: [1, 2], type: .f32) }
        assertFormatError(["power of two"]) { _ = try GGUFWriter(alignment: 48) }
    }

    func testWriteIsAtomicAndLeavesNoTemporaryFiles() throws {
        let folder = try Fixtures.temporaryFolder(for: self)
        let url = folder.appendingPathComponent("m.gguf")
        try Data("old".utf8).write(to: url)
        var writer = try GGUFWriter()
        try writer.setValue(.string("llama"), forKey: "general.architecture")
        try writer.write(to: url)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["m.gguf"])
        XCTAssertEqual(try GGUFFile(url: url).metadata["general.architecture"], .string("llama"))
        assertFormatError(["no-such-folder"]) { try writer.write(to: folder.appendingPathComponent("no-such-folder/m.gguf")) }
    }
}
