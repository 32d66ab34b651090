import Foundation

/// How text is cut into words before BPE runs on each word: a list of steps applied in order, as in
/// Hugging Face `pre_tokenizer` (Split, Digits, ByteLevel, Sequence) or llama.cpp's `tokenizer.ggml.pre`.
public struct PreTokenizer: Sendable, Equatable {
    /// One pre-tokenization step; each turns every piece into zero or more smaller pieces.
    public enum Step: Sendable, Equatable {
        /// Cut each piece where `pattern` matches, keeping matches and gaps as `behavior` says.
        case split(SplitPattern, SplitBehavior)
        /// Isolate numbers: every numeric scalar alone (`individual`) or whole runs of them.
        case digits(individual: Bool)
        /// Map each piece's UTF-8 bytes to GPT-2's printable byte alphabet, after optionally adding a leading
        /// space and cutting with the GPT-2 regex.
        case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
        /// SentencePiece spelling: spaces become `replacement`, one is put in front as `prepend` says, and with
        /// `split` each `replacement` starts a new word.
        case metaspace(replacement: Unicode.Scalar, prepend: MetaspacePrepend, split: Bool)
    }

    /// When Metaspace puts a `replacement` in front of a piece (Hugging Face `prepend_scheme`).
    public enum MetaspacePrepend: String, Sendable, Equatable {
        case always
        /// Only in front of the text's first piece (not after a leading added token).
        case first
        case never
    }

    /// The patterns with hand-written scanners. Regex patterns are recognised by their exact text.
    public enum SplitPattern: Sendable, Equatable {
        /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
        case gpt2
        /// Llama 3's pattern, numbers in groups of up to three.
        case llama3
        /// Qwen2's pattern: Llama 3's with single-scalar numbers.
        case qwen2
        /// llama.cpp's default BPE splits: runs of punctuation and `$+<=>^~|`.
        case punctuationRuns
        /// Runs of numeric scalars (`\p{N}+`).
        case numberRuns
        /// Groups of exactly three ASCII digits (`[0-9][0-9][0-9]`).
        case threeASCIIDigits
        /// A literal string.
        case literal(String)

        static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
        static let llama3Regex =
            #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        static let qwen2Regex =
            #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

        /// The scanner for a regex as written in a tokenizer.json, or nil when there is none.
        public init?(regex: String) {
            switch regex {
            case Self.gpt2Regex, Self.gpt2Regex.replacingOccurrences(of: "|\\s+(?!\\S)|\\s+", with: "|\\s+(?!\\S)"):
                self = .gpt2
            case Self.llama3Regex: self = .llama3
            case Self.qwen2Regex: self = .qwen2
            default: return nil
            }
        }
    }

    /// What to keep of a split, as Hugging Face's `SplitDelimiterBehavior`.
    public enum SplitBehavior: String, Sendable, Equatable {
        case isolated = "Isolated"
        case removed = "Removed"
        case mergedWithPrevious = "MergedWithPrevious"
        case mergedWithNext = "MergedWithNext"
        case contiguous = "Contiguous"
    }

    public var steps: [Step]
    /// llama.cpp looks a whole word up in the vocabulary before merging for this pre-tokenizer (Llama 3),
    /// as Hugging Face's `ignore_merges`.
    public var ggufIgnoresMerges: Bool

    public init(steps: [Step], ggufIgnoresMerges: Bool = false) {
        self.steps = steps
        self.ggufIgnoresMerges = ggufIgnoresMerges
    }

    /// GPT-2: byte-level with the GPT-2 regex.
    public static let gpt2 = PreTokenizer(steps: [.byteLevel(addPrefixSpace: false, useRegex: true)])
    /// SmolLM / StarCoder: every digit alone, then GPT-2.
    public static let smolLM = PreTokenizer(steps: [.digits(individual: true),
                                                    .byteLevel(addPrefixSpace: false, useRegex: true)])
    /// Llama 3: its Split regex, then byte-level without a regex.
    public static let llama3 = PreTokenizer(steps: [.split(.llama3, .isolated),
                                                    .byteLevel(addPrefixSpace: false, useRegex: false)],
                                            ggufIgnoresMerges: true)
    /// Qwen2: its Split regex, then byte-level without a regex.
    public static let qwen2 = PreTokenizer(steps: [.split(.qwen2, .isolated),
                                                   .byteLevel(addPrefixSpace: false, useRegex: false)])
    /// llama.cpp's fallback for BPE vocabularies that name no pre-tokenizer ("default").
    public static let llamaCppDefault = PreTokenizer(steps: [
        .split(.punctuationRuns, .isolated), .split(.gpt2, .isolated), .split(.numberRuns, .isolated),
        .split(.threeASCIIDigits, .isolated), .byteLevel(addPrefixSpace: false, useRegex: false),
    ])

