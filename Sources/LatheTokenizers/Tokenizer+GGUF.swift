import Foundation

/// A GGUF file's `tokenizer.ggml.*` metadata, as llama.cpp's converter writes it (read from the file by
/// LatheModels' `GGUFFile.tokenizerMetadata()`).
public struct GGUFTokenizerMetadata: Sendable {
    /// The file, for error messages.
    public var source: String
    /// `general.architecture`: Gemma files need their own reading (see `Tokenizer.init(gguf:)`).
    public var architecture: String
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece).
    public var model: String
    public var tokens: [String]
    public var scores: [Float]?
    public var tokenTypes: [Int32]?
    public var merges: [String]?
    /// `tokenizer.ggml.pre`, for "gpt2" vocabularies.
    public var preTokenizer: String?
    public var bosTokenID: Int?
    public var eosTokenID: Int?
    public var unknownTokenID: Int?
    public var addBOS: Bool?
    public var addEOS: Bool?
    /// `tokenizer.ggml.add_space_prefix`: SentencePiece's dummy "▁" in front of the text.
    public var addSpacePrefix: Bool?

    public init(source: String, architecture: String, model: String, tokens: [String], scores: [Float]? = nil,
                tokenTypes: [Int32]? = nil, merges: [String]? = nil, preTokenizer: String? = nil,
                bosTokenID: Int? = nil, eosTokenID: Int? = nil, unknownTokenID: Int? = nil, addBOS: Bool? = nil,
                addEOS: Bool? = nil, addSpacePrefix: Bool? = nil) {
        self.source = source; self.architecture = architecture; self.model = model; self.tokens = tokens
        self.scores = scores; self.tokenTypes = tokenTypes; self.merges = merges; self.preTokenizer = preTokenizer
        self.bosTokenID = bosTokenID; self.eosTokenID = eosTokenID; self.unknownTokenID = unknownTokenID
        self.addBOS = addBOS; self.addEOS = addEOS; self.addSpacePrefix = addSpacePrefix
    }
}

/// llama.cpp's `tokenizer.ggml.token_type` values.
public enum GGUFTokenType: Int32, Sendable {
    case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

extension Tokenizer {
    /// The tokenizer a GGUF file describes, as transformers' GGUF loader (`AutoTokenizer.from_pretrained(...,
    /// gguf_file:)`) builds it: "gpt2" as byte-level BPE, "llama" as SentencePiece-style BPE with byte fallback.
    public init(gguf metadata: GGUFTokenizerMetadata) throws {
        switch metadata.model {
        case "gpt2":
            guard let merges = metadata.merges else {
                throw TokenizerError.missingField(file: metadata.source, field: "tokenizer.ggml.merges")
            }
            try self.init(vocabulary: metadata.tokens, merges: merges, tokenTypes: metadata.tokenTypes,
                          preTokenizer: try PreTokenizer(ggufName: metadata.preTokenizer ?? "default"),
                          bosTokenID: metadata.bosTokenID, eosTokenID: metadata.eosTokenID,
                          addBOS: metadata.addBOS ?? false, addEOS: metadata.addEOS ?? false,
                          unknownTokenID: metadata.unknownTokenID)
        case "llama":
            try self.init(sentencePieceGGUF: metadata)
        default:
            throw TokenizerError.unsupported(file: metadata.source, field: "tokenizer.ggml.model",
                                             value: "\(metadata.model) (supported: gpt2, llama)")
        }
    }

