import Foundation

/// The `tokenizer_config.json` fields written beside a trained tokenizer.
public struct TokenizerConfigOptions: Sendable, Equatable {
    /// Each must be one of the special tokens; nil leaves the field out.
    public var bosToken: String?
    public var eosToken: String?
    public var unknownToken: String?
    public var modelMaxLength: Int
    /// A Jinja chat template (e.g. `TokenizerConfigOptions.chatMLTemplate`), or nil for none.
    public var chatTemplate: String?

    public init(bosToken: String? = nil, eosToken: String? = nil, unknownToken: String? = nil,
                modelMaxLength: Int = 2048, chatTemplate: String? = nil) {
        self.bosToken = bosToken
        self.eosToken = eosToken
        self.unknownToken = unknownToken
        self.modelMaxLength = modelMaxLength
        self.chatTemplate = chatTemplate
    }

    /// ChatML without a default system prompt: `<|im_start|>role\ncontent<|im_end|>\n` per message.
    public static let chatMLTemplate = #"{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"#
    /// The special tokens the ChatML template writes.
    public static let chatMLTokens = ["<|im_start|>", "<|im_end|>"]
}

extension TrainedBPE {
    /// The trained vocabulary as a tokenizer: special tokens matched whole, the byte-level decoder.
    func builtTokenizer() throws -> Tokenizer {
        let added = specialTokens.compactMap { token in
            vocabulary.firstIndex(of: token).map { AddedToken(content: token, id: $0, isSpecial: true) }
        }
        return try Tokenizer(vocabulary: vocabulary,
                             model: .bpe(merges: merges.map { ($0.left, $0.right) }, source: "trained merges",
                                         ignoresMerges: false),
                             addedTokens: added, preTokenizer: preTokenizer, normalizer: [], decoder: [.byteLevel],
                             byteFallback: false, unknownTokenID: nil, fusesUnknown: false, prefixIDs: [],
                             suffixIDs: [], bosTokenID: nil, eosTokenID: nil, source: "trained tokenizer")
    }

    /// Hugging Face's `tokenizer.json` (see `Tokenizer.tokenizerJSON()`); the same training always gives the same
    /// bytes.
    public func tokenizerJSON() throws -> Data { try builtTokenizer().tokenizerJSON() }

    /// Hugging Face's `tokenizer_config.json` for this vocabulary (see `Tokenizer.tokenizerConfigJSON(_:)`).
    public func tokenizerConfigJSON(_ options: TokenizerConfigOptions) throws -> Data {
        try builtTokenizer().tokenizerConfigJSON(options)
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `folder` (see `Tokenizer.save(to:config:)`).
    public func save(to folder: URL, config: TokenizerConfigOptions) throws {
        try builtTokenizer().save(to: folder, config: config)
    }

    /// The tokenizer these files describe, loaded back through `Tokenizer(tokenizerJSON:tokenizerConfigJSON:)`.
    public func tokenizer(config: TokenizerConfigOptions = TokenizerConfigOptions()) throws -> Tokenizer {
        try Tokenizer(tokenizerJSON: try tokenizerJSON(), tokenizerConfigJSON: try tokenizerConfigJSON(config))
    }
}

extension Tokenizer {
    /// The merges in rank order as token texts: what tokenizer.json's `merges` and GGUF's `tokenizer.ggml.merges` list.
    public var rankedMerges: [(left: String, right: String)] {
        guard case .bpe(let merges) = model else { return [] }
        return merges.ranked.map { (modelSpelling($0.left), modelSpelling($0.right)) }
    }

