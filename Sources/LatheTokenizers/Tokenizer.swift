import Foundation

/// A token matched whole in raw text before pre-tokenization (Hugging Face `added_tokens`, GGUF control and
/// user-defined tokens).
public struct AddedToken: Sendable, Hashable {
    public var content: String
    public var id: Int
    /// Special tokens are dropped by `decode(_:skipSpecialTokens: true)`.
    public var isSpecial: Bool
    /// Whitespace to the left of a match is swallowed into the token (`lstrip`).
    public var stripsLeft: Bool
    /// Whitespace to the right of a match is swallowed into the token (`rstrip`).
    public var stripsRight: Bool
    /// Only matches when not inside a word (`single_word`).
    public var isSingleWord: Bool
    /// Matched in normalized rather than raw text (`normalized`).
    public var isNormalized: Bool

    public init(content: String, id: Int, isSpecial: Bool, stripsLeft: Bool = false, stripsRight: Bool = false,
                isSingleWord: Bool = false, isNormalized: Bool = false) {
        self.content = content
        self.id = id
        self.isSpecial = isSpecial
        self.stripsLeft = stripsLeft
        self.stripsRight = stripsRight
        self.isSingleWord = isSingleWord
        self.isNormalized = isNormalized
    }
}

/// A token's text compared scalar by scalar. Swift's `String` equality is canonical equivalence, under which
/// "য়" (U+09DF) and "য" + U+09BC, two different SentencePiece tokens, would be one dictionary key.
struct ExactText: Hashable {
    let scalars: [Unicode.Scalar]

    init(_ text: String) { scalars = Array(text.unicodeScalars) }
    init(_ scalars: [Unicode.Scalar]) { self.scalars = scalars }
}

/// Byte-level (GPT-2 style) or SentencePiece-style BPE, as Hugging Face `tokenizers` and llama.cpp run it:
/// added tokens first, then normalizer, pre-tokenizer, ranked merges per word, and a decoder chain.
public struct Tokenizer: Sendable {
    /// One normalizer step (Hugging Face `normalizer`).
    enum NormalizerStep: Sendable {
        case prepend(String)
        case replace(String, String)
        case nfc, nfd, nfkc, nfkd
    }

    /// One decoder step (Hugging Face `decoder`), run over the list of token strings.
    enum DecoderStep: Sendable {
        case byteLevel
        case replace(String, String)
        case byteFallback
        case fuse
        case strip(Character, start: Int, stop: Int)
        case metaspace(replacement: String, dropsFromFirstToken: Bool)
    }

    /// Every token's text as `decode` spells it; a token's id is its index.
    public let vocabulary: [String]
    /// The vocabulary's own spelling of the few tokens `decode` spells otherwise (normalized added tokens).
    private let modelSpellings: [Int: String]
    private let idForToken: [ExactText: Int]
    /// Single-scalar tokens by scalar value: the starting symbols of every word.
    private let idForScalar: [UInt32: Int32]
    /// How a pre-tokenized word becomes ids.
    let model: Model
    public let addedTokens: [AddedToken]
    private let rawMatcher: AddedTokenMatcher
    /// The raw-text matcher without special tokens, for text whose special tokens must stay plain text.
    private let rawMatcherWithoutSpecial: AddedTokenMatcher
    private let normalizedMatcher: AddedTokenMatcher
    public let specialTokenIDs: Set<Int>
    public let preTokenizer: PreTokenizer
    let normalizer: [NormalizerStep]
    let decoder: [DecoderStep]?
    /// `<0x00>`…`<0xFF>` ids when the model declares `byte_fallback`.
    let byteFallbackIDs: [Int]?
    public let unknownTokenID: Int?
    let fusesUnknown: Bool
    /// Ids put before and after the text when `addSpecialTokens` is true (BOS, EOS...).
    public let prefixIDs: [Int]
    public let suffixIDs: [Int]
    public let bosTokenID: Int?
    public let eosTokenID: Int?

    public var vocabularySize: Int { vocabulary.count }