    /// SentencePiece (`tokenizer.ggml.model` = "llama") as transformers rebuilds it: a BPE over the vocabulary
    /// whose merges are every split of a token into two tokens, best first; byte fallback; control tokens
    /// special and user-defined tokens matched whole. Llama-style files spell spaces "▁" and put one in front
    /// as `add_space_prefix` says (Metaspace); Gemma files store runs of spaces with real spaces, which are
    /// respelled "▁…", and rank merges by token position rather than score (transformers' `gemma_tokenizer`).
    private init(sentencePieceGGUF metadata: GGUFTokenizerMetadata) throws {
        let source = "\(metadata.source): tokenizer.ggml"
        let count = metadata.tokens.count
        let types = metadata.tokenTypes ?? []
        guard types.isEmpty || types.count == count else {
            throw TokenizerError.lengthMismatch(field: "\(source).token_type", expected: count, actual: types.count)
        }
        if let scores = metadata.scores, scores.count != count {
            throw TokenizerError.lengthMismatch(field: "\(source).scores", expected: count, actual: scores.count)
        }
        let isGemma = ["gemma", "gemma2", "gemma3"].contains(metadata.architecture)
        let addSpacePrefix = metadata.addSpacePrefix ?? true
        var vocabulary = metadata.tokens
        if isGemma {
            for (id, token) in vocabulary.enumerated()
            where token.unicodeScalars.contains(" ") && token.unicodeScalars.allSatisfy(Self.isPythonWhitespace) {
                vocabulary[id] = String(repeating: "\u{2581}", count: token.unicodeScalars.count)
            }
        }
        let mergePairs: [(String, String)]
        if let merges = metadata.merges {
            mergePairs = try Self.ggufMergePairs(merges, source: "\(source).merges")
        } else if isGemma {
            mergePairs = Self.sentencePieceMerges(vocabulary) { id in -Double(id) }
        } else {
            guard let scores = metadata.scores else {
                throw TokenizerError.missingField(file: metadata.source, field: "tokenizer.ggml.scores")
            }
            mergePairs = Self.sentencePieceMerges(vocabulary) { id in Double(scores[id]) }
        }
        let idForToken = Dictionary(vocabulary.enumerated().map { (ExactText($1), $0) },
                                    uniquingKeysWith: { _, last in last })
        var added: [AddedToken] = []
        for (id, type) in types.enumerated() {
            switch GGUFTokenType(rawValue: type) {
            case .control?:
                added.append(AddedToken(content: metadata.tokens[id], id: id, isSpecial: true))
            // As transformers: only user-defined tokens the (respelled) vocabulary still spells the same way.
            case .userDefined?:
                if let vocabularyID = idForToken[ExactText(metadata.tokens[id])] {
                    added.append(AddedToken(content: metadata.tokens[id], id: vocabularyID, isSpecial: false))
                }
            default:
                break
            }
        }
        let normalizer: [NormalizerStep]
        let preTokenizer: PreTokenizer
        var decoder: [DecoderStep] = [.replace("\u{2581}", " "), .byteFallback, .fuse]
        if isGemma {
            normalizer = [.replace(" ", "\u{2581}")]
            preTokenizer = PreTokenizer(steps: [.split(.literal(" "), .mergedWithPrevious)])
        } else if metadata.architecture == "phi3" {
            normalizer = [.prepend("\u{2581}"), .replace(" ", "\u{2581}")]
            preTokenizer = PreTokenizer(steps: [])
        } else {
            normalizer = []
            preTokenizer = PreTokenizer(steps: [.metaspace(replacement: "\u{2581}",
                                                           prepend: addSpacePrefix ? .first : .never, split: false)])
        }
        if addSpacePrefix && !isGemma { decoder.append(.strip(" ", start: 1, stop: 0)) }
        var prefix: [Int] = []
        var suffix: [Int] = []
        // transformers (like llama.cpp) adds BOS to a SentencePiece vocabulary that does not say otherwise.
        if metadata.addBOS ?? true, let bos = metadata.bosTokenID { prefix.append(bos) }
        if metadata.addEOS ?? false, let eos = metadata.eosTokenID { suffix.append(eos) }
        let mergesSource = metadata.merges == nil ? "\(source).tokens (derived merges)" : "\(source).merges"
        try self.init(vocabulary: vocabulary,
                      model: .bpe(merges: mergePairs, source: mergesSource, ignoresMerges: false),
                      addedTokens: added, preTokenizer: preTokenizer, normalizer: normalizer, decoder: decoder,
                      byteFallback: true, unknownTokenID: metadata.unknownTokenID, fusesUnknown: true,
                      prefixIDs: prefix, suffixIDs: suffix, bosTokenID: metadata.bosTokenID,
                      eosTokenID: metadata.eosTokenID, source: source)
    }

