import XCTest
@testable import LatheFormats
import LatheTensors
import LatheTestSupport

/// GGUF blocks multiplied in place: every type's expansion equals `GGMLType.dequantize` (checked against gguf-py in
/// QuantizationTests) bit for bit, and its few-row and tiled products equal float32 products with those values.
final class GGMLBlockWeightTests: XCTestCase {
    /// Blocks of `type` for a [rows, columns] weight: quantized random values where Lathe has the quantizer, otherwise
    /// random bytes with sane fp16 super-block scales (d, dmin small positive normals), as formats.py builds them.
    func randomBlocks(_ type: GGMLType, rows: Int, columns: Int, seed: UInt64) throws -> [UInt8] {
        var random = SeededGenerator(seed: seed)
        if type.canQuantize {
            return try type.quantize((0..<rows * columns).map { _ in random.nextUnitFloat() * 2 - 1 })
        }
        let blocks = rows * columns / type.blockSize
        var bytes = (0..<blocks * type.typeSize).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        for b in 0..<blocks {
            let start = b * type.typeSize
            let scaleOffsets = type == .q6_K ? [start + type.typeSize - 2] : [start, start + 2]
            for offset in scaleOffsets {
                let bits = HalfPrecision.halfBits(from: 1e-3 + random.nextUnitFloat() * 0.1)
                bytes[offset] = UInt8(bits & 0xFF)
                bytes[offset + 1] = UInt8(bits >> 8)
            }
        }
        return bytes
    }

    func dequantized(_ type: GGMLType, _ bytes: [UInt8], count: Int) throws -> [Float] {
        var values = [Float](repeating: .nan, count: count)
        try bytes.withUnsafeBytes { source in try values.withUnsafeMutableBufferPointer { try type.dequantize(source, into: $0) } }
        return values
    }

    /// A block weight of random blocks and its values as `GGMLType.dequantize` gives them.
    func randomWeight(_ type: GGMLType, rows: Int, columns: Int, seed: UInt64,
                      rowOrder: [Int]? = nil) throws -> (weight: GGMLBlockWeight, bytes: [UInt8], values: [Float]) {
        let bytes = try randomBlocks(type, rows: rows, columns: columns, seed: seed)
        let weight = try bytes.withUnsafeBytes {
            try GGMLBlockWeight(type: type, rows: rows, columns: columns, bytes: $0, rowOrder: rowOrder)
        }
        return (weight, bytes, try dequantized(type, bytes, count: rows * columns))
    }

    func randomValues(_ count: Int, seed: UInt64) -> [Float] {
        var random = SeededGenerator(seed: seed)
        return (0..<count).map { _ in random.nextUnitFloat() * 2 - 1 }
    }

    func testExpansionEqualsTheDequantizerBitForBit() throws {
        let rows = 37, columns = 512
        for type in GGMLBlockWeight.supportedTypes {
            let (weight, bytes, expected) = try randomWeight(type, rows: rows, columns: columns, seed: 1)
            XCTAssertEqual(weight.byteCount, bytes.count)
            XCTAssertEqual(weight.formatName, type.description)
            for range in [0..<rows, 0..<1, 5..<6, 3..<20, 36..<37] {
                var actual = [Float](repeating: .nan, count: range.count * columns)
                weight.decompressRows(range, into: &actual)
                let differing = zip(actual, expected[range.lowerBound * columns..<range.upperBound * columns])
                    .filter { $0.0.bitPattern != $0.1.bitPattern }.count
                XCTAssertEqual(differing, 0, "\(type) rows \(range): \(differing) values differ from dequantize (tolerance 0)")
            }
        }
    }

