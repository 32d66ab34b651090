import Foundation

/// Causal grouped-query attention of one sequence: each of `heads` query heads attends to key/value head
/// h / (heads / kvHeads), over the keys up to its own position that are not padding and (when packing several
/// examples in one row) belong to its own segment.
public enum GroupedQueryAttention {
    /// Queries are taken in blocks of this many, so that each block's scores stop at its last visible key
    /// (half the work of a full square for a causal prompt) and the score workspace stays small.
    public static let queryBlock = 64

    /// Which keys a query may see besides causality; nil fields mean "all".
    public struct Mask {
        /// One flag per key slot, false for padding.
        public var keyIsValid: UnsafePointer<Bool>?
        /// One segment id per key slot; a query sees only keys of its own segment (packed examples).
        public var segments: UnsafePointer<Int32>?
        public init(keyIsValid: UnsafePointer<Bool>? = nil, segments: UnsafePointer<Int32>? = nil) {
            self.keyIsValid = keyIsValid
            self.segments = segments
        }

        /// Sets −∞ on the hidden keys of the scores row of the query in slot `querySlot`.
        @inline(__always)
        func apply(to row: UnsafeMutablePointer<Float>, querySlot: Int) {
            if let keyIsValid {
                for j in 0...querySlot where !keyIsValid[j] { row[j] = -.infinity }
            }
            if let segments {
                let own = segments[querySlot]
                for j in 0...querySlot where segments[j] != own { row[j] = -.infinity }
            }
        }
    }

    /// Computes the probabilities of one block of queries for head h into `scores` ([rows, visibleKeys]).
    @inline(__always)
    static func probabilities(scores: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>, keys: UnsafePointer<Float>,
                              blockStart: Int, blockEnd: Int, firstQuerySlot: Int, head h: Int, kvHead g: Int,
                              queryStride: Int, kvStride: Int, headDim: Int, scale: Float, mask: Mask) {
        let rows = blockEnd - blockStart, visibleKeys = firstQuerySlot + blockEnd
        MatMul.backend.gemm(transposeA: false, transposeB: true, m: rows, n: visibleKeys, k: headDim, alpha: scale,
                            a: queries + blockStart * queryStride + h * headDim, lda: queryStride,
                            b: keys + g * headDim, ldb: kvStride, beta: 0, c: scores, ldc: visibleKeys)
        for t in blockStart..<blockEnd {
            let row = scores + (t - blockStart) * visibleKeys
            let lastVisible = firstQuerySlot + t
            mask.apply(to: row, querySlot: lastVisible)
            Softmax.forwardInPlace(row, count: lastVisible + 1)
            (row + lastVisible + 1).update(repeating: 0, count: visibleKeys - lastVisible - 1)
        }
    }

    /// - Parameters:
    ///   - out: [queryCount, heads·headDim] attention outputs (before the output projection).
    ///   - queries: [queryCount, heads·headDim], already rotated.
    ///   - keys, values: [≥ firstQuerySlot + queryCount, kvHeads·headDim]: the cached past, then these queries' own.
    ///   - firstQuerySlot: the key slot of the first query (the number of cached positions before it).
    ///   - scores: workspace of at least `scoreCount(queryCount:firstQuerySlot:)` floats.
    public static func forward(out: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>,
                               keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                               queryCount: Int, firstQuerySlot: Int, mask: Mask = Mask(),
                               heads: Int, kvHeads: Int, headDim: Int, scores: UnsafeMutablePointer<Float>) {
        let queryStride = heads * headDim, kvStride = kvHeads * headDim
        let scale = 1 / Float(headDim).squareRoot()
        var mask = mask
        if let valid = mask.keyIsValid, !(0..<(firstQuerySlot + queryCount)).contains(where: { !valid[$0] }) {
            mask.keyIsValid = nil  // no padding: skip the per-row checks
        }
        var blockStart = 0
        while blockStart < queryCount {
            let blockEnd = min(blockStart + queryBlock, queryCount)
            let rows = blockEnd - blockStart, visibleKeys = firstQuerySlot + blockEnd
            for h in 0..<heads {
                let g = h / (heads / kvHeads)
                probabilities(scores: scores, queries: queries, keys: keys, blockStart: blockStart, blockEnd: blockEnd,
                              firstQuerySlot: firstQuerySlot, head: h, kvHead: g, queryStride: queryStride,
                              kvStride: kvStride, headDim: headDim, scale: scale, mask: mask)
                MatMul.backend.gemm(transposeA: false, transposeB: false, m: rows, n: headDim, k: visibleKeys, alpha: 1,
                                    a: scores, lda: visibleKeys, b: values + g * headDim, ldb: kvStride,
                                    beta: 0, c: out + blockStart * queryStride + h * headDim, ldc: queryStride)
            }
            blockStart = blockEnd
        }
    }

