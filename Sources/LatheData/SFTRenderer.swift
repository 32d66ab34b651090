import Foundation
import LatheModels
import LatheTemplates

/// One training sequence: token ids and, per token, whether the loss includes predicting it.
public struct SFTExample: Equatable, Sendable {
    public var ids: [Int]
    /// `supervised[t]`: the loss includes predicting `ids[t]` from `ids[..<t]`. Always false at 0.
    public var supervised: [Bool]
    /// "file:line" of the row it came from.
    public var source: String
    /// Whether the row was longer than `maxLength` and cut.
    public var truncated: Bool

    public init(ids: [Int], supervised: [Bool], source: String, truncated: Bool) {
        self.ids = ids; self.supervised = supervised; self.source = source; self.truncated = truncated
    }

    public var supervisedCount: Int { supervised.lazy.filter { $0 }.count }
}

/// Why a row gives no training example: such rows are skipped and counted, not fatal.
public enum SFTSkipReason: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
    /// Truncation to `maxLength` cut off every supervised token (e.g. a long prompt with right truncation).
    case noSupervisedTokenAfterTruncation = "no supervised token left after truncation"
    /// A conversation without an assistant message has nothing to learn with `loss_on: completion`.
    case noAssistantMessage = "no assistant message"
    /// The row renders to a single token (e.g. empty text with no BOS): nothing to predict.
    case nothingToPredict = "nothing to predict (a single token)"

    public var description: String { rawValue }
}

/// A row skipped for a reason a user would rather count than stop on.
public struct SFTSkip: Error, CustomStringConvertible, Equatable {
    public let source: String
    public let reason: SFTSkipReason
    public var description: String { "\(source): skipped: \(reason)" }
}

/// Turns dataset rows into `SFTExample`s for one model: its tokenizer, BOS/EOS and chat template.
///
/// Loss masks follow TRL's `SFTTrainer`:
/// - text: `[BOS] + tokens(text) + EOS`, every token but the first supervised;
/// - prompt/completion: `[BOS] + tokens(prompt) + tokens(completion) + EOS`, the completion and EOS supervised.
///   The two parts are tokenized apart (TRL tokenizes `prompt + completion` at once and warns when the prompt's
///   ids are not a prefix); apart, the prompt's ids are exactly those a user's prompt gives at inference;
/// - messages: the chat template's rendering; each assistant turn's span is what rendering the conversation
///   through that turn adds to rendering the turns before it with the generation prompt. That span is the
///   content, the end-of-turn token (`<|im_end|>`) and whatever the template writes after it inside the turn
///   (ChatML's newline). TRL's ChatML training templates (qwen2_5_training, lfm2_training) put
///   `content + '<|im_end|>\n'` inside `{% generation %}`, so `assistant_only_loss` supervises that newline too.
public struct SFTRenderer: @unchecked Sendable {
    public let model: LanguageModel
    public let options: SFTOptions
    /// The template conversations go through: the model's, or a training variant given at init.
    public let chatTemplate: ChatTemplate?

    /// `chatTemplate` replaces the model's own, e.g. by a prefix-preserving training variant of it.
    public init(model: LanguageModel, options: SFTOptions, chatTemplate: ChatTemplate? = nil) {
        self.model = model
        self.options = options
        self.chatTemplate = chatTemplate ?? model.chatTemplate
    }

    // MARK: Formats

    /// Renders one dataset row (Alpaca and ShareGPT rows arrive as conversations).
    public func render(_ row: DatasetRow) throws -> SFTExample {
        let source = "\(row.line.file):\(row.line.line)"
        switch row.record {
        case .text(let text): return try render(text: text, source: source)
        case .promptCompletion(let prompt, let completion): return try render(prompt: prompt, completion: completion, source: source)
        case .messages(let messages): return try render(messages: messages, source: source)
        case .preference, .kto:
            throw RowRenderError(source: source, message:
                "a \(row.format.rawValue) row is not SFT data (SFT takes text, prompt/completion, messages, Alpaca or ShareGPT rows)")
        }
    }

    /// Plain text: `[BOS] + tokens(text) + EOS`, every token but the first supervised.
    public func render(text: String, source: String) throws -> SFTExample {
        let ids = try withEOS(model.tokenizer.prefixIDs + model.tokenizer.encode(text, addSpecialTokens: false), source: source)
        return try finish(ids: ids, supervised: [false] + Array(repeating: true, count: ids.count - 1), source: source)
    }

    /// `[BOS] + tokens(prompt) + tokens(completion) + EOS`; the completion and EOS supervised (all with `.all`).
    public func render(prompt: String, completion: String, source: String) throws -> SFTExample {
        let promptIDs = model.tokenizer.prefixIDs + model.tokenizer.encode(prompt, addSpecialTokens: false)
        let ids = try withEOS(promptIDs + model.tokenizer.encode(completion, addSpecialTokens: false), source: source)
        // Token 0 has nothing before it to be predicted from, even when the prompt is empty.
        let supervised = ids.indices.map { $0 > 0 && (options.lossOn == .all || $0 >= promptIDs.count) }
        return try finish(ids: ids, supervised: supervised, source: source)
    }

