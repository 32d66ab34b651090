import Foundation

/// Causal grouped-query attention of one sequence: each of `heads` query heads attends to key/value head
/// h / (heads / kvHeads), over the keys up to its own position that are not padding.
public enum GroupedQueryAttention {
    /// Queries are taken in blocks of this many, so that each block's scores stop at its last visible key
    /// (half the work of a full square for a causal prompt) and the score workspace stays small.
    public static let queryBlock = 64

    /// - Parameters:
    ///   - out: [queryCount, heads·headDim] attention outputs (before the output projection).
    ///   - queries: [queryCount, heads·headDim], already rotated.
    ///   - keys, values: [≥ firstQuerySlot + queryCount, kvHeads·headDim]: the cached past, then these queries' own.
    ///   - firstQuerySlot: the key slot of the first query (the number of cached positions before it).
    ///   - keyIsValid: one flag per key slot, false for padding; nil when every slot is real.
    ///   - scores: workspace of at least `scoreCount(queryCount:firstQuerySlot:)` floats.
    public static func forward(out: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>,
                               keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                               queryCount: Int, firstQuerySlot: Int, keyIsValid: UnsafePointer<Bool>?,
                               heads: Int, kvHeads: Int, headDim: Int, scores: UnsafeMutablePointer<Float>) {
        let queryStride = heads * headDim, kvStride = kvHeads * headDim
        let scale = 1 / Float(headDim).squareRoot()
        let keyCount = firstQuerySlot + queryCount
        let padding = keyIsValid.map { v in (0..<keyCount).contains { !v[$0] } } ?? false
        var blockStart = 0
        while blockStart < queryCount {
            let blockEnd = min(blockStart + queryBlock, queryCount)
            let rows = blockEnd - blockStart, visibleKeys = firstQuerySlot + blockEnd
            for h in 0..<heads {
                let g = h / (heads / kvHeads)
                MatMul.backend.gemm(transposeA: false, transposeB: true, m: rows, n: visibleKeys, k: headDim, alpha: scale,
                                    a: queries + blockStart * queryStride + h * headDim, lda: queryStride,
                                    b: keys + g * headDim, ldb: kvStride, beta: 0, c: scores, ldc: visibleKeys)
                for t in blockStart..<blockEnd {
                    let row = scores + (t - blockStart) * visibleKeys
                    let lastVisible = firstQuerySlot + t
                    if padding, let keyIsValid {
                        for j in 0...lastVisible where !keyIsValid[j] { row[j] = -.infinity }
                    }
                    Softmax.forwardInPlace(row, count: lastVisible + 1)
                    (row + lastVisible + 1).update(repeating: 0, count: visibleKeys - lastVisible - 1)
                }
                MatMul.backend.gemm(transposeA: false, transposeB: false, m: rows, n: headDim, k: visibleKeys, alpha: 1,
                                    a: scores, lda: visibleKeys, b: values + g * headDim, ldb: kvStride,
                                    beta: 0, c: out + blockStart * queryStride + h * headDim, ldc: queryStride)
            }
            blockStart = blockEnd
        }
    }

    /// The score workspace `forward` needs.
    public static func scoreCount(queryCount: Int, firstQuerySlot: Int) -> Int {
        min(queryCount, queryBlock) * (firstQuerySlot + queryCount)
    }
}
