import Foundation
import LatheModels

/// The bodies OpenAI's API answers with, for both endpoints, whole and streamed (`chat.completion`,
/// `chat.completion.chunk`, `text_completion`).
struct Usage: Encodable, Equatable {
    let prompt_tokens: Int, completion_tokens: Int, total_tokens: Int

    init(prompt: Int, completion: Int) {
        prompt_tokens = prompt; completion_tokens = completion; total_tokens = prompt + completion
    }
}

/// One token's log-probability as chat completions give it (`bytes` are the token's UTF-8 bytes).
struct ChatTokenLogprob: Encodable {
    struct Alternative: Encodable { let token: String, logprob: Float, bytes: [UInt8] }
    let token: String, logprob: Float, bytes: [UInt8]
    let top_logprobs: [Alternative]
}

struct ChatLogprobs: Encodable { let content: [ChatTokenLogprob] }

/// Legacy completions' log-probabilities: parallel lists, and the alternatives as token → log-probability maps.
struct TextLogprobs: Encodable {
    var tokens: [String] = [], token_logprobs: [Float] = [], top_logprobs: [[String: Float]] = [], text_offset: [Int] = []
}

/// A value that is written as JSON `null` when absent (OpenAI writes `"logprobs": null`, `"finish_reason": null`).
struct Nullable<Wrapped: Encodable>: Encodable {
    let value: Wrapped?
    init(_ value: Wrapped?) { self.value = value }
    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if let value { try c.encode(value) } else { try c.encodeNil() }
    }
}

struct ChatMessageBody: Encodable { let role: String, content: String }
struct ChatDelta: Encodable { var role: String? = nil; var content: String? = nil }

struct ChatChoice: Encodable {
    let index: Int, message: ChatMessageBody, logprobs: Nullable<ChatLogprobs>, finish_reason: String
}
struct ChatChunkChoice: Encodable {
    let index: Int, delta: ChatDelta, logprobs: Nullable<ChatLogprobs>, finish_reason: Nullable<String>
}
struct TextChoice: Encodable {
    let index: Int, text: String, logprobs: Nullable<TextLogprobs>, finish_reason: Nullable<String>
}

/// The envelope every answer and chunk shares; `usage` is left out of chunks that carry none.
struct CompletionBody<Choice: Encodable>: Encodable {
    let id: String, object: String, created: Int, model: String
    let choices: [Choice]
    var usage: Usage? = nil

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(object, forKey: .object); try c.encode(created, forKey: .created)
        try c.encode(model, forKey: .model); try c.encode(choices, forKey: .choices)
        try c.encodeIfPresent(usage, forKey: .usage)
    }
    enum CodingKeys: String, CodingKey { case id, object, created, model, choices, usage }
}

/// `GET /v1/models`: the base and each adapter, an adapter naming the base as its parent (vLLM's listing).
struct ModelList: Encodable {
    struct Entry: Encodable {
        let id: String, object = "model", created: Int, owned_by = "lathe", root: String
        let parent: Nullable<String>
    }
    let object = "list"
    let data: [Entry]
}

/// Encodes a body compactly, slashes and non-ASCII text as they are.
func encodeJSON<T: Encodable>(_ value: T) -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes]
    // Every body here is made of strings, numbers and lists: encoding cannot fail.
    return (try? encoder.encode(value)) ?? Data("{}".utf8)
}