    /// A word model as the files describe it, before its tokens are resolved to ids.
    enum ModelDescription {
        /// Merges in rank order as token texts; `source` names where they came from, for errors.
        case bpe(merges: [(String, String)], source: String, ignoresMerges: Bool)
        /// One score (log probability) per token of the model's vocabulary, which added tokens may follow.
        case unigram(scores: [Double])
    }

    init(vocabulary: [String], model description: ModelDescription,
         addedTokens: [AddedToken], preTokenizer: PreTokenizer, normalizer: [NormalizerStep],
         decoder: [DecoderStep]?, byteFallback: Bool, unknownTokenID: Int?, fusesUnknown: Bool,
         prefixIDs: [Int], suffixIDs: [Int], bosTokenID: Int?, eosTokenID: Int?,
         source: String, decodedTextOverrides: [Int: String] = [:]) throws {
        var decodedVocabulary = vocabulary
        for (id, text) in decodedTextOverrides where decodedVocabulary.indices.contains(id) {
            decodedVocabulary[id] = text
        }
        self.vocabulary = decodedVocabulary
        modelSpellings = decodedTextOverrides.filter { vocabulary.indices.contains($0.key) }
            .reduce(into: [:]) { spellings, entry in spellings[entry.key] = vocabulary[entry.key] }
        var idForToken: [ExactText: Int] = [:]
        idForToken.reserveCapacity(vocabulary.count)
        var idForScalar: [UInt32: Int32] = [:]
        for (id, token) in vocabulary.enumerated() {
            idForToken[ExactText(token)] = id
            let scalars = token.unicodeScalars
            if scalars.count == 1, let scalar = scalars.first { idForScalar[scalar.value] = Int32(id) }
        }
        let wordModel: Model
        switch description {
        case let .bpe(mergeLines, mergesSource, ignoresMerges):
            wordModel = .bpe(try BPEMerges(mergeLines, source: mergesSource, idForToken: idForToken,
                                           ignoresMerges: ignoresMerges))
        case .unigram(let scores):
            guard scores.count <= vocabulary.count else {
                throw TokenizerError.lengthMismatch(field: "\(source): scores", expected: vocabulary.count,
                                                    actual: scores.count)
            }
            wordModel = .unigram(UnigramModel(pieces: Array(vocabulary.prefix(scores.count)), scores: scores))
        }
        for token in addedTokens where token.id < 0 || token.id >= vocabulary.count {
            throw TokenizerError.invalidTokenID(field: "\(source): added token \(token.content.debugDescription)",
                                                id: token.id, vocabularySize: vocabulary.count)
        }
        for (field, id) in [("bos", bosTokenID), ("eos", eosTokenID), ("unk", unknownTokenID)] {
            if let id, id < 0 || id >= vocabulary.count {
                throw TokenizerError.invalidTokenID(field: "\(source): \(field) token", id: id,
                                                    vocabularySize: vocabulary.count)
            }
        }
        if byteFallback {
            var ids: [Int] = []
            for byte in 0..<256 {
                let name = String(format: "<0x%02X>", byte)
                guard let id = idForToken[ExactText(name)] else {
                    throw TokenizerError.unknownToken(field: "\(source): byte_fallback", token: name)
                }
                ids.append(id)
            }
            byteFallbackIDs = ids
        } else {
            byteFallbackIDs = nil
        }
        self.idForToken = idForToken
        self.idForScalar = idForScalar
        model = wordModel
        self.addedTokens = addedTokens
        rawMatcher = AddedTokenMatcher(tokens: addedTokens.filter { !$0.isNormalized }, normalizer: [])
        rawMatcherWithoutSpecial = AddedTokenMatcher(tokens: addedTokens.filter { !$0.isNormalized && !$0.isSpecial },
                                                     normalizer: [])
        normalizedMatcher = AddedTokenMatcher(tokens: addedTokens.filter(\.isNormalized), normalizer: normalizer)
        specialTokenIDs = Set(addedTokens.filter(\.isSpecial).map(\.id))
        self.preTokenizer = preTokenizer
        self.normalizer = normalizer
        self.decoder = decoder
        self.unknownTokenID = unknownTokenID
        self.fusesUnknown = fusesUnknown
        self.prefixIDs = prefixIDs
        self.suffixIDs = suffixIDs
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
    }