    private static let ggufNames: [String: PreTokenizer] = [
        "default": .llamaCppDefault,
        "gpt2": .gpt2, "gpt-2": .gpt2, "olmo": .gpt2, "jais": .gpt2, "poro-chat": .gpt2,
        "smollm": .smolLM, "starcoder": .smolLM, "refact": .smolLM, "command-r": .smolLM,
        "codeshell": .smolLM, "exaone": .smolLM, "minerva-7b": .smolLM,
        "llama3": .llama3, "llama-v3": .llama3, "llama-bpe": .llama3, "falcon3": .llama3, "smaug-bpe": .llama3,
        "dbrx": .llama3,
        "qwen2": .qwen2, "deepseek-r1-qwen": .qwen2, "megrez": .qwen2,
    ]
    static var knownGGUFNames: [String] { Array(ggufNames.keys) }

    /// The `tokenizer.ggml.pre` name llama.cpp's converter writes for this pre-tokenizer, or nil when it has none.
    public var ggufName: String? {
        ["smollm", "gpt2", "llama-bpe", "qwen2", "default"].first { Self.ggufNames[$0] == self }
    }

    /// The pre-tokenizer llama.cpp uses for a GGUF `tokenizer.ggml.pre` name.
    public init(ggufName: String) throws {
        guard let known = Self.ggufNames[ggufName] else { throw TokenizerError.unknownPreTokenizer(name: ggufName) }
        self = known
    }

    /// Cuts `text` (one segment between added tokens, already normalized) into BPE words.
    /// `startsText` tells whether `text` begins the whole input (Metaspace's "first" scheme); only the first
    /// piece of such a segment counts as starting the text.
    func split(_ text: [Unicode.Scalar], startsText: Bool = true) -> [[Unicode.Scalar]] {
        var pieces = text.isEmpty ? [] : [text]
        for step in steps {
            var next: [[Unicode.Scalar]] = []
            next.reserveCapacity(pieces.count * 2)
            for (index, piece) in pieces.enumerated() {
                step.apply(to: piece, startsText: startsText && index == 0, into: &next)
            }
            pieces = next
        }
        return pieces
    }
}

extension PreTokenizer.Step {
    func apply(to piece: [Unicode.Scalar], startsText: Bool, into output: inout [[Unicode.Scalar]]) {
        switch self {
        case let .split(pattern, behavior):
            cut(piece, matches: pattern.matches(in: piece), behavior: behavior, into: &output)
        case let .digits(individual):
            var matches: [Range<Int>] = []
            var index = 0
            while index < piece.count {
                guard ScalarClass.of(piece[index]) == .number else { index += 1; continue }
                var end = index + 1
                if !individual { while end < piece.count && ScalarClass.of(piece[end]) == .number { end += 1 } }
                matches.append(index..<end)
                index = end
            }
            cut(piece, matches: matches, behavior: individual ? .isolated : .contiguous, into: &output)
        case let .byteLevel(addPrefixSpace, useRegex):
            var text = piece
            if addPrefixSpace && text.first != " " { text.insert(" ", at: 0) }
            var words: [[Unicode.Scalar]] = []
            if useRegex {
                cut(text, matches: PreTokenizer.SplitPattern.gpt2.matches(in: text), behavior: .isolated, into: &words)
            } else {
                words = [text]
            }
            for word in words { output.append(ByteLevel.encode(word)) }
        case let .metaspace(replacement, prepend, splits):
            var text = piece.map { $0 == " " ? replacement : $0 }
            let prepends = prepend == .always || (prepend == .first && startsText)
            if prepends && text.first != replacement { text.insert(replacement, at: 0) }
            guard splits else { return output.append(text) }
            let matches = text.indices.filter { text[$0] == replacement }.map { $0..<($0 + 1) }
            cut(text, matches: matches, behavior: .mergedWithNext, into: &output)
        }
    }
}

