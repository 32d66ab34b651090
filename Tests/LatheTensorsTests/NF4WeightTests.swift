import XCTest
import Foundation
@testable import LatheTensors
import LatheTestSupport

/// NF4Weight against bitsandbytes 0.50.2 (fixtures from scripts/reference/nf4.py) and against its own expansion.
final class NF4WeightTests: XCTestCase {
    private struct Fixture: Decodable {
        let bitsandbytesVersion: String
        let codebook: [Float]
        let dynamicMap: [Float]
        let cases: [Case]
    }

    private struct Case: Decodable {
        let name: String
        let rows: Int
        let columns: Int
        let seed: UInt64
        let blockSize: Int
        let doubleQuantization: Bool
        let zeroBlocks: [Int]
        let firstInputs: [Float]
        let packed: String
        let dequantized: String
        let quantizedAbsmax: String?
        let absmaxScales: [Float]?
        let absmaxOffset: Float?
        let dequantizedAbsmax: [Float]?
        let absmax: [Float]?
    }

    private static func loadFixture() throws -> Fixture {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let url = root.appendingPathComponent("Tests/Fixtures/nf4/nf4.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    private func bytes(_ base64: String, _ field: String) throws -> [UInt8] {
        let data = try XCTUnwrap(Data(base64Encoded: base64), "\(field) is not base64")
        return [UInt8](data)
    }

    private func floats(_ base64: String, _ field: String) throws -> [Float] {
        let raw = try bytes(base64, field)
        return stride(from: 0, to: raw.count, by: 4).map { offset in
            Float(bitPattern: UInt32(raw[offset]) | UInt32(raw[offset + 1]) << 8 | UInt32(raw[offset + 2]) << 16
                  | UInt32(raw[offset + 3]) << 24)
        }
    }

    /// The script's input formula (integers and powers of two only, so float32-exact in both languages).
    private func fixtureWeight(_ testCase: Case) -> [Float] {
        let mask21: UInt64 = (1 << 21) - 1
        var values = (0..<(testCase.rows * testCase.columns)).map { index -> Float in
            var x = testCase.seed << 32 &+ UInt64(index) &+ 0x9E37_79B9_7F4A_7C15
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            x ^= x >> 31
            let k = Int64((x & mask21) + ((x >> 21) & mask21) + ((x >> 42) & mask21)) - 3 * (1 << 20)
            let row = index / testCase.columns
            return Float(k) * 0x1p-20 * Float(sign: .plus, exponent: -(row % 4), significand: 1)
        }
        for block in testCase.zeroBlocks {
            for index in block * testCase.blockSize..<(block + 1) * testCase.blockSize { values[index] = 0 }
        }
        return values
    }

    private func quantized(_ testCase: Case) throws -> NF4Weight {
        try fixtureWeight(testCase).withUnsafeBufferPointer {
            try NF4Weight(rows: testCase.rows, columns: testCase.columns, values: $0, blockSize: testCase.blockSize,
                          doubleQuantization: testCase.doubleQuantization)
        }
    }

    private func decompressed(_ weight: NF4Weight) -> [Float] {
        [Float](unsafeUninitializedCapacity: weight.rows * weight.columns) { buffer, count in
            if let base = buffer.baseAddress { weight.decompress(into: base) }
            count = weight.rows * weight.columns
        }
    }

    /// Positions where two arrays differ, for messages.
    private func mismatches<T: Equatable>(_ actual: [T], _ expected: [T]) -> [Int] {
        zip(actual, expected).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
    }

    func testCodebooksEqualBitsandbytes() throws {
        let fixture = try Self.loadFixture()
        XCTAssertEqual(fixture.bitsandbytesVersion, "0.50.2")
        XCTAssertEqual(NF4Weight.codebook, fixture.codebook)
        XCTAssertEqual(DynamicQuantizationMap.signed.codes.count, 256)
        XCTAssertEqual(mismatches(DynamicQuantizationMap.signed.codes, fixture.dynamicMap), [],
                       "dynamic map entries that differ from create_dynamic_map(signed=True)")
    }

    func testQuantizedBytesAndAbsmaxesEqualBitsandbytesExactly() throws {
        let fixture = try Self.loadFixture()
        for testCase in fixture.cases {
            let name = "\(testCase.name) [\(testCase.rows), \(testCase.columns)]"
            let inputs = fixtureWeight(testCase)
            XCTAssertEqual(Array(inputs.prefix(8)), testCase.firstInputs, "\(name): input formula differs from the script's")
            let weight = try quantized(testCase)
            let expectedPacked = try bytes(testCase.packed, "packed")
            XCTAssertEqual(weight.packedIndices.count, expectedPacked.count, name)
            let packedDifferences = mismatches(weight.packedIndices, expectedPacked)
            XCTAssertEqual(packedDifferences.count, 0, "\(name): packed bytes differ at \(packedDifferences.prefix(5))")
            if testCase.doubleQuantization {
                let expectedIndices = try bytes(try XCTUnwrap(testCase.quantizedAbsmax), "quantizedAbsmax")
                XCTAssertEqual(weight.quantizedAbsmax.count, expectedIndices.count, name)
                let indexDifferences = mismatches(weight.quantizedAbsmax, expectedIndices)
                XCTAssertEqual(indexDifferences.count, 0, "\(name): quantized absmaxes differ at \(indexDifferences.prefix(5))")
                XCTAssertEqual(weight.absmaxScales, testCase.absmaxScales, name)
                XCTAssertEqual(weight.absmaxOffset, testCase.absmaxOffset, name)
                XCTAssertEqual(weight.dequantizedAbsmax, testCase.dequantizedAbsmax, name)
                XCTAssertEqual(weight.absmax, [], name)
            } else {
                XCTAssertEqual(weight.absmax, testCase.absmax, name)
                XCTAssertEqual(weight.dequantizedAbsmax, testCase.absmax, name)
                XCTAssertEqual(weight.quantizedAbsmax, [], name)
                XCTAssertEqual(weight.absmaxScales, [], name)
            }
        }
    }

    func testDequantizedValuesEqualBitsandbytes() throws {
        let fixture = try Self.loadFixture()
        for testCase in fixture.cases {
            let name = "\(testCase.name) [\(testCase.rows), \(testCase.columns)]"
            let weight = try quantized(testCase)
            let expected = try floats(testCase.dequantized, "dequantized")
            // Each value is one float32 product code · absmax, as in bitsandbytes: identical bits are expected;
            // the stated tolerance (1e-6 relative) only allows for a differently rounded absmax offset.
            assertClose(decompressed(weight), expected, rtol: 1e-6, atol: 0, name)
            XCTAssertEqual(mismatches(decompressed(weight), expected).count, 0, "\(name): values not bit-identical")
        }
    }

    func testAnyRowRangeExpandsLikeTheWholeWeight() throws {
        // 37 columns: rows start on odd values (low nibbles) and blocks of 64 straddle rows.
        let (rows, columns) = (11, 37)
        let weight = try randomValues(rows * columns, seed: 3).withUnsafeBufferPointer {
            try NF4Weight(rows: rows, columns: columns, values: $0)
        }
        let whole = decompressed(weight)
        for range in [0..<1, 1..<2, 1..<4, 3..<11, 10..<11, 5..<5] {
            var part = [Float](repeating: .nan, count: range.count * columns)
            part.withUnsafeMutableBufferPointer { buffer in
                if let base = buffer.baseAddress { weight.decompressRows(range, into: base) }
            }
            XCTAssertEqual(part, Array(whole[range.lowerBound * columns..<range.upperBound * columns]), "rows \(range)")
        }
    }

    func testProductsEqualReferenceProductsWithTheExpandedWeight() throws {
        // Several tiles with a short last one (1310 rows per tile at 200 columns), odd columns (blocks straddle rows).
        let shapes = [(rows: 150, columns: 1001), (rows: 1400, columns: 200)]
        XCTAssertEqual(CompactWeightTiles.rowsPerTile(columns: 200), 1310)
        let reference = ReferenceMatMulBackend()
        for shape in shapes {
            let weight = try randomValues(shape.rows * shape.columns, seed: 9).withUnsafeBufferPointer {
                try NF4Weight(rows: shape.rows, columns: shape.columns, values: $0)
            }
            let expanded = decompressed(weight)
            for m in [1, 37] {
                for accumulate in [false, true] {
                    let what = "[\(shape.rows), \(shape.columns)] m=\(m) accumulate=\(accumulate)"
                    // Forward: output[m, rows] = input[m, columns] · Wᵀ.
                    let forwardInput = randomValues(m * shape.columns, seed: 21)
                    let forwardStart = accumulate ? randomValues(m * shape.rows, seed: 22) : [Float](repeating: 0, count: m * shape.rows)
                    var forward = forwardStart, forwardExpected = forwardStart
                    weight.multiplyTransposed(forwardInput, rows: m, into: &forward, accumulate: accumulate)
                    reference.gemm(transposeA: false, transposeB: true, m: m, n: shape.rows, k: shape.columns, alpha: 1,
                                   a: forwardInput, lda: shape.columns, b: expanded, ldb: shape.columns,
                                   beta: accumulate ? 1 : 0, c: &forwardExpected, ldc: shape.rows)
                    // Float32 sums of ≤ 1001 terms of size ≤ 1 against double ones: a few 1e-5 at most.
                    assertClose(forward, forwardExpected, rtol: 1e-4, atol: 1e-4, "multiplyTransposed \(what)")
                    // Input gradient: output[m, columns] = input[m, rows] · W.
                    let backwardInput = randomValues(m * shape.rows, seed: 23)
                    let backwardStart = accumulate ? randomValues(m * shape.columns, seed: 24) : [Float](repeating: 0, count: m * shape.columns)
                    var backward = backwardStart, backwardExpected = backwardStart
                    weight.multiply(backwardInput, rows: m, into: &backward, accumulate: accumulate)
                    reference.gemm(transposeA: false, transposeB: false, m: m, n: shape.columns, k: shape.rows, alpha: 1,
                                   a: backwardInput, lda: shape.rows, b: expanded, ldb: shape.columns,
                                   beta: accumulate ? 1 : 0, c: &backwardExpected, ldc: shape.columns)
                    assertClose(backward, backwardExpected, rtol: 1e-4, atol: 1e-4, "multiply \(what)")
                }
            }
        }
    }

    /// Decoding's products straight from the packed codes (m ≤ 8, four input rows at a time) against the reference
    /// product with the expanded weight: odd columns (blocks straddle rows and start on a low nibble), both absmax
    /// kinds, overwriting and accumulating.
    func testFewRowProductEqualsTheProductWithTheExpandedWeight() throws {
        for (rows, columns, blockSize, doubleQuantization) in [(37, 83, 64, true), (21, 256, 32, false), (9, 1001, 128, true)] {
            let weight = try randomValues(rows * columns, seed: 31).withUnsafeBufferPointer {
                try NF4Weight(rows: rows, columns: columns, values: $0, blockSize: blockSize, doubleQuantization: doubleQuantization)
            }
            for m in 1...NF4Weight.fewRows {
                assertForwardProductEqualsReference(weight, expanded: decompressed(weight), rows: m, seed: UInt64(40 + m),
                                                    "[\(rows), \(columns)] block \(blockSize)") {
                    weight.multiplyFewRows($0, rows: $1, into: $2, accumulate: $3)
                }
            }
        }
    }

    func testRoundTripErrorOfNormalWeightsAndBitsPerValue() throws {
        let (rows, columns) = (256, 1024)
        var generator = SeededGenerator(seed: 17)
        var values = [Float](repeating: 0, count: rows * columns)
        for index in stride(from: 0, to: values.count, by: 2) {
            // Box–Muller: two N(0, 1) draws from two uniform ones.
            let radius = (-2 * Foundation.log(1 - Double(generator.nextUnitFloat()))).squareRoot()
            let angle = 2 * Double.pi * Double(generator.nextUnitFloat())
            values[index] = Float(radius * Foundation.cos(angle))
            values[index + 1] = Float(radius * Foundation.sin(angle))
        }
        let weight = try values.withUnsafeBufferPointer { try NF4Weight(rows: rows, columns: columns, values: $0) }
        let restored = decompressed(weight)
        let errorSquares = zip(restored, values).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
        let valueSquares = values.reduce(0.0) { $0 + Double($1) * Double($1) }
        let relativeRMS = (errorSquares / valueSquares).squareRoot()
        print("NF4 round trip of N(0, 1) [\(rows), \(columns)]: relative RMS error \(relativeRMS), "
              + "\(weight.bitsPerValue) bits per value")
        // Measured 0.0922 (seed 17); QLoRA's NF4 on normal weights is about 0.09-0.1. A wrong nibble order or
        // absmax would give 0.5 or more.
        XCTAssertLessThan(relativeRMS, 0.1, "relative RMS error of the NF4 round trip")
        XCTAssertGreaterThan(relativeRMS, 0.05, "suspiciously small NF4 error: is the weight quantized at all?")
        // 4 bits + an 8-bit absmax per 64 values + a float32 scale per 256 absmaxes + one offset.
        let valueCount = rows * columns
        let blockCount = valueCount / 64
        let expectedBytes: Int = valueCount / 2 + blockCount + 4 * (blockCount / 256) + 4
        XCTAssertEqual(weight.byteCount, expectedBytes)
        let expectedBits: Double = 4 + 8.0 / 64 + 32.0 / (64 * 256)
        XCTAssertEqual(weight.bitsPerValue, expectedBits, accuracy: 1e-3)
        XCTAssertEqual(weight.formatName, "nf4")
    }

    func testRejectsBadShapesAndBlockSizes() throws {
        let values = [Float](repeating: 1, count: 6)
        try values.withUnsafeBufferPointer { buffer in
            XCTAssertThrowsError(try NF4Weight(rows: 2, columns: 4, values: buffer)) { error in
                XCTAssertEqual(error as? NF4Weight.QuantizationError, .countMismatch(rows: 2, columns: 4, valueCount: 6))
            }
            XCTAssertThrowsError(try NF4Weight(rows: 2, columns: 3, values: buffer, blockSize: 100)) { error in
                XCTAssertEqual(error as? NF4Weight.QuantizationError, .unsupportedBlockSize(100))
            }
            XCTAssertNoThrow(try NF4Weight(rows: 2, columns: 3, values: buffer))
            XCTAssertThrowsError(try NF4Weight(rows: -2, columns: -3, values: buffer)) { error in
                XCTAssertEqual(error as? NF4Weight.QuantizationError, .negativeShape(rows: -2, columns: -3))
            }
        }
        let withInfinity: [Float] = [1, 2, 3, 4, .infinity, 6]
        try withInfinity.withUnsafeBufferPointer { buffer in
            XCTAssertThrowsError(try NF4Weight(rows: 2, columns: 3, values: buffer)) { error in
                XCTAssertEqual(error as? NF4Weight.QuantizationError, .nonFiniteValue(row: 1, column: 1, value: .infinity))
            }
        }
    }
}
