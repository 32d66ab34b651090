extension Tokenizer {
    /// How a pre-tokenized word becomes ids.
    enum Model: Sendable {
        /// Ranked merges over the word's symbols (byte-level or SentencePiece BPE).
        case bpe(BPEMerges)
        /// The best-scoring split into vocabulary pieces (SentencePiece Unigram).
        case unigram(UnigramModel)
    }

    /// The kind of tokenizer, as the formats that save it distinguish them.
    public enum Kind: Sendable, Equatable {
        /// GPT-2 style: text as UTF-8 bytes spelled in a printable alphabet, then BPE (GGUF "gpt2").
        case byteLevelBPE
        /// SentencePiece BPE: "▁" for spaces, byte fallback (GGUF "llama").
        case sentencePieceBPE
        /// SentencePiece Unigram: scored pieces, Viterbi split.
        case unigram
    }

    public var kind: Kind {
        switch model {
        case .unigram: return .unigram
        case .bpe:
            let byteLevel = preTokenizer.steps.contains { if case .byteLevel = $0 { return true } else { return false } }
            return byteLevel ? .byteLevelBPE : .sentencePieceBPE
        }
    }

    /// A word that is itself in the vocabulary becomes that token without merging (BPE `ignore_merges`).
    public var ignoresMerges: Bool {
        if case .bpe(let merges) = model { return merges.ignoresMerges }
        return false
    }

    /// Unigram's per-token scores, or nil for BPE.
    public var unigramScores: [Double]? {
        if case .unigram(let unigram) = model { return unigram.scores }
        return nil
    }
}

/// BPE merges keyed by the pair of ids merged.
struct BPEMerges: Sendable {
    /// Merge rank and the id of the merged token.
    struct Merge: Sendable {
        var rank: Int32
        var result: Int32
    }

    let table: [UInt64: Merge]
    /// A word that is itself in the vocabulary becomes that token without merging (`ignore_merges`).
    let ignoresMerges: Bool

    /// `lines` in rank order; every token must be in the vocabulary (errors name `source` and the merge).
    init(_ lines: [(String, String)], source: String, idForToken: [ExactText: Int], ignoresMerges: Bool) throws {
        self.ignoresMerges = ignoresMerges
        var table: [UInt64: Merge] = [:]
        table.reserveCapacity(lines.count)
        for (rank, (left, right)) in lines.enumerated() {
            let merge = "\(left) \(right)"
            guard let leftID = idForToken[ExactText(left)] else {
                throw TokenizerError.unknownTokenInMerge(source: source, index: rank, merge: merge, token: left)
            }
            guard let rightID = idForToken[ExactText(right)] else {
                throw TokenizerError.unknownTokenInMerge(source: source, index: rank, merge: merge, token: right)
            }
            guard let resultID = idForToken[ExactText(left + right)] else {
                throw TokenizerError.unknownTokenInMerge(source: source, index: rank, merge: merge, token: left + right)
            }
            let key = Self.pairKey(Int32(leftID), Int32(rightID))
            // A repeated pair keeps its first (best) rank.
            if table[key] == nil { table[key] = Merge(rank: Int32(rank), result: Int32(resultID)) }
        }
        self.table = table
    }

    static func pairKey(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    /// The merges in rank order as (left id, right id).
    var ranked: [(left: Int, right: Int)] {
        table.sorted { $0.value.rank < $1.value.rank }.map { key, _ in (Int(key >> 32), Int(key & 0xFFFF_FFFF)) }
    }

    /// Merges the best-ranked adjacent pair, leftmost first on ties, until no pair has a merge. A heap of
    /// candidate pairs over a linked list of symbols keeps long words (runs of spaces) near n log n.
    func apply(_ symbols: inout [Int32]) {
        let count = symbols.count
        guard count >= 2 else { return }
        var next = Array(1...count)          // `count` means none
        var previous = Array(-1..<(count - 1))
        var heap = MergeHeap()
        for index in 0..<(count - 1) {
            if let merge = table[Self.pairKey(symbols[index], symbols[index + 1])] {
                heap.push(rank: merge.rank, position: Int32(index))
            }
        }
        while let (rank, position32) = heap.pop() {
            let position = Int(position32)
            let right = next[position]
            // Entries go stale when a neighbour merged first: check the pair is still there with this rank.
            guard symbols[position] >= 0, right < count,
                  let merge = table[Self.pairKey(symbols[position], symbols[right])], merge.rank == rank else {
                continue
            }
            symbols[position] = merge.result
            symbols[right] = -1
            next[position] = next[right]
            if next[right] < count { previous[next[right]] = position }
            let before = previous[position]
            if before >= 0, let merge = table[Self.pairKey(symbols[before], symbols[position])] {
                heap.push(rank: merge.rank, position: Int32(before))
            }
            let after = next[position]
            if after < count, let merge = table[Self.pairKey(symbols[position], symbols[after])] {
                heap.push(rank: merge.rank, position: Int32(position))
            }
        }
        symbols.removeAll { $0 < 0 }
    }

}
/// A binary min-heap of (rank, position): the next merge is the best rank, leftmost on ties.
struct MergeHeap {
    private var heap = BinaryHeap<UInt64>()

    mutating func push(rank: Int32, position: Int32) {
        heap.push(UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: position)))
    }

    mutating func pop() -> (Int32, Int32)? {
        guard let top = heap.pop() else { return nil }
        return (Int32(bitPattern: UInt32(top >> 32)), Int32(bitPattern: UInt32(truncatingIfNeeded: top)))
    }
}

