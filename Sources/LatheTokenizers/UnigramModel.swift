/// SentencePiece Unigram as Hugging Face `tokenizers` runs it: the split of a word into vocabulary pieces whose
/// scores (log probabilities) sum highest, found by Viterbi over a trie of the pieces. A character no piece
/// covers costs the lowest score less 10 and becomes an unknown piece; adjacent unknown pieces are fused.
struct UnigramModel: Sendable {
    /// One piece of a word's split: the token, or nil for a run of unknown characters.
    struct Piece: Equatable {
        var range: Range<Int>
        var id: Int?
    }

    /// Trie nodes; node 0 is the root. `children` maps a scalar value to a node index.
    private struct Node: Sendable {
        var children: [UInt32: Int32] = [:]
        var tokenID: Int32 = -1
    }

    let scores: [Double]
    private let nodes: [Node]
    private let unknownScore: Double

    /// `pieces[i]` has id i and score `scores[i]`.
    init(pieces: [String], scores: [Double]) {
        var nodes = [Node()]
        for (id, token) in pieces.enumerated() where !token.isEmpty {
            var node = 0
            for scalar in token.unicodeScalars {
                if let child = nodes[node].children[scalar.value] {
                    node = Int(child)
                } else {
                    nodes.append(Node())
                    nodes[node].children[scalar.value] = Int32(nodes.count - 1)
                    node = nodes.count - 1
                }
            }
            // A repeated token keeps its last id, as Hugging Face's token-to-id map does.
            nodes[node].tokenID = Int32(id)
        }
        self.nodes = nodes
        self.scores = scores
        unknownScore = (scores.min() ?? 0) - 10
    }

    /// The best split of `word`. Ties keep the path found first (earlier start, then shorter piece), as
    /// Hugging Face's `encode_optimized` does.
    func segment(_ word: [Unicode.Scalar], unknownTokenID: Int?) -> [Piece] {
        let count = word.count
        guard count > 0 else { return [] }
        // Best path ending at each position: its score, where its last piece starts, and that piece's id.
        var bestScore = [Double](repeating: 0, count: count + 1)
        var bestStart = [Int](repeating: -1, count: count + 1)
        var bestID = [Int](repeating: -1, count: count + 1)
        func offer(start: Int, end: Int, id: Int, score: Double) {
            let candidate = bestScore[start] + score
            if bestStart[end] < 0 || candidate > bestScore[end] {
                bestScore[end] = candidate
                bestStart[end] = start
                bestID[end] = id
            }
        }
        for start in 0..<count {
            var node = 0
            var coversOneCharacter = false
            var end = start
            while end < count, let child = nodes[node].children[word[end].value] {
                node = Int(child)
                end += 1
                let id = Int(nodes[node].tokenID)
                if id >= 0 {
                    offer(start: start, end: end, id: id, score: scores[id])
                    if end == start + 1 { coversOneCharacter = true }
                }
            }
            // -2 marks an unknown character (Hugging Face needs an unknown token here; without one it is dropped
            // later).
            if !coversOneCharacter { offer(start: start, end: start + 1, id: -2, score: unknownScore) }
        }
        var pieces: [Piece] = []
        var end = count
        while end > 0 {
            let start = bestStart[end]
            let isUnknown = bestID[end] == -2 || bestID[end] == unknownTokenID
            if isUnknown, let last = pieces.last, last.id == nil, last.range.lowerBound == end {
                pieces[pieces.count - 1].range = start..<last.range.upperBound
            } else {
                pieces.append(Piece(range: start..<end, id: isUnknown ? nil : bestID[end]))
            }
            end = start
        }
        return pieces.reversed()
    }
}
