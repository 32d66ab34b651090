// The reference metrics (SQuAD's script, sacrebleu, rouge-score) are Python programs: their tokens are
// Python strings, split on Python's whitespace and compared code point by code point. These helpers give the
// same answers in Swift, where `String ==` would instead compare by canonical equivalence.

/// Text as Python sees it: a sequence of Unicode code points.
typealias CodePoints = [Unicode.Scalar]

enum PythonText {
    /// `str.isspace()`: the characters `str.split()` and `str.strip()` treat as whitespace.
    static func isWhitespace(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    /// `str.split()` with no separator: runs of non-whitespace.
    static func split(_ text: CodePoints) -> [CodePoints] {
        var words: [CodePoints] = []
        var current: CodePoints = []
        for c in text {
            if isWhitespace(c) {
                if !current.isEmpty { words.append(current); current = [] }
            } else {
                current.append(c)
            }
        }
        if !current.isEmpty { words.append(current) }
        return words
    }

    /// `str.lower()`: each code point's full lowercase mapping, with Python's one contextual rule: a capital
    /// sigma that ends a word (a cased letter before it, none after it, case-ignorable marks skipped) becomes ς.
    static func lower(_ text: CodePoints) -> CodePoints {
        var out: CodePoints = []
        out.reserveCapacity(text.count)
        for (i, c) in text.enumerated() {
            if c.value == 0x03A3, isFinalSigma(text, at: i) {
                out.append("\u{03C2}")
            } else {
                out += c.properties.lowercaseMapping.unicodeScalars
            }
        }
        return out
    }

    /// CPython's `handle_capital_sigma`.
    private static func isFinalSigma(_ text: CodePoints, at i: Int) -> Bool {
        var j = i - 1
        while j >= 0, text[j].properties.isCaseIgnorable { j -= 1 }
        guard j >= 0, text[j].properties.isCased else { return false }
        j = i + 1
        while j < text.count, text[j].properties.isCaseIgnorable { j += 1 }
        return j == text.count || !text[j].properties.isCased
    }

    /// Membership in `\w` of Python's `re` on str: letters, numbers and the underscore.
    static func isWordCharacter(_ c: Unicode.Scalar) -> Bool {
        if c == "_" { return true }
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
             .decimalNumber, .letterNumber, .otherNumber:
            return true
        default:
            return false
        }
    }

    /// `str.replace`: non-overlapping matches, left to right, code point by code point (Swift's own replacement
    /// would also match canonically equivalent text).
    static func replace(_ s: CodePoints, _ target: String, _ replacement: String) -> CodePoints {
        let t = Array(target.unicodeScalars), r = Array(replacement.unicodeScalars)
        var out: CodePoints = []
        var i = 0
        while i < s.count {
            if i + t.count <= s.count, Array(s[i..<i + t.count]) == t {
                out += r
                i += t.count
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }

    static func string(_ text: CodePoints) -> String { String(String.UnicodeScalarView(text)) }
}

/// A token as a hashable key that compares code point by code point (as Python does).
struct TokenKey: Hashable {
    let codePoints: [UInt32]
    init(_ token: CodePoints) { codePoints = token.map(\.value) }
}

/// An n-gram of tokens, compared code point by code point.
struct NGramKey: Hashable {
    let tokens: [TokenKey]
}

/// Counts of every n-gram of order `n` in `tokens`.
func nGramCounts(_ tokens: [TokenKey], order n: Int) -> [NGramKey: Int] {
    var counts: [NGramKey: Int] = [:]
    guard n >= 1, tokens.count >= n else { return counts }
    for start in 0...(tokens.count - n) { counts[NGramKey(tokens: Array(tokens[start..<start + n])), default: 0] += 1 }
    return counts
}