    /// A conversation through the chat template (no generation prompt); the assistant turns supervised.
    public func render(messages: [ChatMessage], source: String) throws -> SFTExample {
        let full = try chat(messages, addGenerationPrompt: false, source: source)
        let ids = full.ids
        guard !ids.isEmpty else { throw RowRenderError(source: source, message: "the chat template renders nothing") }
        if options.lossOn == .all {
            return try finish(ids: ids, supervised: [false] + Array(repeating: true, count: ids.count - 1), source: source)
        }
        guard messages.contains(where: { $0.role == "assistant" }) else {
            throw SFTSkip(source: source, reason: .noAssistantMessage)
        }
        var supervised = [Bool](repeating: false, count: ids.count)
        for (turn, message) in messages.enumerated() where message.role == "assistant" {
            let span = try assistantSpan(messages, turn: turn, full: full, source: source)
            for t in span where t > 0 { supervised[t] = true }
        }
        return try finish(ids: ids, supervised: supervised, source: source)
    }

    /// The token range of `messages[turn]` (an assistant turn) inside the whole conversation: from the end of the
    /// conversation before it with the generation prompt to the end of the conversation through it.
    ///
    /// Both renderings must be prefixes of the whole text; a template that renders earlier turns differently once
    /// later ones follow (Qwen3 drops past reasoning) makes the span undefined, and is an error. When they are
    /// prefixes as text but not as tokens (a BPE merge across the boundary: an answer starting with "\n" or two
    /// spaces merges with the header's newline), the span is taken as transformers' `return_assistant_tokens_mask`
    /// takes it: from the token holding the first character of the answer to the one holding its last.
    private func assistantSpan(_ messages: [ChatMessage], turn: Int, full: RenderedChat, source: String) throws -> Range<Int> {
        let prompt = try chat(Array(messages[..<turn]), addGenerationPrompt: true, source: source)
        let through = try chat(Array(messages[...turn]), addGenerationPrompt: false, source: source)
        guard through.text.utf8.starts(with: prompt.text.utf8) else {
            throw RowRenderError(source: source, message:
                "cannot find the tokens of messages[\(turn)] (assistant): the chat template's prompt for it (the messages " +
                "before it plus the generation prompt) is not how the conversation through it begins, so the " +
                "assistant-only loss is undefined for it (use loss_on: all, or a template whose generation prompt is a prefix)")
        }
        guard full.text.utf8.starts(with: through.text.utf8) else {
            throw RowRenderError(source: source, message:
                "cannot find the tokens of messages[\(turn)] (assistant): the chat template renders the conversation " +
                "through it differently once later messages follow, so the assistant-only loss is undefined for it " +
                "(use loss_on: all, or a prefix-preserving template)")
        }
        let start = full.ids.starts(with: prompt.ids) ? prompt.ids.count
            : tokenIndex(holdingByte: decodedLength(prompt.ids), of: full.ids, from: commonPrefixCount(prompt.ids, full.ids))
        let end = full.ids.starts(with: through.ids) ? through.ids.count
            : tokenIndex(holdingByte: decodedLength(through.ids) - 1, of: full.ids, from: commonPrefixCount(through.ids, full.ids)) + 1
        return start..<max(start, end)
    }

    private func decodedLength<C: Collection>(_ ids: C) -> Int where C.Element == Int {
        model.tokenizer.decode(Array(ids)).utf8.count
    }

    /// The index of the token of `ids` whose decoded bytes hold byte `offset` of the decoded text, searching from
    /// token `first` (the tokens before it are known to end at or before the offset). A cut inside a multi-byte
    /// character decodes as U+FFFD and may shift the answer by that token, as it would in character offsets.
    private func tokenIndex(holdingByte offset: Int, of ids: [Int], from first: Int) -> Int {
        var k = first
        while k < ids.count - 1, decodedLength(ids[..<(k + 1)]) <= offset { k += 1 }
        return k
    }

    private func chat(_ messages: [ChatMessage], addGenerationPrompt: Bool, source: String) throws -> RenderedChat {
        try RenderedChat(messages, template: chatTemplate, model: model, addGenerationPrompt: addGenerationPrompt, source: source)
    }

    // MARK: Shared steps

    /// Appends EOS unless the text already ended with it (TRL adds `eos_token` only when missing).
    private func withEOS(_ ids: [Int], source: String) throws -> [Int] {
        guard let eos = model.tokenizer.eosTokenID else {
            throw RowRenderError(source: source, message:
                "\(model.name) declares no EOS token, which text and prompt/completion rows need to learn to stop")
        }
        return ids.last == eos ? ids : ids + [eos]
    }

    /// Truncates to `maxLength` on the configured side; a row left with nothing to learn is skipped.
    private func finish(ids: [Int], supervised: [Bool], source: String) throws -> SFTExample {
        var example = SFTExample(ids: ids, supervised: supervised, source: source, truncated: false)
        if ids.count > options.maxLength {
            example.truncated = true
            switch options.truncation {
            case .right:
                example.ids = Array(ids.prefix(options.maxLength))
                example.supervised = Array(supervised.prefix(options.maxLength))
            case .left:
                example.ids = Array(ids.suffix(options.maxLength))
                example.supervised = Array(supervised.suffix(options.maxLength))
                // The new first token has nothing before it to be predicted from.
                example.supervised[0] = false
            }
        }
        guard example.supervised.contains(true) else {
            throw SFTSkip(source: source, reason: example.truncated ? .noSupervisedTokenAfterTruncation : .nothingToPredict)
        }
        return example
    }
}
