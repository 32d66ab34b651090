import Foundation

/// Causal grouped-query attention of one sequence: each of `heads` query heads attends to key/value head
/// h / (heads / kvHeads), over the keys up to its own position that are not padding.
public enum GroupedQueryAttention {
    /// - Parameters:
    ///   - out: [queryCount, heads·headDim] attention outputs (before the output projection).
    ///   - queries: [queryCount, heads·headDim], already rotated.
    ///   - keys, values: [≥ firstQuerySlot + queryCount, kvHeads·headDim]: the cached past, then these queries' own.
    ///   - firstQuerySlot: the key slot of the first query (the number of cached positions before it).
    ///   - keyIsValid: one flag per key slot, false for padding; nil when every slot is real.
    ///   - scores: workspace of at least queryCount · (firstQuerySlot + queryCount) floats.
    public static func forward(out: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>,
                               keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                               queryCount: Int, firstQuerySlot: Int, keyIsValid: UnsafePointer<Bool>?,
                               heads: Int, kvHeads: Int, headDim: Int, scores: UnsafeMutablePointer<Float>) {
        let keyCount = firstQuerySlot + queryCount
        let queryStride = heads * headDim, kvStride = kvHeads * headDim
        let scale = 1 / Float(headDim).squareRoot()
        for h in 0..<heads {
            let g = h / (heads / kvHeads)
            MatMul.backend.gemm(transposeA: false, transposeB: true, m: queryCount, n: keyCount, k: headDim, alpha: scale,
                                a: queries + h * headDim, lda: queryStride, b: keys + g * headDim, ldb: kvStride,
                                beta: 0, c: scores, ldc: keyCount)
            for t in 0..<queryCount {
                let row = scores + t * keyCount
                let lastVisible = firstQuerySlot + t
                for j in (lastVisible + 1)..<max(keyCount, lastVisible + 1) { row[j] = -.infinity }
                if let keyIsValid {
                    for j in 0...lastVisible where !keyIsValid[j] { row[j] = -.infinity }
                }
                Softmax.forwardInPlace(row, count: keyCount)
            }
            MatMul.backend.gemm(transposeA: false, transposeB: false, m: queryCount, n: headDim, k: keyCount, alpha: 1,
                                a: scores, lda: keyCount, b: values + g * headDim, ldb: kvStride,
                                beta: 0, c: out + h * headDim, ldc: queryStride)
        }
    }
}
