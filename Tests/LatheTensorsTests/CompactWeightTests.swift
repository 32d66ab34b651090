import XCTest
@testable import LatheTensors

/// The tiled products of compact weights equal plain products with the expanded weight.
final class CompactWeightTests: XCTestCase {
    func randomValues(_ count: Int, seed: UInt64) -> [Float] {
        var random = SeededGenerator(seed: seed)
        return (0..<count).map { _ in random.nextUnitFloat() * 2 - 1 }
    }

    /// Checks both products, overwriting and accumulating, against the reference backend on the expanded weight;
    /// the shape spans several tiles with a partial last one.
    func checkTiledProducts(_ weight: any CompactWeight, file: StaticString = #filePath, line: UInt = #line) {
        let expanded = Tensor(zeros: [weight.rows, weight.columns])
        weight.decompress(into: expanded.pointer)
        let reference = ReferenceMatMulBackend()
        for m in [1, 5] {
            let forwardInput = randomValues(m * weight.columns, seed: 3), backwardInput = randomValues(m * weight.rows, seed: 4)
            let start = randomValues(m * max(weight.rows, weight.columns), seed: 5)
            for accumulate in [false, true] {
                var actual = Array(start.prefix(m * weight.rows)), expected = actual
                weight.tiledMultiplyTransposed(forwardInput, rows: m, into: &actual, accumulate: accumulate)
                reference.gemm(transposeA: false, transposeB: true, m: m, n: weight.rows, k: weight.columns, alpha: 1,
                               a: forwardInput, lda: weight.columns, b: expanded.pointer, ldb: weight.columns,
                               beta: accumulate ? 1 : 0, c: &expected, ldc: weight.rows)
                let forwardGap = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
                XCTAssertLessThanOrEqual(forwardGap, 1e-4, "x·Wᵀ m=\(m) accumulate=\(accumulate)", file: file, line: line)

                actual = Array(start.prefix(m * weight.columns)); expected = actual
                weight.tiledMultiply(backwardInput, rows: m, into: &actual, accumulate: accumulate)
                reference.gemm(transposeA: false, transposeB: false, m: m, n: weight.columns, k: weight.rows, alpha: 1,
                               a: backwardInput, lda: weight.rows, b: expanded.pointer, ldb: weight.columns,
                               beta: accumulate ? 1 : 0, c: &expected, ldc: weight.columns)
                let backwardGap = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
                XCTAssertLessThanOrEqual(backwardGap, 1e-4, "dy·W m=\(m) accumulate=\(accumulate)", file: file, line: line)
            }
        }
    }

    func testBF16WeightTiledProductsEqualPlainProducts() throws {
        // 4096 columns make 64-row tiles: 150 rows are two whole tiles and a partial one.
        let rows = 150, columns = 4096
        XCTAssertEqual(CompactWeightTiles.rowsPerTile(columns: columns), 64)
        let values = randomValues(rows * columns, seed: 1)
        let weight = try values.withUnsafeBufferPointer { try BF16Weight(rows: rows, columns: columns, values: $0) }
        XCTAssertEqual(weight.byteCount, rows * columns * 2)
        XCTAssertEqual(weight.bitsPerValue, 16)
        let expanded = Tensor(zeros: [rows, columns])
        weight.decompress(into: expanded.pointer)
        XCTAssertEqual(expanded.array, values.map { BF16.float(fromBits: BF16.bits(from: $0)) })
        checkTiledProducts(weight)
    }

    /// Decoding's direct dot products over bf16 rows equal the plain product with the expanded weight.
    func testBF16FewRowProductEqualsPlainProduct() throws {
        let rows = 37, columns = 83  // a tail after the 32- and 16-wide steps
        let weight = try randomValues(rows * columns, seed: 6).withUnsafeBufferPointer {
            try BF16Weight(rows: rows, columns: columns, values: $0)
        }
        let expanded = Tensor(zeros: [rows, columns])
        weight.decompress(into: expanded.pointer)
        for m in 1...BF16Weight.fewRows {
            let input = randomValues(m * columns, seed: 7)
            for accumulate in [false, true] {
                var actual = randomValues(m * rows, seed: 8), expected = actual
                weight.multiplyFewRows(input, rows: m, into: &actual, accumulate: accumulate)
                ReferenceMatMulBackend().gemm(transposeA: false, transposeB: true, m: m, n: rows, k: columns, alpha: 1,
                                              a: input, lda: columns, b: expanded.pointer, ldb: columns,
                                              beta: accumulate ? 1 : 0, c: &expected, ldc: rows)
                let gap = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
                XCTAssertLessThanOrEqual(gap, 1e-5, "m=\(m) accumulate=\(accumulate)")
            }
        }
    }
}
