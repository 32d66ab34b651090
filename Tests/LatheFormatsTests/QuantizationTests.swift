import XCTest
@testable import LatheFormats

/// Dequantizers and quantizers against gguf-py's `gguf.quants` (fixture quants.json). All comparisons are bit for
/// bit (tolerance 0): the Swift code does the same Float operations in the same order as numpy.
final class QuantizationTests: XCTestCase {
    struct Case: Decodable {
        let type: String
        let typeID: UInt32
        let input: [UInt32]?
        let bytes: String
        let output: [UInt32]
    }

    func loadCases() throws -> [Case] {
        try Fixtures.decode([Case].self, from: "quants.json")
    }

    func testDequantizationMatchesGGUFPy() throws {
        let cases = try loadCases()
        XCTAssertEqual(Set(cases.map(\.type)), ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16", "F32"])
        for testCase in cases {
            let type = try XCTUnwrap(GGMLType(rawValue: testCase.typeID))
            XCTAssertEqual(type.description, testCase.type)
            let bytes = Fixtures.bytes(fromHex: testCase.bytes)
            var output = [Float](repeating: .nan, count: testCase.output.count)
            try bytes.withUnsafeBytes { source in
                try output.withUnsafeMutableBufferPointer { try type.dequantize(source, into: $0) }
            }
            assertBitIdentical(output, Fixtures.floats(fromBits: testCase.output), "dequantize \(type)")
        }
    }

    func testQuantizationMatchesGGUFPy() throws {
        var checked: [String] = []
        for testCase in try loadCases() {
            guard let input = testCase.input else { continue }
            let type = try XCTUnwrap(GGMLType(rawValue: testCase.typeID))
            let bytes = try type.quantize(Fixtures.floats(fromBits: input))
            let expected = Fixtures.bytes(fromHex: testCase.bytes)
            let differing = zip(bytes, expected).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
            XCTAssertEqual(bytes.count, expected.count, "\(type) byte count")
            XCTAssertTrue(differing.isEmpty, "\(type): \(differing.count) bytes differ from gguf-py, first at \(differing.first ?? -1)")
            checked.append(testCase.type)
        }
        XCTAssertEqual(Set(checked), ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "BF16"])
    }

    /// The K-quant quantizers against ggml's C reference quantizers (kquants.json, scripts/reference/kquants.py),
    /// byte for byte, and gguf-py's dequantization of ggml's bytes against Lathe's, bit for bit.
    func testKQuantizationMatchesGGMLReference() throws {
        struct Reference: Decodable { let reference: String; let cases: [Case] }
        let reference = try Fixtures.decode(Reference.self, from: "kquants.json")
        XCTAssertEqual(reference.cases.map(\.type), ["Q4_K", "Q5_K", "Q6_K"])
        for testCase in reference.cases {
            let type = try XCTUnwrap(GGMLType(rawValue: testCase.typeID))
            let input = Fixtures.floats(fromBits: try XCTUnwrap(testCase.input))
            let bytes = try type.quantize(input)
            let expected = Fixtures.bytes(fromHex: testCase.bytes)
            XCTAssertEqual(bytes.count, expected.count, "\(type) byte count")
            let differing = zip(bytes, expected).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
            XCTAssertTrue(differing.isEmpty, "\(type): \(differing.count) bytes differ from ggml, first in block "
                          + "\((differing.first ?? 0) / type.typeSize) at byte \((differing.first ?? 0) % type.typeSize)")
            var output = [Float](repeating: .nan, count: input.count)
            try expected.withUnsafeBytes { source in
                try output.withUnsafeMutableBufferPointer { try type.dequantize(source, into: $0) }
            }
            assertBitIdentical(output, Fixtures.floats(fromBits: testCase.output), "dequantize \(type)")
        }
    }

    func testHalfConversionAgreesWithFloat16() throws {
        #if arch(x86_64) && os(macOS)
        throw XCTSkip("Float16 is unavailable on Intel macOS")
        #else
        // Every half → Float, exactly.
        for bits in 0...UInt16.max {
            let expected = Float(Float16(bitPattern: bits))
            let actual = HalfPrecision.float(fromHalfBits: bits)
            XCTAssertTrue(actual.bitPattern == expected.bitPattern || (actual.isNaN && expected.isNaN), "half \(bits)")
        }
        // Float → half: every half's value and its float neighbours (the rounding boundaries), plus random floats.
        var generator = SystemRandomNumberGenerator()
        var samples: [Float] = []
        for bits in 0...UInt16.max {
            let value = HalfPrecision.float(fromHalfBits: bits)
            guard value.isFinite else { continue }
            samples += [value, value.nextUp, value.nextDown]
            let next = HalfPrecision.float(fromHalfBits: bits &+ 1)
            if next.isFinite { samples.append((value + next) / 2) }  // exact ties
        }
        for _ in 0..<100_000 { samples.append(Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &generator))) }
        var mismatches = 0
        for value in samples where !value.isNaN {
            if HalfPrecision.halfBits(from: value) != Float16(value).bitPattern { mismatches += 1 }
        }
        XCTAssertEqual(mismatches, 0, "Float → half disagreements with Float16 out of \(samples.count)")
        #endif
    }

    func testRoundTripErrorIsWithinHalfAStep() throws {
        // Quantize → dequantize of random blocks stays within half a quantization step (plus fp16 scale rounding).
        var generator = SystemRandomNumberGenerator()
        let values = (0..<256 * 8).map { _ in Float.random(in: -2...2, using: &generator) }
        for (type, levels) in [(GGMLType.q8_0, 254.0), (.q4_0, 15.0), (.q4_1, 15.0), (.q5_0, 31.0), (.q5_1, 31.0),
                               (.q4_K, 15.0), (.q5_K, 31.0), (.q6_K, 63.0)] {
            let bytes = try type.quantize(values)
            var decoded = [Float](repeating: 0, count: values.count)
            try bytes.withUnsafeBytes { source in
                try decoded.withUnsafeMutableBufferPointer { try type.dequantize(source, into: $0) }
            }
            let largest = zip(values, decoded).map { abs($0 - $1) }.max() ?? 0
            // Range per block ≤ 4, so a step is ≤ 4/levels; allow a full step for the asymmetric clipping of Q*_0 (and
            // for the K-quants' 6- or 8-bit rounding of each sub-block's scale).
            XCTAssertLessThanOrEqual(Double(largest), 4.0 / levels + 1e-3, "\(type) largest round-trip difference \(largest)")
        }
    }

    func testMismatchedSizesThrow() throws {
        let bytes = [UInt8](repeating: 0, count: 20)
        var output = [Float](repeating: 0, count: 64)
        assertFormatError(["20 bytes", "64 elements"]) {
            try bytes.withUnsafeBytes { source in
                try output.withUnsafeMutableBufferPointer { try GGMLType.q4_1.dequantize(source, into: $0) }
            }
        }
        assertFormatError(["not a whole number", "32"]) { _ = try GGMLType.q8_0.quantize([1, 2, 3]) }
        assertFormatError(["not supported", "Q2_K"]) { _ = try GGMLType.q2_K.quantize([Float](repeating: 0, count: 256)) }
    }
}
