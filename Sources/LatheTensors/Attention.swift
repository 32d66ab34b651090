import Foundation

/// Causal grouped-query attention of one sequence: each of `heads` query heads attends to key/value head
/// h / (heads / kvHeads), over the keys up to its own position that are not padding and (when packing several
/// examples in one row) belong to its own segment, and (for a sliding-window layer) lie within its window.
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
        /// A sliding window of this many slots: the query in slot q sees the key in slot j only when q − j < window
        /// (transformers' `sliding_window_overlay`: kv_idx > q_idx − sliding_window), itself and window − 1 before.
        public var window: Int?
        public init(keyIsValid: UnsafePointer<Bool>? = nil, segments: UnsafePointer<Int32>? = nil, window: Int? = nil) {
            precondition(window.map { $0 >= 1 } ?? true, "an attention window holds at least the query's own slot")
            self.keyIsValid = keyIsValid
            self.segments = segments
            self.window = window
        }

        /// The mask of sequence `sequence` of a batch: its key flags start at `firstKeyRow`, its segment ids at query
        /// row s·queryRows.
        func ofSequence(_ sequence: Int, queryRows: Int, firstKeyRow: Int) -> Mask {
            Mask(keyIsValid: keyIsValid.map { $0 + firstKeyRow }, segments: segments.map { $0 + sequence * queryRows },
                 window: window)
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
            if let window, querySlot >= window {
                row.update(repeating: -.infinity, count: querySlot - window + 1)
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

    /// Where one sequence of a batch finds its keys: sequences of a KV cache with a length per slot each start at
    /// their own slot and have their own number of cached positions.
    public struct KeyWindow: Sendable, Equatable {
        /// The row of `keys`, `values` and the key flags holding the sequence's first position.
        public var firstKeyRow: Int
        /// The key slot of the sequence's first query (the number of cached positions before it).
        public var firstQuerySlot: Int
        public init(firstKeyRow: Int, firstQuerySlot: Int) { self.firstKeyRow = firstKeyRow; self.firstQuerySlot = firstQuerySlot }
    }

    /// - Parameters:
    ///   - out: [queryCount, heads·headDim] attention outputs (before the output projection).
    ///   - queries: [queryCount, heads·headDim], already rotated.
    ///   - keys, values: [≥ firstQuerySlot + queryCount, kvHeads·headDim]: the cached past, then these queries' own.
    ///   - firstQuerySlot: the key slot of the first query (the number of cached positions before it).
    ///   - scores: workspace of at least `scoreCount(queryCount:firstQuerySlot:)` floats.
    ///   - scale: multiplies q·k before the softmax; nil for 1/√headDim (Gemma 3: query_pre_attn_scalar^−½).
    ///   - sequences: independent sequences laid out one after another (a batch): sequence s's queries, outputs
    ///     and segment ids start at row s·queryCount, its keys, values and key flags at row s·keyRowsPerSequence
    ///     (by default firstQuerySlot + queryCount; a KV cache's capacity).
    public static func forward(out: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>,
                               keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                               queryCount: Int, firstQuerySlot: Int, mask: Mask = Mask(),
                               heads: Int, kvHeads: Int, headDim: Int, scale: Float? = nil,
                               scores: UnsafeMutablePointer<Float>, sequences: Int = 1, keyRowsPerSequence: Int? = nil) {
        let keyRows = keyRowsPerSequence ?? firstQuerySlot + queryCount
        forward(out: out, queries: queries, keys: keys, values: values, queryCount: queryCount,
                windows: (0..<sequences).map { KeyWindow(firstKeyRow: $0 * keyRows, firstQuerySlot: firstQuerySlot) },
                mask: mask, heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale, scores: scores)
    }

    /// The same attention for sequences that each sit in their own window of the keys (a batch decoder's slots):
    /// sequence s's queries, outputs and segment ids start at row s·queryCount; its keys, values and key flags at
    /// `windows[s].firstKeyRow`, where it sees `windows[s].firstQuerySlot` cached positions before its first query.
    /// `scores` holds at least `scoreCount(queryCount:firstQuerySlot:)` floats for the largest first query slot.
    ///
    /// The (sequence, query block, head) items are shared among the compute threads, each with its own slice of
    /// `scores`; every output is computed by the same code whichever thread takes it.
    public static func forward(out: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>,
                               keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                               queryCount: Int, windows: [KeyWindow], mask: Mask = Mask(),
                               heads: Int, kvHeads: Int, headDim: Int, scale: Float? = nil,
                               scores: UnsafeMutablePointer<Float>) {
        let queryStride = heads * headDim, kvStride = kvHeads * headDim
        let scale = scale ?? defaultScale(headDim: headDim)
        let blocks = (queryCount + queryBlock - 1) / queryBlock
        let masks = windows.enumerated().map { sequence, window in
            var own = mask.ofSequence(sequence, queryRows: queryCount, firstKeyRow: window.firstKeyRow)
            if let valid = own.keyIsValid, !(0..<(window.firstQuerySlot + queryCount)).contains(where: { !valid[$0] }) {
                own.keyIsValid = nil  // no padding: skip the per-row checks
            }
            return own
        }
        let longest = windows.map(\.firstQuerySlot).max() ?? 0
        let meanFirstSlot = windows.isEmpty ? 0 : windows.reduce(0) { $0 + $1.firstQuerySlot } / windows.count
        let workspace = blockScoreCount(queryCount: queryCount, firstQuerySlot: longest)
        Parallel.forEachWorker(count: windows.count * blocks * heads,
                               floatsPerItem: itemWork(queryCount: queryCount, firstQuerySlot: meanFirstSlot, headDim: headDim)) {
            worker, items in
            let scores = scores + worker * workspace
            for item in items {
                let sequence = item / (blocks * heads), h = item % heads
                let window = windows[sequence], firstQuerySlot = window.firstQuerySlot
                let blockStart = item / heads % blocks * queryBlock
                let blockEnd = min(blockStart + queryBlock, queryCount)
                let rows = blockEnd - blockStart, visibleKeys = firstQuerySlot + blockEnd
                let g = h / (heads / kvHeads)
                let sequenceQueries = queries + sequence * queryCount * queryStride
                let sequenceKeys = keys + window.firstKeyRow * kvStride, sequenceValues = values + window.firstKeyRow * kvStride
                probabilities(scores: scores, queries: sequenceQueries, keys: sequenceKeys, blockStart: blockStart,
                              blockEnd: blockEnd, firstQuerySlot: firstQuerySlot, head: h, kvHead: g,
                              queryStride: queryStride, kvStride: kvStride, headDim: headDim, scale: scale,
                              mask: masks[sequence])
                MatMul.backend.gemm(transposeA: false, transposeB: false, m: rows, n: headDim, k: visibleKeys, alpha: 1,
                                    a: scores, lda: visibleKeys, b: sequenceValues + g * headDim, ldb: kvStride,
                                    beta: 0, c: out + (sequence * queryCount + blockStart) * queryStride + h * headDim,
                                    ldc: queryStride)
            }
        }
    }

    /// The backward pass of `forward` with no cache (firstQuerySlot 0): recomputes each block's probabilities
    /// P from the saved queries and keys instead of keeping [T × T] per head, then
    /// dV += Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = scale·dS·K, dK += scale·dSᵀ·Q.
    /// - Parameters:
    ///   - dQueries: written (not added), [queryCount, heads·headDim].
    ///   - dKeys, dValues: added into, [queryCount, kvHeads·headDim]; heads sharing a KV head add together.
    ///   - scores, dScores: workspaces of `scoreCount(queryCount:firstQuerySlot: 0)` floats each.
    ///   - sequences: independent sequences one after another, each with queryCount rows of every operand.
    ///
    /// The (sequence, KV head) items are shared among the compute threads: an item adds its query heads into its
    /// KV head's dK and dV in the order one thread would (query block, then head), so the sums are the same bits
    /// on any thread count.
    public static func backward(dQueries: UnsafeMutablePointer<Float>, dKeys: UnsafeMutablePointer<Float>,
                                dValues: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                queries: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                                queryCount: Int, mask: Mask = Mask(), heads: Int, kvHeads: Int, headDim: Int,
                                scale: Float? = nil, scores: UnsafeMutablePointer<Float>,
                                dScores: UnsafeMutablePointer<Float>, sequences: Int = 1) {
        let queryStride = heads * headDim, kvStride = kvHeads * headDim
        let scale = scale ?? defaultScale(headDim: headDim)
        let headsPerGroup = heads / kvHeads
        let workspace = blockScoreCount(queryCount: queryCount, firstQuerySlot: 0)
        // Per item: the forward's products again and four more, for every head of the group and every block.
        let work = 3 * headsPerGroup * ((queryCount + queryBlock - 1) / queryBlock)
            * itemWork(queryCount: queryCount, firstQuerySlot: 0, headDim: headDim)
        Parallel.forEachWorker(count: sequences * kvHeads, floatsPerItem: work) { worker, items in
            let scores = scores + worker * workspace, dScores = dScores + worker * workspace
            for item in items {
                let sequence = item / kvHeads, g = item % kvHeads
                let rowOffset = sequence * queryCount
                let queries = queries + rowOffset * queryStride, dOut = dOut + rowOffset * queryStride
                let dQueries = dQueries + rowOffset * queryStride
                let keys = keys + rowOffset * kvStride, values = values + rowOffset * kvStride
                let dKeys = dKeys + rowOffset * kvStride, dValues = dValues + rowOffset * kvStride
                let mask = mask.ofSequence(sequence, queryRows: queryCount, firstKeyRow: rowOffset)
                var blockStart = 0
                while blockStart < queryCount {
                    let blockEnd = min(blockStart + queryBlock, queryCount)
                    let rows = blockEnd - blockStart, visibleKeys = blockEnd
                    for h in g * headsPerGroup..<(g + 1) * headsPerGroup {
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
        }
    }

    /// The usual 1/√headDim of scaled dot-product attention.
    public static func defaultScale(headDim: Int) -> Float { 1 / Float(headDim).squareRoot() }

    /// The score workspace `forward` and `backward` need: one block of queries against every visible key, for each
    /// compute thread (`Parallel.threadCount`).
    public static func scoreCount(queryCount: Int, firstQuerySlot: Int) -> Int {
        blockScoreCount(queryCount: queryCount, firstQuerySlot: firstQuerySlot) * Parallel.threadCount
    }

    /// One thread's share of the score workspace.
    static func blockScoreCount(queryCount: Int, firstQuerySlot: Int) -> Int {
        min(queryCount, queryBlock) * (firstQuerySlot + queryCount)
    }

    /// The multiply-adds of one (query block, head) of the forward pass, on average over the blocks: its two
    /// products over the keys it sees.
    static func itemWork(queryCount: Int, firstQuerySlot: Int, headDim: Int) -> Int {
        let rows = min(queryCount, queryBlock)
        return 2 * headDim * rows * (firstQuerySlot + (queryCount + rows) / 2)
    }
}
