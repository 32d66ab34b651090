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

/// A row that cannot be rendered, naming it as "file:line".
public struct SFTRenderError: Error, CustomStringConvertible, Equatable {
    public let source: String
    public let message: String
    public var description: String { "\(source): \(message)" }
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
            throw SFTRenderError(source: source, message:
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
        let supervised = ids.indices.map { options.lossOn == .all ? $0 > 0 : $0 >= promptIDs.count }
        return try finish(ids: ids, supervised: supervised, source: source)
    }

    /// A conversation through the chat template (no generation prompt); the assistant turns supervised.
    public func render(messages: [ChatMessage], source: String) throws -> SFTExample {
        let ids = try chatTokens(messages, addGenerationPrompt: false, source: source)
        guard !ids.isEmpty else { throw SFTRenderError(source: source, message: "the chat template renders nothing") }
        if options.lossOn == .all {
            return try finish(ids: ids, supervised: [false] + Array(repeating: true, count: ids.count - 1), source: source)
        }
        guard messages.contains(where: { $0.role == "assistant" }) else {
            throw SFTSkip(source: source, reason: .noAssistantMessage)
        }
        var supervised = [Bool](repeating: false, count: ids.count)
        for (turn, message) in messages.enumerated() where message.role == "assistant" {
            let span = try assistantSpan(messages, turn: turn, fullIDs: ids, source: source)
            for t in span where t > 0 { supervised[t] = true }
        }
        return try finish(ids: ids, supervised: supervised, source: source)
    }

    /// The token range of `messages[turn]` (an assistant turn) inside `fullIDs`: from the end of the conversation
    /// before it with the generation prompt to the end of the conversation through it. Both renderings must
    /// tokenize to prefixes of `fullIDs`; a template that renders earlier turns differently once later ones follow
    /// (Qwen3 drops past reasoning) or a BPE merge across the boundary makes the span ambiguous, and is an error.
    private func assistantSpan(_ messages: [ChatMessage], turn: Int, fullIDs: [Int], source: String) throws -> Range<Int> {
        let promptIDs = try chatTokens(Array(messages[..<turn]), addGenerationPrompt: true, source: source)
        let throughIDs = try chatTokens(Array(messages[...turn]), addGenerationPrompt: false, source: source)
        func isPrefix(_ prefix: [Int], of ids: [Int]) -> Bool { prefix.count <= ids.count && ids[..<prefix.count].elementsEqual(prefix) }
        guard isPrefix(promptIDs, of: throughIDs) else {
            throw SFTRenderError(source: source, message:
                "cannot find the tokens of messages[\(turn)] (assistant): the chat template's prompt for it (the messages " +
                "before it plus the generation prompt) is not a prefix of the conversation through it, in tokens; " +
                "the template renders the assistant turn differently from its generation prompt, so the assistant-only " +
                "loss is undefined for it (use loss_on: all, or a template whose prompt is a prefix)")
        }
        guard isPrefix(throughIDs, of: fullIDs) else {
            throw SFTRenderError(source: source, message:
                "cannot find the tokens of messages[\(turn)] (assistant): the chat template renders the conversation " +
                "through it differently once later messages follow (it is not a prefix of the whole conversation, in " +
                "tokens), so the assistant-only loss is undefined for it (use loss_on: all, or a prefix-preserving template)")
        }
        return promptIDs.count..<throughIDs.count
    }

    /// As `LanguageModel.chatTokens`: the template writes any BOS itself, special tokens in the text are parsed.
    private func chatTokens(_ messages: [ChatMessage], addGenerationPrompt: Bool, source: String) throws -> [Int] {
        guard let chatTemplate else {
            throw SFTRenderError(source: source, message:
                "\(model.name) has no chat template for this conversation; give {\"text\"} or {\"prompt\", \"completion\"} rows")
        }
        let text: String
        do {
            text = try chatTemplate.render(messages: messages, addGenerationPrompt: addGenerationPrompt,
                                           bosToken: model.bosToken, eosToken: model.eosToken)
        } catch {
            throw SFTRenderError(source: source, message: "the chat template failed on this conversation: \(error)")
        }
        return model.tokenizer.encode(text, addSpecialTokens: false)
    }

    // MARK: Shared steps

    /// Appends EOS unless the text already ended with it (TRL adds `eos_token` only when missing).
    private func withEOS(_ ids: [Int], source: String) throws -> [Int] {
        guard let eos = model.tokenizer.eosTokenID else {
            throw SFTRenderError(source: source, message:
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
