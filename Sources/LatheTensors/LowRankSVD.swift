/// The truncated SVD of a matrix given as a product of thin factors, M = B·A with B [rows, k] and A [k, columns],
/// without forming M: QR of B and of Aᵀ leave a k×k core whose SVD (one-sided Jacobi) gives M's singular triplets.
/// Exact at rank k; at a lower rank it is the best approximation in the Frobenius norm (Eckart–Young), which is what
/// `torch.linalg.svd` of the whole M gives (PEFT's svd merge of adapters) at a fraction of the cost.
public enum LowRankSVD {
    /// The rank-`rank` factors (B' = U·S [rows, rank], A' = Vᵀ [rank, columns]) of B·A, in double precision inside.
    /// Singular directions beyond the product's own rank come out as zeros.
    public static func truncated(b: [Float], a: [Float], rows: Int, columns: Int, inner k: Int, rank: Int)
        -> (b: [Float], a: [Float]) {
        // B = Qb·Rb, Aᵀ = Qa·Ra  →  B·A = Qb·(Rb·Raᵀ)·Qaᵀ.
        let (qb, rb) = thinQR(columnsOf: b, rows: rows, count: k, stride: k, columnStride: 1)
        let (qa, ra) = thinQR(columnsOf: a, rows: columns, count: k, stride: 1, columnStride: columns)
        var core = [Double](repeating: 0, count: k * k)
        for i in 0..<k { for j in 0..<k { for p in 0..<k { core[i * k + j] += rb[i * k + p] * ra[j * k + p] } } }
        let (u, s, v) = jacobiSVD(core, n: k)
        var newB = [Float](repeating: 0, count: rows * rank), newA = [Float](repeating: 0, count: rank * columns)
        for c in 0..<min(rank, k) {
            for r in 0..<rows {
                var sum = 0.0
                for p in 0..<k { sum += qb[p * rows + r] * u[p * k + c] }
                newB[r * rank + c] = Float(sum * s[c])
            }
            for col in 0..<columns {
                var sum = 0.0
                for p in 0..<k { sum += qa[p * columns + col] * v[p * k + c] }
                newA[c * columns + col] = Float(sum)
            }
        }
        return (newB, newA)
    }

    /// Modified Gram–Schmidt, twice (re-orthogonalized), on `count` vectors of length `rows` read from `values`
    /// (element i of vector j at j·columnStride + i·stride). Returns Q as `count` vectors of `rows` (a dependent
    /// vector gives a zero column and a zero row of R) and R [count, count] row-major.
    static func thinQR(columnsOf values: [Float], rows: Int, count: Int, stride: Int, columnStride: Int)
        -> (q: [Double], r: [Double]) {
        var q = [Double](repeating: 0, count: count * rows), r = [Double](repeating: 0, count: count * count)
        for j in 0..<count {
            var v = (0..<rows).map { Double(values[j * columnStride + $0 * stride]) }
            let original = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            for _ in 0..<2 {
                for p in 0..<j {
                    var dot = 0.0
                    for i in 0..<rows { dot += q[p * rows + i] * v[i] }
                    r[p * count + j] += dot
                    for i in 0..<rows { v[i] -= dot * q[p * rows + i] }
                }
            }
            let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            // What is left of a vector in the span of the earlier ones is rounding, not a direction.
            guard norm > 1e-12 * max(original, .leastNormalMagnitude) else { continue }
            r[j * count + j] = norm
            for i in 0..<rows { q[j * rows + i] = v[i] / norm }
        }
        return (q, r)
    }

    /// The SVD of an n×n matrix (row-major) by one-sided Jacobi rotations: M = U·diag(S)·Vᵀ, singular values in
    /// descending order, U and V as row-major n×n (column c is the c-th singular vector).
    static func jacobiSVD(_ m: [Double], n: Int) -> (u: [Double], s: [Double], v: [Double]) {
        var w = m  // its columns become U·S
        var v = [Double](repeating: 0, count: n * n)
        for i in 0..<n { v[i * n + i] = 1 }
        for _ in 0..<60 {
            var rotated = false
            for p in 0..<n {
                for q in (p + 1)..<n {
                    var alpha = 0.0, beta = 0.0, gamma = 0.0
                    for i in 0..<n {
                        alpha += w[i * n + p] * w[i * n + p]; beta += w[i * n + q] * w[i * n + q]
                        gamma += w[i * n + p] * w[i * n + q]
                    }
                    guard gamma != 0, abs(gamma) > 1e-15 * (alpha * beta).squareRoot() else { continue }
                    rotated = true
                    let zeta = (beta - alpha) / (2 * gamma)
                    let t = (zeta >= 0 ? 1 : -1) / (abs(zeta) + (1 + zeta * zeta).squareRoot())
                    let c = 1 / (1 + t * t).squareRoot(), s = c * t
                    for i in 0..<n {
                        let (x, y) = (w[i * n + p], w[i * n + q])
                        w[i * n + p] = c * x - s * y; w[i * n + q] = s * x + c * y
                        let (vx, vy) = (v[i * n + p], v[i * n + q])
                        v[i * n + p] = c * vx - s * vy; v[i * n + q] = s * vx + c * vy
                    }
                }
            }
            if !rotated { break }
        }
        let norms = (0..<n).map { c in (0..<n).reduce(0.0) { $0 + w[$1 * n + c] * w[$1 * n + c] }.squareRoot() }
        let order = (0..<n).sorted { norms[$0] > norms[$1] }
        var u = [Double](repeating: 0, count: n * n), sortedV = [Double](repeating: 0, count: n * n)
        for (c, source) in order.enumerated() {
            for i in 0..<n {
                u[i * n + c] = norms[source] > 0 ? w[i * n + source] / norms[source] : 0
                sortedV[i * n + c] = v[i * n + source]
            }
        }
        return (u, order.map { norms[$0] }, sortedV)
    }
}
