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
    /// Hugging Face's `tokenizer.json`: model BPE (vocab in id order, merges as pairs), the special tokens as
    /// `added_tokens`, the pre-tokenizer, and byte-level post-processor and decoder. The same training always
    /// gives the same bytes.
    public func tokenizerJSON() throws -> Data {
        var lines: [String] = ["{", #"  "version": "1.0","#, #"  "truncation": null,"#, #"  "padding": null,"#]
        let added = specialTokens.compactMap { token in vocabulary.firstIndex(of: token).map { (token, $0) } }
        lines.append(#"  "added_tokens": ["#)
        for (index, (token, id)) in added.enumerated() {
            lines.append("    {\"id\": \(id), \"content\": \(jsonString(token)), \"single_word\": false, "
                         + "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}"
                         + (index + 1 < added.count ? "," : ""))
        }
        lines.append("  ],")
        lines.append(#"  "normalizer": null,"#)
        lines.append("  \"pre_tokenizer\": \(try preTokenizerJSON()),")
        lines.append(#"  "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},"#)
        lines.append(#"  "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},"#)
        lines.append(#"  "model": {"#)
        lines.append(#"    "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,"#)
        lines.append(#"    "vocab": {"#)
        for (id, token) in vocabulary.enumerated() {
            lines.append("      \(jsonString(token)): \(id)" + (id + 1 < vocabulary.count ? "," : ""))
        }
        lines.append("    },")
        lines.append(#"    "merges": ["#)
        for (index, merge) in merges.enumerated() {
            lines.append("      [\(jsonString(merge.left)), \(jsonString(merge.right))]"
                         + (index + 1 < merges.count ? "," : ""))
        }
        lines.append("    ]")
        lines.append("  }")
        lines.append("}")
        return Data((lines.joined(separator: "\n") + "\n").utf8)
    }

    /// Hugging Face's `tokenizer_config.json` for this vocabulary. Throws when a named token is not a special
    /// token, or the chat template is ChatML and its tokens are missing.
    public func tokenizerConfigJSON(_ options: TokenizerConfigOptions) throws -> Data {
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
        var lines: [String] = ["{", #"  "add_prefix_space": false,"#, #"  "added_tokens_decoder": {"#]
        let added = specialTokens.compactMap { token in vocabulary.firstIndex(of: token).map { (token, $0) } }
        for (index, (token, id)) in added.enumerated() {
            lines.append("    \"\(id)\": {\"content\": \(jsonString(token)), \"lstrip\": false, \"normalized\": false, "
                         + "\"rstrip\": false, \"single_word\": false, \"special\": true}"
                         + (index + 1 < added.count ? "," : ""))
        }
        lines.append("  },")
        lines.append("  \"additional_special_tokens\": [" + specialTokens.map(jsonString).joined(separator: ", ") + "],")
        if let bos = options.bosToken { lines.append("  \"bos_token\": \(jsonString(bos)),") }
        if let template = options.chatTemplate { lines.append("  \"chat_template\": \(jsonString(template)),") }
        lines.append(#"  "clean_up_tokenization_spaces": false,"#)
        if let eos = options.eosToken { lines.append("  \"eos_token\": \(jsonString(eos)),") }
        lines.append("  \"model_max_length\": \(options.modelMaxLength),")
        lines.append(#"  "tokenizer_class": "GPT2Tokenizer","#)
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

    /// The tokenizer these files describe, loaded back through `Tokenizer(tokenizerJSON:tokenizerConfigJSON:)`.
    public func tokenizer(config: TokenizerConfigOptions = TokenizerConfigOptions()) throws -> Tokenizer {
        try Tokenizer(tokenizerJSON: try tokenizerJSON(), tokenizerConfigJSON: try tokenizerConfigJSON(config))
    }

    private func preTokenizerJSON() throws -> String {
        let steps = try preTokenizer.steps.map(Self.stepJSON)
        if steps.count == 1 { return steps[0] }
        return "{\"type\": \"Sequence\", \"pretokenizers\": [" + steps.joined(separator: ", ") + "]}"
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

extension Tokenizer {
    /// The merges in rank order as token texts: what tokenizer.json's `merges` and GGUF's `tokenizer.ggml.merges` list.
    public var rankedMerges: [(left: String, right: String)] {
        guard case .bpe(let merges) = model else { return [] }
        return merges.ranked.map { (vocabulary[$0.left], vocabulary[$0.right]) }
    }

    /// This tokenizer as the files `TrainedBPE` writes (tokenizer.json and tokenizer_config.json, which
    /// transformers loads), e.g. to give a GGUF's tokenizer to a Hugging Face folder. Throws for what those files
    /// would not say: added tokens that are not special, and BOS or EOS put around the text.
    public func savableForm() throws -> TrainedBPE {
        if let plain = addedTokens.first(where: { !$0.isSpecial }) {
            throw TokenizerError.unsupported(file: "tokenizer.json", field: "added_tokens",
                                             value: "the non-special added token \(plain.content.debugDescription)")
        }
        guard !ignoresMerges else {
            throw TokenizerError.unsupported(file: "tokenizer.json", field: "model.ignore_merges", value: "true")
        }
        guard prefixIDs.isEmpty, suffixIDs.isEmpty else {
            throw TokenizerError.unsupported(file: "tokenizer.json", field: "post_processor",
                                             value: "BOS/EOS added around the text (add_bos_token / add_eos_token)")
        }
        return TrainedBPE(vocabulary: vocabulary,
                          merges: rankedMerges.map { TrainedBPE.Merge(left: $0.left, right: $0.right, count: 0) },
                          specialTokens: addedTokens.sorted { $0.id < $1.id }.map(\.content), preTokenizer: preTokenizer)
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
