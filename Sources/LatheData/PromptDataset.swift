import Foundation
import LatheModels
import LatheTemplates

/// One prompt for RL: its tokens, its text, and the row's fields (a `reference` answer and whatever else the
/// rewards read).
public struct PromptExample: Sendable {
    public var ids: [Int]
    public var text: String
    public var fields: [String: JSONValue]
    /// The conversation so far for chat prompts (nil for plain text): a completion is its next assistant turn.
    public var messages: [ChatMessage]?
    /// "file:line".
    public var source: String

    /// The prompt and a completion as one sequence, as a reward model reads it (TRL's GRPOTrainer: the chat
    /// template over the conversation with the completion as the assistant's turn, or the two texts joined).
    public func sequence(completion: String, model: LanguageModel) throws -> [Int] {
        guard let messages else { return model.tokenizer.encode(text + completion, addSpecialTokens: false) }
        return try model.chatTokens(messages + [ChatMessage(role: "assistant", content: completion)], addGenerationPrompt: false)
    }
}

/// Loads prompts for rollouts from JSONL rows, TRL's prompt-only forms: `{"prompt": "text"}` (tokenized as it is,
/// with the tokenizer's BOS), `{"prompt": [messages]}` or `{"messages": [...]}` (the chat template with the
/// generation prompt), or `{"text": ...}`. A `messages` row that ends with the assistant's answer (SFT data) gives
/// that answer as the row's `reference` unless the row has one, and is prompted without it.
public enum PromptDataset {
    public static func load(_ url: URL, model: LanguageModel) throws -> [PromptExample] {
        let lines = try JSONLines.read(url)
        guard !lines.isEmpty else { throw BatchError(message: "\(url.path): the file has no rows") }
        return try lines.map { line in
            guard var fields = line.value.object else { throw line.error("expected a JSON object, got \(line.value.summary)") }
            let ids: [Int]
            var conversation: [ChatMessage]?
            if let prompt = fields["prompt"] {
                if let text = prompt.string {
                    ids = model.tokenizer.encode(text, addSpecialTokens: true)
                } else if prompt.array != nil {
                    conversation = try LanguageModel.chatMessages(prompt, line: line)
                    ids = try model.chatTokens(conversation!, addGenerationPrompt: true)
                } else {
                    throw line.error("field \"prompt\" must be a string or a list of messages, got \(prompt.summary)")
                }
            } else if let messagesValue = fields["messages"] {
                var messages = try LanguageModel.chatMessages(messagesValue, line: line)
                if messages.last?.role == "assistant" {
                    let answer = messages.removeLast()
                    if fields["reference"] == nil { fields["reference"] = .string(answer.content) }
                    guard !messages.isEmpty else { throw line.error("field \"messages\" has only the assistant's answer") }
                }
                conversation = messages
                ids = try model.chatTokens(messages, addGenerationPrompt: true)
            } else if let text = fields["text"] {
                guard let string = text.string else { throw line.error("field \"text\" must be a string, got \(text.summary)") }
                ids = model.tokenizer.encode(string, addSpecialTokens: true)
            } else {
                throw line.error("expected a \"prompt\", \"messages\" or \"text\" field")
            }
            guard !ids.isEmpty else { throw line.error("the prompt has no tokens") }
            return PromptExample(ids: ids, text: model.tokenizer.decode(ids), fields: fields, messages: conversation,
                                 source: "\(line.file):\(line.line)")
        }
    }
}

/// Prompts in batches of `batchSize`, for `BatchIterator`'s shuffled, resumable epochs.
public struct PromptBatchLayout: BatchLayout {
    public let batchSize: Int
    /// Leave out an epoch's last batch when it is short (PPO's rollout batches are whole, as TRL's drop_last).
    public let dropsPartialBatch: Bool
    public init(batchSize: Int, dropsPartialBatch: Bool = false) { self.batchSize = batchSize; self.dropsPartialBatch = dropsPartialBatch }
    public func rows(_ examples: [PromptExample], order: [Int]) throws -> [[Int]] {
        (dropsPartialBatch ? Array(order.prefix(order.count / batchSize * batchSize)) : order).map { [$0] }
    }
    public func batch(_ rows: [[PromptExample]]) throws -> [PromptExample] { rows.flatMap { $0 } }
}