    /// The text of a token as the vocabulary spells it, or nil for an id outside the vocabulary.
    public func tokenText(_ id: Int) -> String? {
        vocabulary.indices.contains(id) ? vocabulary[id] : nil
    }

    /// A token as the model's vocabulary (and tokenizer.json's `model.vocab`) spells it.
    func modelSpelling(_ id: Int) -> String { modelSpellings[id] ?? vocabulary[id] }

    /// The id of a token spelled as in the vocabulary.
    public func id(of token: String) -> Int? { idForToken[ExactText(token)] }

    // MARK: Encoding

    /// Token ids for `text`. `addSpecialTokens` adds the post-processor's BOS/EOS around it.
    /// `parseSpecialTokens` recognises special tokens written in the text (as Hugging Face does by default);
    /// false spells them as plain text (llama.cpp `parse_special = false`, HF `split_special_tokens`), which
    /// suits untrusted user text. Non-special added tokens are always recognised.
    public func encode(_ text: String, addSpecialTokens: Bool = true, parseSpecialTokens: Bool = true) -> [Int] {
        var ids = addSpecialTokens ? prefixIDs : []
        var cache: [[Unicode.Scalar]: [Int]] = [:]
        let scalars = Array(text.unicodeScalars)
        let matcher = parseSpecialTokens ? rawMatcher : rawMatcherWithoutSpecial
        for segment in matcher.split(scalars) {
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(let range):
                let normalized = normalize(Array(scalars[range]))
                for inner in normalizedMatcher.split(normalized) {
                    switch inner {
                    case .token(let id):
                        ids.append(id)
                    case .text(let innerRange):
                        let startsText = range.lowerBound == 0 && innerRange.lowerBound == 0
                        for word in preTokenizer.split(Array(normalized[innerRange]), startsText: startsText) {
                            if let cached = cache[word] {
                                ids.append(contentsOf: cached)
                            } else {
                                let wordIDs = encodeWord(word)
                                cache[word] = wordIDs
                                ids.append(contentsOf: wordIDs)
                            }
                        }
                    }
                }
            }
        }
        if addSpecialTokens { ids.append(contentsOf: suffixIDs) }
        return ids
    }

    func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard !normalizer.isEmpty, !text.isEmpty else { return text }
        var string = String(String.UnicodeScalarView(text))
        for step in normalizer { string = step.apply(string) }
        return Array(string.unicodeScalars)
    }

    /// The ids of one pre-tokenized word: merges (BPE) or the best-scoring split (Unigram); characters the
    /// vocabulary lacks become their UTF-8 bytes (`byte_fallback`) or the unknown token.
    func encodeWord(_ word: [Unicode.Scalar]) -> [Int] {
        switch model {
        case .bpe(let merges):
            if merges.ignoresMerges, let id = idForToken[ExactText(word)] { return [id] }
            var symbols: [Int32] = []
            symbols.reserveCapacity(word.count)
            var lastWasUnknown = false
            for scalar in word {
                if let id = idForScalar[scalar.value] {
                    symbols.append(id)
                    lastWasUnknown = false
                } else if let byteFallbackIDs {
                    for byte in String(scalar).utf8 { symbols.append(Int32(byteFallbackIDs[Int(byte)])) }
                    lastWasUnknown = false
                } else if let unknownTokenID {
                    if !(fusesUnknown && lastWasUnknown) { symbols.append(Int32(unknownTokenID)) }
                    lastWasUnknown = true
                }
                // With neither byte fallback nor an unknown token, Hugging Face drops the scalar.
            }
            merges.apply(&symbols)
            return symbols.map(Int.init)
        case .unigram(let unigram):
            var ids: [Int] = []
            // Hugging Face always fuses a run of unknown characters, then spells it in bytes when it can.
            for piece in unigram.segment(word, unknownTokenID: unknownTokenID) {
                if let id = piece.id ?? idForToken[ExactText(Array(word[piece.range]))] {
                    ids.append(id)
                } else if let byteFallbackIDs {
                    for byte in String(String.UnicodeScalarView(word[piece.range])).utf8 {
                        ids.append(byteFallbackIDs[Int(byte)])
                    }
                } else if let unknownTokenID {
                    ids.append(unknownTokenID)
                }
            }
            return ids
        }
    }

    // MARK: Decoding

    /// The text for `ids`, as Hugging Face's `decode`: invalid UTF-8 becomes U+FFFD; ids outside the
    /// vocabulary are skipped.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids where vocabulary.indices.contains(id) {
            if skipSpecialTokens && specialTokenIDs.contains(id) { continue }
            tokens.append(vocabulary[id])
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        for step in decoder { tokens = step.apply(tokens) }
        return tokens.joined()
    }
}