    /// The `tokenizer.ggml.*` metadata that describes this tokenizer, the inverse of `init(gguf:)`: "gpt2" for
    /// byte-level BPE (needs a pre-tokenizer llama.cpp names), "llama" for SentencePiece BPE with scores that rank
    /// merged tokens as the merges do (llama.cpp's SentencePiece merges by score; transformers reads the merges).
    /// Unigram is not written yet (llama.cpp's "t5" vocabulary).
    public func ggufMetadata(architecture: String) throws -> GGUFTokenizerMetadata {
        var types = [Int32](repeating: GGUFTokenType.normal.rawValue, count: vocabularySize)
        for token in addedTokens {
            types[token.id] = (token.isSpecial ? GGUFTokenType.control : .userDefined).rawValue
        }
        let merges = rankedMerges.map { $0.left + " " + $0.right }
        var metadata = GGUFTokenizerMetadata(
            source: "GGUF export", architecture: architecture, model: "gpt2", tokens: vocabulary, tokenTypes: types,
            merges: merges, bosTokenID: bosTokenID, eosTokenID: eosTokenID, unknownTokenID: unknownTokenID,
            addBOS: bosTokenID.map(prefixIDs.contains) ?? false, addEOS: eosTokenID.map(suffixIDs.contains) ?? false)
        switch kind {
        case .byteLevelBPE:
            guard let name = preTokenizer.ggufName else {
                throw TokenizerError.unsupported(file: "GGUF", field: "tokenizer.ggml.pre",
                                                 value: "this pre-tokenizer (llama.cpp has no name for it)")
            }
            metadata.preTokenizer = name
        case .sentencePieceBPE:
            guard case .bpe(let bpe) = model else { break }
            metadata.model = "llama"
            for (byte, id) in (byteFallbackIDs ?? []).enumerated() where byte < 256 {
                types[id] = GGUFTokenType.byte.rawValue
            }
            // An unknown token that is also an added token stays control, which transformers matches in text.
            if let unknownTokenID, types[unknownTokenID] == GGUFTokenType.normal.rawValue {
                types[unknownTokenID] = GGUFTokenType.unknown.rawValue
            }
            metadata.tokenTypes = types
            // A merged token scores minus the rank of its best merge; a longer token no merge makes, lower still.
            var scores = [Float](repeating: 0, count: vocabularySize)
            for (id, token) in vocabulary.enumerated() where token.unicodeScalars.count > 1 {
                scores[id] = -Float(merges.count + 1)
            }
            for (rank, merge) in bpe.table.values.map({ ($0.rank, Int($0.result)) }).sorted(by: { $0 > $1 }) {
                scores[merge] = -Float(rank + 1)
            }
            metadata.scores = scores
            metadata.addSpacePrefix = normalizer.contains { if case .prepend = $0 { return true } else { return false } }
                || preTokenizer.steps.contains { step in
                    if case let .metaspace(_, prepend, _) = step { return prepend != .never } else { return false }
                }
        case .unigram:
            throw TokenizerError.unsupported(file: "GGUF", field: "tokenizer.ggml.model",
                                             value: "a Unigram tokenizer (llama.cpp's t5 vocabulary is not written yet)")
        }
        return metadata
    }

    /// `tokenizer.ggml.merges` lines as pairs. As llama.cpp: the first space after the first scalar separates the
    /// two tokens (scalars, not characters: a space followed by a combining mark is one Swift character).
    static func ggufMergePairs(_ lines: [String], source: String) throws -> [(String, String)] {
        try lines.enumerated().map { index, line in
            let scalars = line.unicodeScalars
            guard let space = scalars.dropFirst().firstIndex(of: " "), scalars.index(after: space) < scalars.endIndex else {
                throw TokenizerError.malformedMerge(source: source, index: index, merge: line)
            }
            return (String(scalars[..<space]), String(scalars[scalars.index(after: space)...]))
        }
    }