    /// The backward pass of `forward` with no cache (firstQuerySlot 0): recomputes each block's probabilities
    /// P from the saved queries and keys instead of keeping [T × T] per head, then
    /// dV += Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = scale·dS·K, dK += scale·dSᵀ·Q.
    /// - Parameters:
    ///   - dQueries: written (not added), [queryCount, heads·headDim].
    ///   - dKeys, dValues: added into, [queryCount, kvHeads·headDim]; heads sharing a KV head add together.
    ///   - scores, dScores: workspaces of `scoreCount(queryCount:firstQuerySlot: 0)` floats each.
    public static func backward(dQueries: UnsafeMutablePointer<Float>, dKeys: UnsafeMutablePointer<Float>,
                                dValues: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                queries: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                                queryCount: Int, mask: Mask = Mask(), heads: Int, kvHeads: Int, headDim: Int,
                                scores: UnsafeMutablePointer<Float>, dScores: UnsafeMutablePointer<Float>) {
        let queryStride = heads * headDim, kvStride = kvHeads * headDim
        let scale = 1 / Float(headDim).squareRoot()
        var blockStart = 0
        while blockStart < queryCount {
            let blockEnd = min(blockStart + queryBlock, queryCount)
            let rows = blockEnd - blockStart, visibleKeys = blockEnd
            for h in 0..<heads {
                let g = h / (heads / kvHeads)
                probabilities(scores: scores, queries: queries, keys: keys, blockStart: blockStart, blockEnd: blockEnd,
                              firstQuerySlot: 0, head: h, kvHead: g, queryStride: queryStride,
                              kvStride: kvStride, headDim: headDim, scale: scale, mask: mask)
                let dOutBlock = dOut + blockStart * queryStride + h * headDim
                // dV[0..<visibleKeys] += Pᵀ · dO
                MatMul.backend.gemm(transposeA: true, transposeB: false, m: visibleKeys, n: headDim, k: rows, alpha: 1,
                                    a: scores, lda: visibleKeys, b: dOutBlock, ldb: queryStride,
                                    beta: 1, c: dValues + g * headDim, ldc: kvStride)
                // dP = dO · Vᵀ
                MatMul.backend.gemm(transposeA: false, transposeB: true, m: rows, n: visibleKeys, k: headDim, alpha: 1,
                                    a: dOutBlock, lda: queryStride, b: values + g * headDim, ldb: kvStride,
                                    beta: 0, c: dScores, ldc: visibleKeys)
                for r in 0..<rows {
                    let p = scores + r * visibleKeys, dp = dScores + r * visibleKeys
                    var dot: Float = 0
                    for j in 0..<visibleKeys { dot += p[j] * dp[j] }
                    for j in 0..<visibleKeys { dp[j] = p[j] * (dp[j] - dot) }
                }
                // dQ = scale · dS · K ; dK += scale · dSᵀ · Q
                MatMul.backend.gemm(transposeA: false, transposeB: false, m: rows, n: headDim, k: visibleKeys, alpha: scale,
                                    a: dScores, lda: visibleKeys, b: keys + g * headDim, ldb: kvStride,
                                    beta: 0, c: dQueries + blockStart * queryStride + h * headDim, ldc: queryStride)
                MatMul.backend.gemm(transposeA: true, transposeB: false, m: visibleKeys, n: headDim, k: rows, alpha: scale,
                                    a: dScores, lda: visibleKeys, b: queries + blockStart * queryStride + h * headDim,
                                    ldb: queryStride, beta: 1, c: dKeys + g * headDim, ldc: kvStride)
            }
            blockStart = blockEnd
        }
    }

    /// The score workspace `forward` and `backward` need.
    public static func scoreCount(queryCount: Int, firstQuerySlot: Int) -> Int {
        min(queryCount, queryBlock) * (firstQuerySlot + queryCount)
    }
}
