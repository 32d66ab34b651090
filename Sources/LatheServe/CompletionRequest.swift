import Foundation
import LatheModels
import LatheTemplates

/// What a `POST /v1/chat/completions` or `POST /v1/completions` body asks for, validated field by field: a wrong
/// type, a value out of range or a field the server does not know is a 400 naming the field.
public struct CompletionRequest: Sendable {
    public enum Endpoint: Sendable { case chat, text }
    public enum Prompt: Sendable, Equatable {
        case messages([ChatMessage])
        case text(String)
        case tokens([Int])
    }

    public var endpoint: Endpoint
    public var model: String
    public var prompt: Prompt
    /// nil: up to the context.
    public var maxTokens: Int?
    public var sampling: SamplingOptions
    public var stop: [String]
    /// nil: no log-probabilities; k: the chosen token's and k alternatives'.
    public var topLogprobs: Int?
    public var stream: Bool
    public var includeUsage: Bool

    /// Alternatives per token a request may ask for (OpenAI's cap for chat).
    public static let maximumTopLogprobs = 20

    static let chatFields: Set<String> = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature",
                                          "top_p", "seed", "stop", "n", "logprobs", "top_logprobs", "stream",
                                          "stream_options", "user"]
    static let textFields: Set<String> = ["model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "n",
                                          "logprobs", "stream", "stream_options", "user", "echo"]

    /// Parses a request body; `seed` is drawn when the body gives none (a sampled answer then differs each time).
    public static func parse(_ body: Data, endpoint: Endpoint, randomSeed: () -> UInt64 = { .random(in: 0 ... .max) }) throws -> CompletionRequest {
        let value: JSONValue
        do { value = try JSONValue.parse(body) } catch {
            throw APIError.invalid("The body is not valid JSON: \(error)")
        }
        guard case .object(let object) = value else { throw APIError.invalid("The body must be a JSON object") }
        let fields = requestFields(object)
        let known = endpoint == .chat ? chatFields : textFields
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw APIError.invalid("Unrecognized request argument supplied: \(unknown)", param: unknown)
        }

        let model = try fields.optionalString("model") ?? ""
        guard !model.isEmpty else { throw APIError.invalid("you must provide a model parameter", param: "model") }
        let prompt: Prompt
        switch endpoint {
        case .chat: prompt = .messages(try messages(object["messages"]))
        case .text: prompt = try textPrompt(object["prompt"])
        }
        if let n = try fields.optionalInt("n"), n != 1 {
            throw APIError.invalid("n must be 1 (one answer per request), got \(n)", param: "n")
        }
        if endpoint == .text, try fields.optionalBool("echo") == true {
            throw APIError.invalid("echo is not supported", param: "echo")
        }
        let maxTokens = try fields.optionalInt("max_completion_tokens") ?? fields.optionalInt("max_tokens") ?? (endpoint == .text ? 16 : nil)
        if let maxTokens, maxTokens < 1 {
            throw APIError.invalid("max_tokens must be at least 1, got \(maxTokens)", param: "max_tokens")
        }
        let temperature = try fields.optionalDouble("temperature") ?? 1
        guard (0...2).contains(temperature) else {
            throw APIError.invalid("temperature must be between 0 and 2, got \(temperature)", param: "temperature")
        }
        let topP = try fields.optionalDouble("top_p") ?? 1
        guard topP > 0 && topP <= 1 else { throw APIError.invalid("top_p must be in (0, 1], got \(topP)", param: "top_p") }
        let seed = try fields.optionalInt("seed").map { UInt64(bitPattern: Int64($0)) } ?? randomSeed()

        let topLogprobs: Int?
        switch endpoint {
        case .chat:
            let wanted = try fields.optionalBool("logprobs") ?? false
            let top = try fields.optionalInt("top_logprobs")
            if top != nil && !wanted {
                throw APIError.invalid("top_logprobs needs logprobs set to true", param: "top_logprobs")
            }
            topLogprobs = wanted ? (top ?? 0) : nil
        case .text:
            topLogprobs = try fields.optionalInt("logprobs")
        }
        if let topLogprobs, !(0...maximumTopLogprobs).contains(topLogprobs) {
            throw APIError.invalid("top_logprobs must be between 0 and \(maximumTopLogprobs), got \(topLogprobs)",
                                   param: endpoint == .chat ? "top_logprobs" : "logprobs")
        }
        let stream = try fields.optionalBool("stream") ?? false
        var includeUsage = false
        if let options = object["stream_options"], options != .null {
            guard case .object(let o) = options else {
                throw APIError.invalid("stream_options must be an object", param: "stream_options")
            }
            guard stream else { throw APIError.invalid("stream_options needs stream set to true", param: "stream_options") }
            if let extra = o.keys.first(where: { $0 != "include_usage" }) {
                throw APIError.invalid("Unrecognized stream option: \(extra)", param: "stream_options.\(extra)")
            }
            includeUsage = try requestFields(o, prefix: "stream_options.").optionalBool("include_usage") ?? false
        }
        _ = try fields.optionalString("user")
        return CompletionRequest(endpoint: endpoint, model: model, prompt: prompt, maxTokens: maxTokens,
                                 sampling: SamplingOptions(temperature: Float(temperature), topP: Float(topP), seed: seed),
                                 stop: try stopStrings(object["stop"]), topLogprobs: topLogprobs, stream: stream,
                                 includeUsage: includeUsage)
    }

    /// `messages`: roles and contents, a content being a string or a list of text parts.
    static func messages(_ value: JSONValue?) throws -> [ChatMessage] {
        guard case .array(let list)? = value, !list.isEmpty else {
            throw APIError.invalid("messages must be a non-empty array", param: "messages")
        }
        return try list.enumerated().map { index, message in
            let param = "messages[\(index)]"
            guard case .object(let o) = message else { throw APIError.invalid("\(param) must be an object", param: param) }
            guard let role = o["role"]?.string, ["system", "developer", "user", "assistant"].contains(role) else {
                throw APIError.invalid("\(param).role must be one of system, developer, user, assistant", param: param + ".role")
            }
            let content: String
            switch o["content"] {
            case .string(let text)?: content = text
            case .array(let parts)?:
                content = try parts.enumerated().map { p, part in
                    guard part["type"]?.string == "text", let text = part["text"]?.string else {
                        throw APIError.invalid("\(param).content[\(p)] must be a text part ({\"type\": \"text\", \"text\": ...})",
                                               param: "\(param).content[\(p)]")
                    }
                    return text
                }.joined()
            default: throw APIError.invalid("\(param).content must be a string or a list of text parts", param: param + ".content")
            }
            // The chat templates know system, user and assistant; OpenAI's newer `developer` is its system message.
            return ChatMessage(role: role == "developer" ? "system" : role, content: content)
        }
    }

    /// `prompt`: a string, a one-string list, or token ids.
    static func textPrompt(_ value: JSONValue?) throws -> Prompt {
        switch value {
        case .string(let text)?: return .text(text)
        case .array(let items)? where items.count == 1 && items[0].string != nil: return .text(items[0].string!)
        case .array(let items)? where !items.isEmpty && items.allSatisfy({ $0.int != nil }):
            return .tokens(items.map { $0.int! })
        default:
            throw APIError.invalid("prompt must be a string, a list of one string, or a list of token ids", param: "prompt")
        }
    }

    /// `stop`: a string or up to four strings.
    static func stopStrings(_ value: JSONValue?) throws -> [String] {
        switch value {
        case nil, .null?: return []
        case .string(let s)?: return s.isEmpty ? [] : [s]
        case .array(let items)? where items.count <= 4 && items.allSatisfy({ $0.string != nil }):
            return items.compactMap(\.string).filter { !$0.isEmpty }
        default: throw APIError.invalid("stop must be a string or a list of up to 4 strings", param: "stop")
        }
    }

    /// Field reads whose errors are 400s naming the field.
    static func requestFields(_ object: [String: JSONValue], prefix: String = "") -> JSONFields {
        JSONFields(object: object, prefix: prefix) { field, message in APIError.invalid(message, param: field) }
    }
}
