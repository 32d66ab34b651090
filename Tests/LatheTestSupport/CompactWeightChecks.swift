import LatheTensors
import XCTest

/// Checks a compact weight's forward product — `product`, by default its `multiplyTransposed` — against the reference
/// product with `expanded` (its values, row-major) for `m` seeded random input rows, overwriting and accumulating.
/// Tolerance: 1e-5 of the largest output plus 1e-6, since the sums run in another order.
public func assertForwardProductEqualsReference(
    _ weight: any CompactWeight, expanded: [Float], rows m: Int, seed: UInt64, _ context: String,
    product: ((UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>, Bool) -> Void)? = nil,
    file: StaticString = #filePath, line: UInt = #line
) {
    func random(_ count: Int, _ seed: UInt64) -> [Float] {
        var generator = SeededGenerator(seed: seed)
        return (0..<count).map { _ in generator.nextUnitFloat() * 2 - 1 }
    }
    let rows = weight.rows, columns = weight.columns
    let input = random(m * columns, seed)
    let multiply = product ?? { weight.multiplyTransposed($0, rows: $1, into: $2, accumulate: $3) }
    for accumulate in [false, true] {
        var actual = random(m * rows, seed &+ 1), expected = actual
        multiply(input, m, &actual, accumulate)
        ReferenceMatMulBackend().gemm(transposeA: false, transposeB: true, m: m, n: rows, k: columns, alpha: 1,
                                      a: input, lda: columns, b: expanded, ldb: columns,
                                      beta: accumulate ? 1 : 0, c: &expected, ldc: rows)
        let gap = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
        let largest = expected.map(abs).max() ?? 0
        XCTAssertLessThanOrEqual(gap, 1e-5 * largest + 1e-6,
                                 "\(context) m=\(m) accumulate=\(accumulate): largest difference \(gap) of \(largest)",
                                 file: file, line: line)
    }
}