    /// Hugging Face's `tokenizer.json` for this tokenizer, which `tokenizers` loads with the same ids: added tokens,
    /// normalizer, pre-tokenizer, post-processor (BOS/EOS), decoder and the model (BPE vocab and merges, or
    /// Unigram pieces and scores). Throws for llama.cpp-only pre-tokenizer splits, which have no regex here.
    public func tokenizerJSON() throws -> Data {
        var lines: [String] = ["{", #"  "version": "1.0","#, #"  "truncation": null,"#, #"  "padding": null,"#]
        let added = addedTokens.sorted { $0.id < $1.id }
        lines.append(#"  "added_tokens": ["#)
        for (index, token) in added.enumerated() {
            lines.append("    {\"id\": \(token.id), \"content\": \(jsonString(token.content)), "
                         + "\"single_word\": \(token.isSingleWord), \"lstrip\": \(token.stripsLeft), "
                         + "\"rstrip\": \(token.stripsRight), \"normalized\": \(token.isNormalized), "
                         + "\"special\": \(token.isSpecial)}" + (index + 1 < added.count ? "," : ""))
        }
        lines.append("  ],")
        lines.append("  \"normalizer\": \(Self.sequenceJSON(normalizer.map(Self.normalizerJSON), key: "normalizers")),")
        lines.append("  \"pre_tokenizer\": \(Self.sequenceJSON(try preTokenizer.steps.map(Self.stepJSON), key: "pretokenizers")),")
        lines.append("  \"post_processor\": \(postProcessorJSON()),")
        lines.append("  \"decoder\": \(decoder.map { Self.sequenceJSON($0.map(Self.decoderJSON), key: "decoders") } ?? "null"),")
        lines.append(#"  "model": {"#)
        let fallback = byteFallbackIDs != nil
        switch model {
        case .bpe(let merges):
            let unknown = unknownTokenID.map { jsonString(modelSpelling($0)) } ?? "null"
            lines.append("    \"type\": \"BPE\", \"dropout\": null, \"unk_token\": \(unknown), "
                         + "\"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, "
                         + "\"fuse_unk\": \(fusesUnknown), \"byte_fallback\": \(fallback), "
                         + "\"ignore_merges\": \(merges.ignoresMerges),")
            lines.append(#"    "vocab": {"#)
            for id in vocabulary.indices {
                lines.append("      \(jsonString(modelSpelling(id))): \(id)" + (id + 1 < vocabulary.count ? "," : ""))
            }
            lines.append("    },")
            lines.append(#"    "merges": ["#)
            let ranked = rankedMerges
            for (index, merge) in ranked.enumerated() {
                lines.append("      [\(jsonString(merge.left)), \(jsonString(merge.right))]"
                             + (index + 1 < ranked.count ? "," : ""))
            }
            lines.append("    ]")
        case .unigram(let unigram):
            lines.append("    \"type\": \"Unigram\", \"unk_id\": \(unknownTokenID.map(String.init) ?? "null"), "
                         + "\"byte_fallback\": \(fallback),")
            lines.append(#"    "vocab": ["#)
            for (id, score) in unigram.scores.enumerated() {
                lines.append("      [\(jsonString(modelSpelling(id))), \(score)]"
                             + (id + 1 < unigram.scores.count ? "," : ""))
            }
            lines.append("    ]")
        }
        lines.append("  }")
        lines.append("}")
        return Data((lines.joined(separator: "\n") + "\n").utf8)
    }

    /// Hugging Face's `tokenizer_config.json`: the added tokens, BOS/EOS/unknown token names, the chat template.
    /// Throws when a named token is not a special token, or the chat template is ChatML and its tokens are missing.
    public func tokenizerConfigJSON(_ options: TokenizerConfigOptions) throws -> Data {
        let added = addedTokens.sorted { $0.id < $1.id }
        let specialTokens = added.filter(\.isSpecial).map(\.content)
        func check(_ token: String?, field: String) throws {
            if let token, !specialTokens.contains(token) {
                throw TokenizerError.unknownToken(field: "tokenizer_config.json: \(field) (special tokens: "
                                                  + specialTokens.joined(separator: ", ") + ")", token: token)
            }
        }
        try check(options.bosToken, field: "bos_token")
        try check(options.eosToken, field: "eos_token")
        try check(options.unknownToken, field: "unk_token")
        if options.chatTemplate == TokenizerConfigOptions.chatMLTemplate {
            for token in TokenizerConfigOptions.chatMLTokens {
                try check(token, field: "chat_template (ChatML)")
            }
        }
        let byteLevel = kind == .byteLevelBPE
        var lines: [String] = ["{"]
        // transformers rebuilds the pre-tokenizer from add_prefix_space when it is given: only byte-level says it.
        if byteLevel { lines.append(#"  "add_prefix_space": false,"#) }
        lines.append(#"  "added_tokens_decoder": {"#)
        for (index, token) in added.enumerated() {
            lines.append("    \"\(token.id)\": {\"content\": \(jsonString(token.content)), \"lstrip\": \(token.stripsLeft), "
                         + "\"normalized\": \(token.isNormalized), \"rstrip\": \(token.stripsRight), "
                         + "\"single_word\": \(token.isSingleWord), \"special\": \(token.isSpecial)}"
                         + (index + 1 < added.count ? "," : ""))
        }
        lines.append("  },")
        lines.append("  \"additional_special_tokens\": [" + specialTokens.map(jsonString).joined(separator: ", ") + "],")
        if let bos = options.bosToken { lines.append("  \"bos_token\": \(jsonString(bos)),") }
        if let template = options.chatTemplate { lines.append("  \"chat_template\": \(jsonString(template)),") }
        lines.append(#"  "clean_up_tokenization_spaces": false,"#)
        if let eos = options.eosToken { lines.append("  \"eos_token\": \(jsonString(eos)),") }
        lines.append("  \"model_max_length\": \(options.modelMaxLength),")
        // The generic class loads tokenizer.json as written; GPT2Tokenizer is what byte-level files have always said.
        lines.append("  \"tokenizer_class\": \(byteLevel ? "\"GPT2Tokenizer\"" : "\"PreTrainedTokenizerFast\""),")
        if let unknown = options.unknownToken { lines.append("  \"unk_token\": \(jsonString(unknown)),") }
        lines.append("  \"vocab_size\": \(vocabulary.count)")
        lines.append("}")
        return Data((lines.joined(separator: "\n") + "\n").utf8)
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `folder` (created if needed). Each file is
    /// written to a temporary name and renamed, so a reader never sees half a file.
    public func save(to folder: URL, config: TokenizerConfigOptions) throws {
        let json = try tokenizerJSON()
        let configJSON = try tokenizerConfigJSON(config)
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try json.write(to: folder.appendingPathComponent("tokenizer.json"), options: .atomic)
            try configJSON.write(to: folder.appendingPathComponent("tokenizer_config.json"), options: .atomic)
        } catch {
            throw TokenizerError.unreadableFile(path: folder.path, detail: "cannot write: \(error.localizedDescription)")
        }
    }

    /// One component, or a Sequence of them, or null for none.
    private static func sequenceJSON(_ steps: [String], key: String) -> String {
        switch steps.count {
        case 0: return "null"
        case 1: return steps[0]
        default: return "{\"type\": \"Sequence\", \"\(key)\": [" + steps.joined(separator: ", ") + "]}"
        }
    }

    /// TemplateProcessing for BOS/EOS around the text; byte-level's own (offsets only) when there are none.
    private func postProcessorJSON() -> String {
        guard !prefixIDs.isEmpty || !suffixIDs.isEmpty else {
            return kind == .byteLevelBPE
                ? #"{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true}"# : "null"
        }
        func special(_ id: Int, type: Int) -> String {
            "{\"SpecialToken\": {\"id\": \(jsonString(modelSpelling(id))), \"type_id\": \(type)}}"
        }
        func sequence(_ name: String, type: Int) -> String {
            "{\"Sequence\": {\"id\": \"\(name)\", \"type_id\": \(type)}}"
        }
        let single = prefixIDs.map { special($0, type: 0) } + [sequence("A", type: 0)] + suffixIDs.map { special($0, type: 0) }
        let pair = single + prefixIDs.map { special($0, type: 1) } + [sequence("B", type: 1)]
            + suffixIDs.map { special($0, type: 1) }
        let tokens = Set(prefixIDs + suffixIDs).sorted().map { id -> String in
            let name = jsonString(modelSpelling(id))
            return "\(name): {\"id\": \(name), \"ids\": [\(id)], \"tokens\": [\(name)]}"
        }
        return "{\"type\": \"TemplateProcessing\", \"single\": [" + single.joined(separator: ", ") + "], \"pair\": ["
            + pair.joined(separator: ", ") + "], \"special_tokens\": {" + tokens.joined(separator: ", ") + "}}"
    }

    private static func normalizerJSON(_ step: NormalizerStep) -> String {
        switch step {
        case .prepend(let text): return "{\"type\": \"Prepend\", \"prepend\": \(jsonString(text))}"
        case let .replace(pattern, content):
            return "{\"type\": \"Replace\", \"pattern\": {\"String\": \(jsonString(pattern))}, \"content\": \(jsonString(content))}"
        case .nfc: return #"{"type": "NFC"}"#
        case .nfd: return #"{"type": "NFD"}"#
        case .nfkc: return #"{"type": "NFKC"}"#
        case .nfkd: return #"{"type": "NFKD"}"#
        }
    }

    private static func decoderJSON(_ step: DecoderStep) -> String {
        switch step {
        case .byteLevel: return #"{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}"#
        case let .replace(pattern, content):
            return "{\"type\": \"Replace\", \"pattern\": {\"String\": \(jsonString(pattern))}, \"content\": \(jsonString(content))}"
        case .byteFallback: return #"{"type": "ByteFallback"}"#
        case .fuse: return #"{"type": "Fuse"}"#
        case let .strip(character, start, stop):
            return "{\"type\": \"Strip\", \"content\": \(jsonString(String(character))), \"start\": \(start), \"stop\": \(stop)}"
        case let .metaspace(replacement, dropsFromFirstToken):
            return "{\"type\": \"Metaspace\", \"replacement\": \(jsonString(replacement)), "
                + "\"prepend_scheme\": \"\(dropsFromFirstToken ? "always" : "never")\", \"split\": true}"
        }
    }

    private static func stepJSON(_ step: PreTokenizer.Step) throws -> String {
        switch step {
        case let .digits(individual):
            return "{\"type\": \"Digits\", \"individual_digits\": \(individual)}"
        case let .byteLevel(addPrefixSpace, useRegex):
            return "{\"type\": \"ByteLevel\", \"add_prefix_space\": \(addPrefixSpace), \"trim_offsets\": true, "
                + "\"use_regex\": \(useRegex)}"
        case let .split(pattern, behavior):
            let patternJSON: String
            switch pattern {
            case .gpt2: patternJSON = "{\"Regex\": \(jsonString(PreTokenizer.SplitPattern.gpt2Regex))}"
            case .llama3: patternJSON = "{\"Regex\": \(jsonString(PreTokenizer.SplitPattern.llama3Regex))}"
            case .qwen2: patternJSON = "{\"Regex\": \(jsonString(PreTokenizer.SplitPattern.qwen2Regex))}"
            case .literal(let text): patternJSON = "{\"String\": \(jsonString(text))}"
            case .punctuationRuns, .numberRuns, .threeASCIIDigits:
                throw TokenizerError.unsupported(file: "tokenizer.json", field: "pre_tokenizer",
                                                 value: "llama.cpp's \(pattern) split (it has no Hugging Face regex here)")
            }
            return "{\"type\": \"Split\", \"pattern\": \(patternJSON), \"behavior\": \"\(behavior.rawValue)\", "
                + "\"invert\": false}"
        case let .metaspace(replacement, prepend, split):
            return "{\"type\": \"Metaspace\", \"replacement\": \(jsonString(String(replacement))), "
                + "\"prepend_scheme\": \"\(prepend.rawValue)\", \"split\": \(split)}"
        }
    }
}

/// `text` as a JSON string literal, escaped as serde_json does: quotes, backslashes and control characters
/// only; other characters are written as themselves in UTF-8.
private func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if scalar.value < 0x20 {
                out += String(format: "\\u%04x", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
