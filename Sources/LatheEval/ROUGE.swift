/// Precision, recall and F-measure of one ROUGE comparison.
public struct ROUGEScore: Sendable, Equatable {
    public let precision: Double
    public let recall: Double
    public let fMeasure: Double

    init(precision: Double, recall: Double) {
        self.precision = precision; self.recall = recall
        fMeasure = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
    }
}

/// ROUGE as Google's `rouge_score.rouge_scorer.RougeScorer(..., use_stemmer=False)` computes it, with its
/// default tokenizer.
public enum ROUGE {
    /// rouge-score's tokenizer without stemming: lowercase, then every maximal run of ASCII letters and digits is
    /// a token (everything else, including non-ASCII letters, separates tokens and is dropped).
    public static func tokenize(_ text: String) -> [String] { tokens(text).map(PythonText.string) }

    static func tokens(_ text: String) -> [CodePoints] {
        var tokens: [CodePoints] = []
        var current: CodePoints = []
        for c in PythonText.lower(Array(text.unicodeScalars)) {
            if ("a"..."z").contains(c) || ("0"..."9").contains(c) {
                current.append(c)
            } else if !current.isEmpty {
                tokens.append(current)
                current = []
            }
        }
        if !current.isEmpty { tokens.append(current) }
        return tokens
    }

    /// ROUGE-N: clipped n-gram overlap of the prediction with the reference (`rouge1`, `rouge2`, ...).
    public static func nGram(_ n: Int, prediction: String, reference: String) -> ROUGEScore {
        nGram(n, prediction: tokens(prediction).map(TokenKey.init), reference: tokens(reference).map(TokenKey.init))
    }

    static func nGram(_ n: Int, prediction: [TokenKey], reference: [TokenKey]) -> ROUGEScore {
        let predicted = nGramCounts(prediction, order: n), expected = nGramCounts(reference, order: n)
        let overlap = predicted.reduce(0) { $0 + min($1.value, expected[$1.key] ?? 0) }
        let predictedCount = predicted.values.reduce(0, +), expectedCount = expected.values.reduce(0, +)
        return ROUGEScore(precision: Double(overlap) / Double(max(predictedCount, 1)),
                          recall: Double(overlap) / Double(max(expectedCount, 1)))
    }

    /// ROUGE-L: the longest common subsequence of the token sequences (`rougeL`).
    public static func longestCommonSubsequence(prediction: String, reference: String) -> ROUGEScore {
        longestCommonSubsequence(prediction: tokens(prediction).map(TokenKey.init),
                                 reference: tokens(reference).map(TokenKey.init))
    }

    static func longestCommonSubsequence(prediction: [TokenKey], reference: [TokenKey]) -> ROUGEScore {
        guard !prediction.isEmpty, !reference.isEmpty else { return ROUGEScore(precision: 0, recall: 0) }
        // One row of the dynamic-programming table at a time.
        var previous = [Int](repeating: 0, count: prediction.count + 1)
        var current = previous
        for r in reference {
            for j in 1...prediction.count {
                current[j] = r == prediction[j - 1] ? previous[j - 1] + 1 : max(previous[j], current[j - 1])
            }
            swap(&previous, &current)
        }
        let length = Double(previous[prediction.count])
        return ROUGEScore(precision: length / Double(prediction.count), recall: length / Double(reference.count))
    }

    /// ROUGE-1, ROUGE-2 and ROUGE-L of one pair, tokenizing each text once.
    public static func scores(prediction: String, reference: String) -> (rouge1: ROUGEScore, rouge2: ROUGEScore, rougeL: ROUGEScore) {
        let p = tokens(prediction).map(TokenKey.init), r = tokens(reference).map(TokenKey.init)
        return (nGram(1, prediction: p, reference: r), nGram(2, prediction: p, reference: r),
                longestCommonSubsequence(prediction: p, reference: r))
    }
}