extension Tokenizer.NormalizerStep {
    func apply(_ text: String) -> String {
        switch self {
        case .prepend(let prefix): return text.isEmpty ? text : prefix + text
        case let .replace(pattern, content): return text.replacingOccurrences(of: pattern, with: content)
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        }
    }
}

extension Tokenizer.DecoderStep {
    func apply(_ tokens: [String]) -> [String] {
        switch self {
        case .byteLevel:
            var bytes: [UInt8] = []
            for token in tokens { bytes.append(contentsOf: ByteLevel.decode(token) ?? Array(token.utf8)) }
            return [String(decoding: bytes, as: UTF8.self)]
        case let .replace(pattern, content):
            return tokens.map { $0.replacingOccurrences(of: pattern, with: content) }
        case .byteFallback:
            // Runs of <0xXX> tokens become their UTF-8 text, or one U+FFFD per byte when invalid.
            var output: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                let text = String(decoding: pending, as: UTF8.self)
                if Array(text.utf8) == pending {
                    output.append(text)
                } else {
                    output.append(contentsOf: repeatElement("\u{FFFD}", count: pending.count))
                }
                pending.removeAll()
            }
            for token in tokens {
                if let byte = Self.fallbackByte(token) {
                    pending.append(byte)
                } else {
                    flush()
                    output.append(token)
                }
            }
            flush()
            return output
        case .fuse:
            return [tokens.joined()]
        case let .strip(character, start, stop):
            return tokens.map { token in
                var scalars = Substring(token)
                var removed = 0
                while removed < start, scalars.first == character { scalars = scalars.dropFirst(); removed += 1 }
                removed = 0
                while removed < stop, scalars.last == character { scalars = scalars.dropLast(); removed += 1 }
                return String(scalars)
            }
        case let .metaspace(replacement, dropsFromFirstToken):
            // As Hugging Face: the first token loses every replacement character, the others turn them into spaces.
            return tokens.enumerated().map { index, token in
                token.replacingOccurrences(of: replacement, with: index == 0 && dropsFromFirstToken ? "" : " ")
            }
        }
    }

    /// The byte of a `<0xAB>` token.
    static func fallbackByte(_ token: String) -> UInt8? {
        let utf8 = Array(token.utf8)
        guard utf8.count == 6, token.hasPrefix("<0x"), token.hasSuffix(">") else { return nil }
        return UInt8(String(decoding: utf8[3..<5], as: UTF8.self), radix: 16)
    }
}

/// A binary min-heap: `pop` returns the smallest element (the tokenizer's merges and the trainer's candidates).
struct BinaryHeap<Element: Comparable> {
    private var elements: [Element] = []

    mutating func push(_ element: Element) {
        elements.append(element)
        var child = elements.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard elements[child] < elements[parent] else { break }
            elements.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Element? {
        guard let top = elements.first else { return nil }
        let last = elements.removeLast()
        if !elements.isEmpty {
            elements[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                guard left < elements.count else { break }
                let right = left + 1
                let smaller = right < elements.count && elements[right] < elements[left] ? right : left
                guard elements[smaller] < elements[parent] else { break }
                elements.swapAt(smaller, parent)
                parent = smaller
            }
        }
        return top
    }
}
