import Foundation
import LatheData
import LatheModels

/// One prompt of a base-versus-tuned comparison, the answers it is scored against, and where it came from.
public struct CompareExample: Sendable {
    /// How the prompt reaches the model.
    public enum Prompt: Sendable, Equatable {
        /// A conversation, rendered by the chat template with the generation prompt.
        case messages([ChatMessage])
        /// A `{"prompt": ...}` string: one user message through the chat template, or plain text when the model has none.
        case userText(String)
        /// The prompt of a prompt/completion training row: plain text, tokenized as training tokenized it.
        case plainText(String)
    }

    /// `file:line` of the row.
    public let source: String
    public let line: JSONLine
    public let prompt: Prompt
    /// One or more references; perplexity is scored on the first.
    public let references: [String]

    public init(line: JSONLine, prompt: Prompt, references: [String]) {
        self.source = "\(line.file):\(line.line)"
        self.line = line
        self.prompt = prompt
        self.references = references
    }

    /// The prompt as shown in reports.
    public var promptText: String {
        switch prompt {
        case .messages(let messages): return messages.map { "\($0.role): \($0.content)" }.joined(separator: "\n")
        case .userText(let text), .plainText(let text): return text
        }
    }

    /// The prompt's token ids for `lm`, ready for generation.
    public func promptTokens(_ lm: LanguageModel) throws -> [Int] {
        switch prompt {
        case .messages(let messages): return try lm.chatTokens(messages, addGenerationPrompt: true)
        case .userText(let text):
            if lm.chatTemplate != nil { return try lm.chatTokens([ChatMessage(role: "user", content: text)], addGenerationPrompt: true) }
            return lm.tokenizer.prefixIDs + lm.tokenizer.encode(text, addSpecialTokens: false)
        case .plainText(let text): return lm.tokenizer.prefixIDs + lm.tokenizer.encode(text, addSpecialTokens: false)
        }
    }

    /// The row whose supervised tokens are the first reference after this prompt, as training renders it, so that
    /// `PerplexityReport` scores the reference (and the end-of-turn token training would teach) under the model.
    public func referenceRow(hasChatTemplate: Bool) -> DatasetRow {
        let reference = references[0]
        switch prompt {
        case .messages(let messages):
            return DatasetRow(line: line, format: .messages,
                              record: .messages(messages + [ChatMessage(role: "assistant", content: reference)]))
        case .userText(let text) where hasChatTemplate:
            return DatasetRow(line: line, format: .messages, record: .messages([ChatMessage(role: "user", content: text),
                                                                                 ChatMessage(role: "assistant", content: reference)]))
        case .userText(let text), .plainText(let text):
            return DatasetRow(line: line, format: .promptCompletion, record: .promptCompletion(prompt: text, completion: reference))
        }
    }

    /// Reads a comparison set (JSONL, or CSV by extension). Rows with a `reference` field are
    /// `{"prompt": "...", "reference": ...}` or `{"messages": [...], "reference": ...}` (a reference is a string or a
    /// list of strings). Otherwise the file is training data read by `DatasetReader`, and each row's held-out answer is
    /// the reference: the completion of a prompt/completion row, the final assistant turn of a conversation (messages,
    /// Alpaca, ShareGPT). Errors name the file and line.
    public static func read(_ url: URL) throws -> [CompareExample] {
        let lines = try DatasetReader.readLines(url)
        guard let first = lines.first else { throw EvalError.invalidInput("\(url.path): no rows to compare") }
        if first.value.object?["reference"] != nil { return try lines.map(explicit) }
        return try DatasetReader.read(url).map(heldOut)
    }

    /// A `{"prompt" or "messages", "reference"}` row.
    static func explicit(_ line: JSONLine) throws -> CompareExample {
        guard let object = line.value.object else { throw line.error("expected a JSON object, got \(line.value.summary)") }
        guard let referenceValue = object["reference"] else {
            throw line.error("missing field \"reference\" (the first row has one, so every row needs one)")
        }
        let references: [String]
        if let single = referenceValue.string {
            references = [single]
        } else if let list = referenceValue.array, !list.isEmpty {
            references = try list.enumerated().map { index, item in
                guard let text = item.string else { throw line.error("field \"reference\"[\(index)] must be a string, got \(item.summary)") }
                return text
            }
        } else {
            throw line.error("field \"reference\" must be a string or a non-empty list of strings, got \(referenceValue.summary)")
        }
        if let messages = object["messages"] {
            return CompareExample(line: line, prompt: .messages(try LanguageModel.chatMessages(messages, line: line)), references: references)
        }
        guard let promptValue = object["prompt"] else { throw line.error("expected a \"prompt\" or a \"messages\" field beside \"reference\"") }
        guard let prompt = promptValue.string else { throw line.error("field \"prompt\" must be a string, got \(promptValue.summary)") }
        return CompareExample(line: line, prompt: .userText(prompt), references: references)
    }

    /// A training row whose answer is held out as the reference.
    static func heldOut(_ row: DatasetRow) throws -> CompareExample {
        switch row.record {
        case .promptCompletion(let prompt, let completion):
            return CompareExample(line: row.line, prompt: .plainText(prompt), references: [completion])
        case .messages(let messages):
            guard let last = messages.last, last.role == "assistant" else {
                throw row.line.error("the conversation must end with an assistant turn (its held-out answer), or give a \"reference\" field")
            }
            guard messages.count > 1 else { throw row.line.error("the conversation has only the assistant turn: nothing to prompt with") }
            return CompareExample(line: row.line, prompt: .messages(Array(messages.dropLast())), references: [last.content])
        case .text, .preference, .kto:
            throw row.line.error("a \(row.format.rawValue) row has no held-out answer to compare against; give "
                + "{\"prompt\", \"reference\"}, {\"messages\", \"reference\"}, prompt/completion or conversation rows")
        }
    }
}
