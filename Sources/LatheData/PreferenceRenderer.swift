import Foundation
import LatheModels
import LatheTemplates

/// A preference pair as TRL's DPOTrainer tokenizes it: prompt ids, then each completion's ids (ending with EOS).
public struct PreferenceExample: Equatable, Sendable {
    public var prompt: [Int]
    public var chosen: [Int]
    public var rejected: [Int]
    /// "file:line" of the row it came from.
    public var source: String
    /// prompt+chosen or prompt+rejected was cut to `maxLength` (the ids above are what is left).
    public var truncated: Bool

    public init(prompt: [Int], chosen: [Int], rejected: [Int], source: String, truncated: Bool) {
        self.prompt = prompt; self.chosen = chosen; self.rejected = rejected; self.source = source; self.truncated = truncated
    }
}

/// KTO's unpaired row: prompt ids, the completion's ids, and whether the completion is desirable.
public struct UnpairedExample: Equatable, Sendable {
    public var prompt: [Int]
    public var completion: [Int]
    public var label: Bool
    /// "file:line" of the row it came from (both halves of an unpaired pair name the pair's line).
    public var source: String
    /// prompt+completion was cut to `maxLength`.
    public var truncated: Bool

    public init(prompt: [Int], completion: [Int], label: Bool, source: String, truncated: Bool) {
        self.prompt = prompt; self.completion = completion; self.label = label; self.source = source; self.truncated = truncated
    }
}

/// Why a preference or KTO row gives no example: such rows are dropped and counted, not fatal.
public enum PreferenceDropReason: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
    /// With `maxLength`, the prompt alone has that many tokens: truncation would leave no completion token
    /// (TRL filters these rows out too).
    case promptFillsMaxLength = "the prompt alone fills max_length"
    /// Chosen and rejected are the same tokens (after truncation): the pair prefers nothing. TRL keeps such pairs.
    case sameChosenAndRejected = "chosen and rejected are the same tokens"
    /// Reward models: the chosen or the rejected sequence is longer than `max_length` (TRL's RewardTrainer filters
    /// such pairs out rather than cutting them).
    case longerThanMaxLength = "chosen or rejected is longer than max_length"

    public var description: String { rawValue }
}

/// A row dropped for a reason a user would rather count than stop on.
public struct PreferenceDrop: Error, CustomStringConvertible, Equatable {
    public let source: String
    public let reason: PreferenceDropReason
    public var description: String { "\(source): dropped: \(reason)" }
}

/// Tokenizes preference pairs and KTO rows for one model exactly as TRL 1.16.0's `DPOTrainer` and `KTOTrainer`
/// prepare them (`_prepare_dataset`, then the collator's truncation):
/// - text rows: the EOS text appended to each completion that does not end with it; then `tokenizer(prompt)` and
///   `tokenizer(prompt + completion)`, with the tokenizer's own BOS/EOS rule and special tokens in the text parsed;
/// - conversational rows: the chat template of the prompt with the generation prompt, and of prompt + completion
///   without it (so a completion's ids include the end-of-turn token and what the template writes after it);
/// - the prompt is the longest start the prompt's ids share with every prompt+completion, each completion the
///   rest: a BPE merge across the boundary moves the merged token into the completions, as in TRL;
/// - with `maxLength`, each prompt+completion is cut to `maxLength` from the end (TRL's `keep_start`), and a row
///   whose prompt alone fills `maxLength` is dropped.
public struct PreferenceRenderer: @unchecked Sendable {
    public let model: LanguageModel
    /// The longest prompt+completion sequence, in tokens; nil: no limit.
    public let maxLength: Int?

    public init(model: LanguageModel, maxLength: Int?) {
        self.model = model
        self.maxLength = maxLength
    }

    /// Tokenizes a preference row; other rows are errors naming the line.
    public func pair(_ row: DatasetRow) throws -> PreferenceExample {
        guard case .preference(let record) = row.record else {
            throw row.line.error("a \(row.format.rawValue) row is not a preference pair; give {\"prompt\", \"chosen\", \"rejected\"} rows")
        }
        return try pair(record, source: Self.source(row))
    }

    /// Tokenizes a KTO row; other rows are errors naming the line (`PreferenceDataset.loadUnpaired` unpairs pairs).
    public func unpaired(_ row: DatasetRow) throws -> UnpairedExample {
        guard case .kto(let record) = row.record else {
            throw row.line.error("a \(row.format.rawValue) row is not a KTO row; give {\"prompt\", \"completion\", \"label\"} rows")
        }
        return try unpaired(record, source: Self.source(row))
    }

    public func pair(_ record: PreferenceRecord, source: String) throws -> PreferenceExample {
        let split = try tokenize(prompt: record.prompt, completions: [record.chosen, record.rejected], source: source)
        let example = PreferenceExample(prompt: split.prompt, chosen: split.completions[0], rejected: split.completions[1],
                                        source: source, truncated: split.truncated)
        if example.chosen == example.rejected { throw PreferenceDrop(source: source, reason: .sameChosenAndRejected) }
        return example
    }

    public func unpaired(_ record: KTORecord, source: String) throws -> UnpairedExample {
        let split = try tokenize(prompt: record.prompt, completions: [record.completion], source: source)
        return UnpairedExample(prompt: split.prompt, completion: split.completions[0], label: record.label, source: source,
                               truncated: split.truncated)
    }

    static func source(_ row: DatasetRow) -> String { "\(row.line.file):\(row.line.line)" }

    /// `RecordDecoder` gives one form per row; a record built by hand may not.
    private func mixedForms(_ source: String) -> RowRenderError {
        RowRenderError(source: source, message: "the prompt and the answers must all be text or all be messages")
    }

    /// The prompt's ids and each completion's, split at the common prefix and truncated as TRL does.
    private func tokenize(prompt: PreferenceContent, completions: [PreferenceContent], source: String) throws
        -> (prompt: [Int], completions: [[Int]], truncated: Bool) {
        let promptIDs: [Int], fullIDs: [[Int]]
        switch prompt {
        case .text(let text):
            let eos = model.eosToken
            guard !eos.isEmpty else {
                throw RowRenderError(source: source, message:
                    "\(model.name) declares no EOS token, which text preference rows need to learn to stop")
            }
            promptIDs = model.tokenizer.encode(text)
            fullIDs = try completions.map { completion in
                guard case .text(let answer) = completion else { throw mixedForms(source) }
                return model.tokenizer.encode(text + (answer.hasSuffix(eos) ? answer : answer + eos))
            }
        case .messages(let messages):
            func chat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> [Int] {
                try RenderedChat(messages, template: model.chatTemplate, model: model, addGenerationPrompt: addGenerationPrompt,
                                 source: source).ids
            }
            promptIDs = try chat(messages, addGenerationPrompt: true)
            fullIDs = try completions.map { completion in
                guard case .messages(let answer) = completion else { throw mixedForms(source) }
                return try chat(messages + answer, addGenerationPrompt: false)
            }
        }
        let promptCount = fullIDs.map { commonPrefixCount(promptIDs, $0) }.min() ?? promptIDs.count
        var answers = fullIDs.map { Array($0[promptCount...]) }
        var truncated = false
        if let maxLength {
            guard promptCount < maxLength else { throw PreferenceDrop(source: source, reason: .promptFillsMaxLength) }
            let room = maxLength - promptCount
            truncated = answers.contains { $0.count > room }
            answers = answers.map { Array($0.prefix(room)) }
        }
        return (Array(promptIDs[..<promptCount]), answers, truncated)
    }
}