/// Emits the pieces of `piece` that `behavior` keeps, given the (sorted, disjoint, non-empty) matches.
private func cut(_ piece: [Unicode.Scalar], matches: [Range<Int>], behavior: PreTokenizer.SplitBehavior,
                 into output: inout [[Unicode.Scalar]]) {
    // Alternate gaps and matches, as Hugging Face's `split` folds them.
    var segments: [(range: Range<Int>, isMatch: Bool)] = []
    var position = 0
    for match in matches {
        if match.lowerBound > position { segments.append((position..<match.lowerBound, false)) }
        segments.append((match, true))
        position = match.upperBound
    }
    if position < piece.count { segments.append((position..<piece.count, false)) }

    var kept: [Range<Int>] = []
    switch behavior {
    case .isolated:
        kept = segments.map(\.range)
    case .removed:
        kept = segments.filter { !$0.isMatch }.map(\.range)
    case .mergedWithPrevious:
        var previousWasMatch = false
        for segment in segments {
            if segment.isMatch && !previousWasMatch, let last = kept.last {
                kept[kept.count - 1] = last.lowerBound..<segment.range.upperBound
            } else {
                kept.append(segment.range)
            }
            previousWasMatch = segment.isMatch
        }
    case .mergedWithNext:
        var previousWasMatch = false
        var reversed: [Range<Int>] = []
        for segment in segments.reversed() {
            if segment.isMatch && !previousWasMatch, let last = reversed.last {
                reversed[reversed.count - 1] = segment.range.lowerBound..<last.upperBound
            } else {
                reversed.append(segment.range)
            }
            previousWasMatch = segment.isMatch
        }
        kept = reversed.reversed()
    case .contiguous:
        var previousWasMatch = false
        for segment in segments {
            if segment.isMatch && previousWasMatch, let last = kept.last {
                kept[kept.count - 1] = last.lowerBound..<segment.range.upperBound
            } else {
                kept.append(segment.range)
            }
            previousWasMatch = segment.isMatch
        }
    }
    for range in kept where !range.isEmpty { output.append(Array(piece[range])) }
}

/// The character classes the known regexes use: `\p{L}`, `\p{N}`, `\s` and everything else.
enum ScalarClass: UInt8 {
    case letter, number, whitespace, other

    private static let ascii: [ScalarClass] = (0..<128).map { value in
        classify(Unicode.Scalar(UInt8(value)))
    }

    private static func classify(_ scalar: Unicode.Scalar) -> ScalarClass {
        let properties = scalar.properties
        if properties.isWhitespace { return .whitespace }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    @inline(__always)
    static func of(_ scalar: Unicode.Scalar) -> ScalarClass {
        scalar.value < 128 ? ascii[Int(scalar.value)] : classify(scalar)
    }
}

extension PreTokenizer.SplitPattern {
    /// Leftmost, non-overlapping matches of the pattern in `text`, as the regex engine would find them.
    func matches(in text: [Unicode.Scalar]) -> [Range<Int>] {
        switch self {
        case .literal(let literal):
            let needle = Array(literal.unicodeScalars)
            guard !needle.isEmpty, needle.count <= text.count else { return [] }
            var matches: [Range<Int>] = []
            var index = 0
            while index + needle.count <= text.count {
                if text[index..<index + needle.count].elementsEqual(needle) {
                    matches.append(index..<index + needle.count)
                    index += needle.count
                } else {
                    index += 1
                }
            }
            return matches
        case .punctuationRuns:
            return runs(in: text) { scalar in
                "$+<=>^~|".unicodeScalars.contains(scalar) || scalar.properties.generalCategory.isPunctuation
            }
        case .numberRuns:
            return runs(in: text) { ScalarClass.of($0) == .number }
        case .threeASCIIDigits:
            var matches: [Range<Int>] = []
            var index = 0
            while index + 3 <= text.count {
                if (index..<index + 3).allSatisfy({ ("0"..."9").contains(text[$0]) }) {
                    matches.append(index..<index + 3)
                    index += 3
                } else {
                    index += 1
                }
            }
            return matches
        case .gpt2, .llama3, .qwen2:
            let scanner = RegexScanner(text: text)
            var matches: [Range<Int>] = []
            var index = 0
            while index < text.count {
                let end: Int
                switch self {
                case .gpt2: end = scanner.gpt2Match(at: index)
                case .llama3: end = scanner.llama3Match(at: index, maximumDigits: 3)
                default: end = scanner.llama3Match(at: index, maximumDigits: 1)
                }
                matches.append(index..<end)
                index = end
            }
            return matches
        }
    }

