import Foundation

/// sacrebleu's `13a` tokenizer (mteval-v13a, as used by WMT): splits off punctuation and symbols, and periods and
/// commas except between digits.
public enum Tokenizer13a {
    public static func tokenize(_ line: String) -> [String] { tokens(line).map(PythonText.string) }

    static func tokens(_ line: String) -> [CodePoints] {
        // BLEU strips trailing whitespace before tokenizing (`sent.rstrip()`).
        var s = Array(line.unicodeScalars)
        while let last = s.last, PythonText.isWhitespace(last) { s.removeLast() }
        s = PythonText.replace(s, "<skipped>", "")
        s = PythonText.replace(s, "-\n", "")
        s = PythonText.replace(s, "\n", " ")
        if s.contains("&") {
            s = PythonText.replace(s, "&quot;", "\"")
            s = PythonText.replace(s, "&amp;", "&")
            s = PythonText.replace(s, "&lt;", "<")
            s = PythonText.replace(s, "&gt;", ">")
        }
        var c: CodePoints = [" "] + s + [" "]
        // r'([\{-\~\[-\` -\&\(-\+\:-\@\/])' → r' \1 '
        c = c.flatMap { isSymbol($0) ? [" ", $0, " "] : [$0] }
        // r'([^0-9])([\.,])' → r'\1 \2 '
        c = substitutePairs(c, { !isDigit($0) && isPeriodOrComma($1) }) { [$0, " ", $1, " "] }
        // r'([\.,])([^0-9])' → r' \1 \2'
        c = substitutePairs(c, { isPeriodOrComma($0) && !isDigit($1) }) { [" ", $0, " ", $1] }
        // r'([0-9])(-)' → r'\1 \2 '
        c = substitutePairs(c, { isDigit($0) && $1 == "-" }) { [$0, " ", $1, " "] }
        return PythonText.split(c)
    }

    /// `re.sub` of a two-character pattern: leftmost matches, not overlapping, scanning on after each one.
    private static func substitutePairs(_ s: CodePoints, _ matches: (Unicode.Scalar, Unicode.Scalar) -> Bool,
                                        _ replacement: (Unicode.Scalar, Unicode.Scalar) -> CodePoints) -> CodePoints {
        var out: CodePoints = []
        out.reserveCapacity(s.count * 2)
        var i = 0
        while i < s.count {
            if i + 1 < s.count, matches(s[i], s[i + 1]) {
                out += replacement(s[i], s[i + 1])
                i += 2
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }

    private static func isDigit(_ c: Unicode.Scalar) -> Bool { c.value >= 0x30 && c.value <= 0x39 }
    private static func isPeriodOrComma(_ c: Unicode.Scalar) -> Bool { c == "." || c == "," }
    private static func isSymbol(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x7B...0x7E, 0x5B...0x60, 0x20...0x26, 0x28...0x2B, 0x3A...0x40, 0x2F: return true
        default: return false
        }
    }
}

/// BLEU's sufficient statistics of one or more segments: they add up over a corpus.
public struct BLEUStatistics: Sendable, Equatable {
    public var hypothesisLength = 0
    /// The length of the reference closest to the hypothesis (the shorter one on a tie), summed.
    public var referenceLength = 0
    /// Clipped n-gram matches, n = 1...4.
    public var correct = [0, 0, 0, 0]
    /// Hypothesis n-grams, n = 1...4.
    public var total = [0, 0, 0, 0]

    public init() {}

    /// The statistics of one hypothesis against its references (13a tokens, case kept).
    public init(hypothesis: String, references: [String]) {
        let hypothesisTokens = Tokenizer13a.tokens(hypothesis).map(TokenKey.init)
        let referenceTokens = references.map { Tokenizer13a.tokens($0).map(TokenKey.init) }
        hypothesisLength = hypothesisTokens.count
        var closestDifference = -1
        for tokens in referenceTokens {
            let difference = abs(hypothesisLength - tokens.count)
            if closestDifference == -1 || difference < closestDifference {
                closestDifference = difference
                referenceLength = tokens.count
            } else if difference == closestDifference, tokens.count < referenceLength {
                referenceLength = tokens.count
            }
        }
        for n in 1...BLEU.maxOrder {
            var referenceCounts: [NGramKey: Int] = [:]
            for tokens in referenceTokens {
                for (gram, count) in nGramCounts(tokens, order: n) { referenceCounts[gram] = max(referenceCounts[gram] ?? 0, count) }
            }
            for (gram, count) in nGramCounts(hypothesisTokens, order: n) {
                total[n - 1] += count
                correct[n - 1] += min(count, referenceCounts[gram] ?? 0)
            }
        }
    }

    public static func + (a: BLEUStatistics, b: BLEUStatistics) -> BLEUStatistics {
        var sum = a
        sum.hypothesisLength += b.hypothesisLength
        sum.referenceLength += b.referenceLength
        for n in 0..<BLEU.maxOrder { sum.correct[n] += b.correct[n]; sum.total[n] += b.total[n] }
        return sum
    }
}

/// BLEU as sacrebleu computes it by default: 13a tokens, case kept, n-grams up to 4, brevity penalty, 'exp'
/// smoothing (each order without a match counts as 1/2ᵏ of a match); scores are on 0–100.
public enum BLEU {
    public static let maxOrder = 4

    /// `sacrebleu.corpus_bleu(hypotheses, references)`; each hypothesis has one or more references.
    public static func corpusScore(hypotheses: [String], references: [[String]]) -> Double {
        score(zip(hypotheses, references).reduce(BLEUStatistics()) { $0 + BLEUStatistics(hypothesis: $1.0, references: $1.1) })
    }

    /// `sacrebleu.sentence_bleu(hypothesis, references)`, which uses the effective order (orders the
    /// hypothesis is too short to have are left out).
    public static func sentenceScore(hypothesis: String, references: [String]) -> Double {
        score(BLEUStatistics(hypothesis: hypothesis, references: references), effectiveOrder: true)
    }

    /// sacrebleu's `compute_bleu` with 'exp' smoothing.
    public static func score(_ s: BLEUStatistics, effectiveOrder: Bool = false) -> Double {
        var brevityPenalty = 1.0
        if s.hypothesisLength < s.referenceLength {
            brevityPenalty = s.hypothesisLength > 0
                ? Foundation.exp(1 - Double(s.referenceLength) / Double(s.hypothesisLength)) : 0
        }
        guard s.correct.contains(where: { $0 > 0 }) else { return 0 }
        var precisions = [Double](repeating: 0, count: maxOrder)
        var smoothing = 1.0
        var order = maxOrder
        for n in 1...maxOrder {
            if s.total[n - 1] == 0 { break }
            if effectiveOrder { order = n }
            if s.correct[n - 1] == 0 {
                smoothing *= 2
                precisions[n - 1] = 100 / (smoothing * Double(s.total[n - 1]))
            } else {
                precisions[n - 1] = 100 * Double(s.correct[n - 1]) / Double(s.total[n - 1])
            }
        }
        // sacrebleu floors log(0) at -9999999999, which makes the score 0 whenever an order has no n-grams.
        let logSum = precisions[..<order].reduce(0.0) { $0 + ($1 == 0 ? -9_999_999_999 : Foundation.log($1)) }
        return brevityPenalty * Foundation.exp(logSum / Double(order))
    }
}