    func testRowOrderMovesWholeRows() throws {
        let rows = 6, columns = 256, order = [3, 0, 5, 1, 4, 2]
        for type in GGMLBlockWeight.supportedTypes {
            let (weight, _, values) = try randomWeight(type, rows: rows, columns: columns, seed: 2, rowOrder: order)
            var actual = [Float](repeating: .nan, count: rows * columns)
            weight.decompress(into: &actual)
            let expected = order.flatMap { values[$0 * columns..<($0 + 1) * columns] }
            XCTAssertEqual(actual.map(\.bitPattern), expected.map(\.bitPattern), "\(type)")
        }
        let bytes = try randomBlocks(.q8_0, rows: rows, columns: columns, seed: 2)
        XCTAssertThrowsError(try bytes.withUnsafeBytes {
            try GGMLBlockWeight(type: .q8_0, rows: rows, columns: columns, bytes: $0, rowOrder: [0, 0, 1, 2, 3, 4])
        })
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try GGMLBlockWeight(type: .f16, rows: rows, columns: columns, bytes: $0) })
        XCTAssertThrowsError(try bytes.dropLast().withUnsafeBytes {
            try GGMLBlockWeight(type: .q8_0, rows: rows, columns: columns, bytes: $0)
        })
    }

    /// The few-row products (m ≤ 8, in groups of four) and the tiled ones (m = 9, 33) against the reference product
    /// with the dequantized values, overwriting and accumulating.
    func testProductsEqualFloat32ProductsWithTheDecodedValues() throws {
        let rows = 37, columns = 768
        for type in GGMLBlockWeight.supportedTypes {
            let (weight, _, expanded) = try randomWeight(type, rows: rows, columns: columns, seed: 3)
            for m in [1, 2, 3, 4, 5, 8, 9, 33] {
                assertForwardProductEqualsReference(weight, expanded: expanded, rows: m, seed: UInt64(10 + m), "\(type)")
            }
        }
    }

    /// The few-row product on several threads gives the same outputs as on one (each row is one thread's sum).
    func testFewRowProductIsTheSameOnTwoThreads() throws {
        let rows = 2048, columns = 576
        let weight = try randomWeight(.q4_1, rows: rows, columns: columns, seed: 5).weight
        let input = randomValues(columns, seed: 6)
        var one = [Float](repeating: 0, count: rows), two = one
        MatMul.setThreadCount(1)
        weight.multiplyFewRows(input, rows: 1, into: &one, accumulate: false)
        MatMul.setThreadCount(2)
        defer { MatMul.setThreadCount(1) }
        weight.multiplyFewRows(input, rows: 1, into: &two, accumulate: false)
        XCTAssertEqual(one, two)
    }

    /// int8 activations: where rounding to int8 is exact (each 32 inputs k/128 with one |k| = 127, so the scale is
    /// 1/128), the VNNI products equal the float32 product with the decoded values — every type's zero point, scales
    /// and offset are right; on random inputs the difference stays within the rounding's bound Σ |w|·scale/2.
    func testInt8ActivationProductsMatchTheirRounding() throws {
        try XCTSkipUnless(ActivationFormat.int8Available, "no AVX512-VNNI here: int8 activations fall back to float32")
        let rows = 13, columns = 768
        var random = SeededGenerator(seed: 21)
        for type in GGMLBlockWeight.supportedTypes {
            let (weight, _, expanded) = try randomWeight(type, rows: rows, columns: columns, seed: 4)
            weight.activations = .int8
            for m in [1, 2, 3, 4, 5] {
                var exact = (0..<m * columns).map { _ in Float(Int(random.next() % 255) - 127) / 128 }
                for chunk in 0..<m * columns / 32 { exact[32 * chunk + Int(random.next() % 32)] = random.next() % 2 == 0 ? 127.0 / 128 : -127.0 / 128 }
                let noisy = randomValues(m * columns, seed: UInt64(30 + m))
                for (input, exactRounding) in [(exact, true), (noisy, false)] {
                    var actual = [Float](repeating: 1, count: m * rows), expected = actual
                    weight.multiplyFewRows(input, rows: m, into: &actual, accumulate: true)
                    ReferenceMatMulBackend().gemm(transposeA: false, transposeB: true, m: m, n: rows, k: columns, alpha: 1,
                                                  a: input, lda: columns, b: expanded, ldb: columns, beta: 1, c: &expected, ldc: rows)
                    for i in 0..<m {
                        let x = Array(input[i * columns..<(i + 1) * columns])
                        for r in 0..<rows {
                            let w = Array(expanded[r * columns..<(r + 1) * columns])
                            let bound = exactRounding ? 1e-5 * (zip(w, x).map { abs($0 * $1) }.reduce(0, +) + 1)
                                : int8RoundingBound(w, x)
                            let gap = abs(actual[i * rows + r] - expected[i * rows + r])
                            XCTAssertLessThanOrEqual(gap, bound, "\(type) m=\(m) row \(i), \(r) exact rounding: \(exactRounding)")
                        }
                    }
                }
            }
        }
    }

    /// How far rounding x to int8 per 32 values can move Σ w·x: each input by at most its chunk's scale / 2, times |w|
    /// (the kernels multiply every part of w, its offset too, with the rounded inputs), plus float rounding.
    func int8RoundingBound(_ w: [Float], _ x: [Float]) -> Float {
        var bound: Float = 1e-5 * (zip(w, x).map { abs($0 * $1) }.reduce(0, +) + 1)
        for chunk in stride(from: 0, to: x.count, by: 32) {
            let scale = x[chunk..<chunk + 32].map(abs).max()! / 127
            bound += w[chunk..<chunk + 32].map(abs).reduce(0, +) * scale / 2
        }
        return bound
    }
}