    /// What Python's `str.isspace` accepts (transformers tests Gemma tokens with `not token.strip()`).
    private static func isPythonWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value)
    }

    /// The merges a SentencePiece vocabulary implies, as transformers' `generate_merges`: every split of a token
    /// into two vocabulary tokens, ordered by the token's `score` (best first), then longer left part, then
    /// longer right part, then token order and the parts' ids.
    static func sentencePieceMerges(_ vocabulary: [String], score: (Int) -> Double) -> [(String, String)] {
        var idForToken: [ExactText: Int] = [:]
        idForToken.reserveCapacity(vocabulary.count)
        var firstSeen: [Int] = []
        for (id, token) in vocabulary.enumerated() {
            let key = ExactText(token)
            if idForToken[key] == nil { firstSeen.append(id) }
            idForToken[key] = id
        }
        struct Candidate {
            var left: String, right: String
            var score: Double
            var leftLength: Int, rightLength: Int
            var order: Int
        }
        var candidates: [Candidate] = []
        for first in firstSeen {
            let token = vocabulary[first]
            let scalars = Array(token.unicodeScalars)
            guard scalars.count >= 2, let id = idForToken[ExactText(scalars)] else { continue }
            var local: [(left: String, right: String, leftID: Int, rightID: Int, split: Int)] = []
            for split in 1..<scalars.count {
                guard let leftID = idForToken[ExactText(Array(scalars[..<split]))],
                      let rightID = idForToken[ExactText(Array(scalars[split...]))] else { continue }
                local.append((vocabulary[leftID], vocabulary[rightID], leftID, rightID, split))
            }
            local.sort { ($0.leftID, $0.rightID) < ($1.leftID, $1.rightID) }
            for pair in local {
                candidates.append(Candidate(left: pair.left, right: pair.right, score: score(id),
                                            leftLength: pair.split, rightLength: scalars.count - pair.split,
                                            order: candidates.count))
            }
        }
        candidates.sort { a, b in
            if a.score != b.score { return a.score > b.score }
            if a.leftLength != b.leftLength { return a.leftLength > b.leftLength }
            if a.rightLength != b.rightLength { return a.rightLength > b.rightLength }
            return a.order < b.order
        }
        return candidates.map { ($0.left, $0.right) }
    }

    /// Builds the tokenizer a GGUF file describes with its `tokenizer.ggml.*` metadata (`model` = "gpt2").
    ///
    /// - Parameters:
    ///   - vocabulary: `tokenizer.ggml.tokens`; the id of a token is its index.
    ///   - merges: `tokenizer.ggml.merges`, each "left right".
    ///   - tokenTypes: `tokenizer.ggml.token_type`; 3 (control) tokens are special, 3 and 4 (user-defined)
    ///     are matched whole in raw text.
    ///   - preTokenizer: `PreTokenizer(ggufName:)` of `tokenizer.ggml.pre`.
    ///   - addBOS, addEOS: `tokenizer.ggml.add_bos_token` / `add_eos_token`.
    public init(vocabulary: [String], merges: [String], tokenTypes: [Int32]?, preTokenizer: PreTokenizer,
                bosTokenID: Int?, eosTokenID: Int?, addBOS: Bool, addEOS: Bool = false,
                unknownTokenID: Int? = nil) throws {
        let pairs = try Self.ggufMergePairs(merges, source: "tokenizer.ggml.merges")
        var added: [AddedToken] = []
        if let tokenTypes {
            guard tokenTypes.count == vocabulary.count else {
                throw TokenizerError.lengthMismatch(field: "tokenizer.ggml.token_type", expected: vocabulary.count,
                                                    actual: tokenTypes.count)
            }
            for (id, type) in tokenTypes.enumerated() where type == 3 || type == 4 {
                added.append(AddedToken(content: vocabulary[id], id: id, isSpecial: type == 3))
            }
        }
        var prefix: [Int] = []
        var suffix: [Int] = []
        if addBOS, let bosTokenID { prefix.append(bosTokenID) }
        if addEOS, let eosTokenID { suffix.append(eosTokenID) }
        try self.init(vocabulary: vocabulary,
                      model: .bpe(merges: pairs, source: "tokenizer.ggml.merges",
                                  ignoresMerges: preTokenizer.ggufIgnoresMerges),
                      addedTokens: added, preTokenizer: preTokenizer, normalizer: [], decoder: [.byteLevel],
                      byteFallback: false, unknownTokenID: unknownTokenID, fusesUnknown: false, prefixIDs: prefix,
                      suffixIDs: suffix, bosTokenID: bosTokenID, eosTokenID: eosTokenID, source: "GGUF tokenizer.ggml")
    }

}
