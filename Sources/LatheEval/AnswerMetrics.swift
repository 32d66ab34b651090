/// Which steps of SQuAD v1.1's answer normalisation to apply before comparing a prediction with a reference.
/// All on (the default) is SQuAD's `normalize_answer`: lowercase, remove ASCII punctuation, remove the articles
/// a/an/the as whole words, collapse whitespace. With every step off, texts are only split on whitespace.
public struct AnswerNormalization: Sendable, Equatable {
    public var lowercase: Bool
    public var removePunctuation: Bool
    public var removeArticles: Bool

    public init(lowercase: Bool = true, removePunctuation: Bool = true, removeArticles: Bool = true) {
        self.lowercase = lowercase; self.removePunctuation = removePunctuation; self.removeArticles = removeArticles
    }

    /// SQuAD v1.1's normalisation.
    public static let squad = AnswerNormalization()
    /// No normalisation beyond splitting on whitespace.
    public static let none = AnswerNormalization(lowercase: false, removePunctuation: false, removeArticles: false)

    /// The normalised text, whitespace collapsed to single spaces.
    public func normalize(_ text: String) -> String {
        PythonText.string(Array(tokens(text).joined(separator: [" "])))
    }

    /// The normalised words, in the order `white_space_fix(remove_articles(remove_punc(lower(s)))).split()`.
    func tokens(_ text: String) -> [CodePoints] {
        var s = Array(text.unicodeScalars)
        if lowercase { s = PythonText.lower(s) }
        if removePunctuation { s.removeAll { $0.isASCII && Self.asciiPunctuation.contains(UInt8($0.value)) } }
        if removeArticles { s = Self.replacingArticles(s) }
        return PythonText.split(s)
    }

    /// Python's `string.punctuation`.
    private static let asciiPunctuation = Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".utf8)

    /// `re.sub(r'\b(a|an|the)\b', ' ', text)`: the articles, bounded by non-word characters, become a space.
    /// (SQuAD runs this after lowercasing, so only lowercase articles are removed, as here.)
    private static let articles: [CodePoints] = ["a", "an", "the"].map { Array($0.unicodeScalars) }

    private static func replacingArticles(_ s: CodePoints) -> CodePoints {
        func isWord(_ i: Int) -> Bool { i >= 0 && i < s.count && PythonText.isWordCharacter(s[i]) }
        var out: CodePoints = []
        var i = 0
        while i < s.count {
            // The alternation tries "a" before "an": "a" only matches when a boundary follows it.
            if !isWord(i - 1) {
                var matched = 0
                for a in articles {
                    if i + a.count <= s.count, Array(s[i..<i + a.count]) == a, !isWord(i + a.count) {
                        matched = a.count
                        break
                    }
                }
                if matched > 0 {
                    out.append(" ")
                    i += matched
                    continue
                }
            }
            out.append(s[i])
            i += 1
        }
        return out
    }
}

/// SQuAD-style answer metrics over one prediction and its references (the best reference counts).
public enum AnswerMetrics {
    /// 1 when the normalised prediction equals a normalised reference, else 0 (SQuAD's `exact_match_score`).
    public static func exactMatch(_ prediction: String, references: [String],
                                  normalization: AnswerNormalization = .squad) -> Double {
        let predicted = normalization.tokens(prediction).map(TokenKey.init)
        return references.contains { normalization.tokens($0).map(TokenKey.init) == predicted } ? 1 : 0
    }

    /// The harmonic mean of token precision and recall of the normalised texts (SQuAD's `f1_score`),
    /// the highest over the references.
    public static func tokenF1(_ prediction: String, references: [String],
                               normalization: AnswerNormalization = .squad) -> Double {
        let predicted = normalization.tokens(prediction).map(TokenKey.init)
        return references.map { reference in
            let expected = normalization.tokens(reference).map(TokenKey.init)
            var remaining: [TokenKey: Int] = [:]
            for token in expected { remaining[token, default: 0] += 1 }
            var same = 0
            for token in predicted where remaining[token, default: 0] > 0 {
                remaining[token, default: 0] -= 1
                same += 1
            }
            guard same > 0 else { return 0 }
            let precision = Double(same) / Double(predicted.count), recall = Double(same) / Double(expected.count)
            return 2 * precision * recall / (precision + recall)
        }.max() ?? 0
    }
}