    private func runs(in text: [Unicode.Scalar], where belongs: (Unicode.Scalar) -> Bool) -> [Range<Int>] {
        var matches: [Range<Int>] = []
        var index = 0
        while index < text.count {
            guard belongs(text[index]) else { index += 1; continue }
            var end = index + 1
            while end < text.count && belongs(text[end]) { end += 1 }
            matches.append(index..<end)
            index = end
        }
        return matches
    }
}

private extension Unicode.GeneralCategory {
    var isPunctuation: Bool {
        switch self {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }
}

/// Hand-written equivalents of the GPT-2 / Llama 3 / Qwen2 regexes. Each `...Match(at:)` returns the end of
/// the match the regex engine (Oniguruma, ordered alternation, greedy with backtracking) finds at `start`;
/// every position starts a match because the alternatives together accept any scalar.
struct RegexScanner {
    let text: [Unicode.Scalar]
    private var classes: [ScalarClass]

    init(text: [Unicode.Scalar]) {
        self.text = text
        classes = text.map(ScalarClass.of)
    }

    private func isClass(_ index: Int, _ wanted: ScalarClass) -> Bool {
        index < classes.count && classes[index] == wanted
    }

    private func run(from start: Int, of wanted: ScalarClass) -> Int {
        var end = start
        while end < classes.count && classes[end] == wanted { end += 1 }
        return end
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d`, optionally ignoring case (Oniguruma folds `ſ` to `s` as well).
    private func contraction(at start: Int, ignoringCase: Bool) -> Int? {
        guard text[start] == "'", start + 1 < text.count else { return nil }
        func lower(_ scalar: Unicode.Scalar) -> Unicode.Scalar {
            guard ignoringCase else { return scalar }
            if scalar == "\u{17F}" { return "s" }
            if ("A"..."Z").contains(scalar), let folded = Unicode.Scalar(scalar.value + 32) { return folded }
            return scalar
        }
        let first = lower(text[start + 1])
        if first == "s" || first == "t" || first == "m" || first == "d" { return start + 2 }
        guard start + 2 < text.count else { return nil }
        let second = lower(text[start + 2])
        if (first == "r" && second == "e") || (first == "v" && second == "e") || (first == "l" && second == "l") {
            return start + 3
        }
        return nil
    }

    /// `\s+(?!\S)|\s+` at a whitespace scalar: the run, less its last scalar when a non-space follows it.
    private func whitespaceMatch(at start: Int) -> Int {
        let end = run(from: start, of: .whitespace)
        if end == text.count || end - start == 1 { return end }
        return end - 1
    }

    func gpt2Match(at start: Int) -> Int {
        if let end = contraction(at: start, ignoringCase: false) { return end }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+` in that order.
        // The optional space and the class of what follows are exclusive (a space is `\s`), so one test each.
        if text[start] == " " && start + 1 < classes.count && classes[start + 1] != .whitespace {
            return run(from: start + 1, of: classes[start + 1])
        }
        let kind = classes[start]
        if kind != .whitespace { return run(from: start, of: kind) }
        return whitespaceMatch(at: start)
    }

    func llama3Match(at start: Int, maximumDigits: Int) -> Int {
        if let end = contraction(at: start, ignoringCase: true) { return end }
        let scalar = text[start]
        let kind = classes[start]
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if kind != .letter && kind != .number && scalar != "\r" && scalar != "\n" && isClass(start + 1, .letter) {
            return run(from: start + 1, of: .letter)
        }
        if kind == .letter { return run(from: start, of: .letter) }
        // `\p{N}{1,3}` (or `\p{N}`)
        if kind == .number {
            var end = start + 1
            while end < start + maximumDigits && isClass(end, .number) { end += 1 }
            return end
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let symbolStart = (scalar == " " && isClass(start + 1, .other)) ? start + 1 : start
        if classes[symbolStart] == .other {
            var end = run(from: symbolStart, of: .other)
            while end < text.count && (text[end] == "\r" || text[end] == "\n") { end += 1 }
            return end
        }
        // `\s*[\r\n]+`: through the last line break of the whitespace run.
        let runEnd = run(from: start, of: .whitespace)
        var lastBreak = runEnd - 1
        while lastBreak >= start && text[lastBreak] != "\r" && text[lastBreak] != "\n" { lastBreak -= 1 }
        if lastBreak >= start { return lastBreak + 1 }
        return whitespaceMatch(at: start)
    }
}
