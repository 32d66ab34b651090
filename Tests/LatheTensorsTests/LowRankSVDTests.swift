import XCTest
@testable import LatheTensors

/// The truncated SVD of a product of thin factors: exact at full rank, even when the factors are rank-deficient,
/// and orthonormal right singular vectors with descending singular values when truncated (against numpy's SVD:
/// LatheModelsTests' merge test, scripts/reference/adapters.py).
final class LowRankSVDTests: XCTestCase {
    let rows = 20, columns = 15, inner = 6

    func product(_ b: [Float], _ a: [Float], k: Int) -> [Float] {
        var out = [Float](repeating: 0, count: rows * columns)
        for r in 0..<rows { for c in 0..<columns { for p in 0..<k { out[r * columns + c] += b[r * k + p] * a[p * columns + c] } } }
        return out
    }

    func largestGap(_ x: [Float], _ y: [Float]) -> Float { zip(x, y).map { abs($0 - $1) }.max() ?? 0 }

    func testFullRankReproducesTheProduct() {
        var b = randomValues(rows * inner, seed: 1)
        let a = randomValues(inner * columns, seed: 2)
        // A repeated column of B and a zero one: the product has rank 4 of 6.
        for r in 0..<rows { b[r * inner + 3] = b[r * inner + 1]; b[r * inner + 5] = 0 }
        let expected = product(b, a, k: inner)
        for rank in [inner, inner + 2] {
            let (newB, newA) = LowRankSVD.truncated(b: b, a: a, rows: rows, columns: columns, inner: inner, rank: rank)
            XCTAssertFalse(newB.contains { $0.isNaN } || newA.contains { $0.isNaN })
            let gap = largestGap(product(newB, newA, k: rank), expected)
            XCTAssertLessThanOrEqual(gap, 1e-5, "rank \(rank): largest difference \(gap)")
        }
    }

    func testTruncationKeepsTheLargestDirections() {
        let b = randomValues(rows * inner, seed: 3), a = randomValues(inner * columns, seed: 4)
        let full = LowRankSVD.truncated(b: b, a: a, rows: rows, columns: columns, inner: inner, rank: inner)
        let (newB, newA) = LowRankSVD.truncated(b: b, a: a, rows: rows, columns: columns, inner: inner, rank: 3)
        // Rows of A' are orthonormal; the columns of B' are U·S, their norms the singular values, in descending order.
        for i in 0..<3 {
            for j in 0..<3 {
                let dot = (0..<columns).reduce(Float(0)) { $0 + newA[i * columns + $1] * newA[j * columns + $1] }
                XCTAssertEqual(dot, i == j ? 1 : 0, accuracy: 1e-5, "A' rows \(i), \(j)")
            }
        }
        let sigma = (0..<inner).map { c in (0..<rows).reduce(Float(0)) { $0 + full.b[$1 * inner + c] * full.b[$1 * inner + c] }.squareRoot() }
        XCTAssertEqual(sigma, sigma.sorted(by: >))
        // Eckart–Young: what the rank-3 factors leave out has the Frobenius norm of the dropped singular values.
        let residual = zip(product(b, a, k: inner), product(newB, newA, k: 3)).reduce(Float(0)) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
        let dropped = sigma[3...].reduce(Float(0)) { $0 + $1 * $1 }
        XCTAssertEqual(residual, dropped, accuracy: 1e-4 * dropped)
    }
}
