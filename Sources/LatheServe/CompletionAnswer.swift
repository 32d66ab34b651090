import Foundation
import LatheModels

/// Builds one request's answer from the decoder's events: whole (`add` each event, then `whole()`) or as stream
/// chunks (`openingChunks()`, then `chunks(for:)` per event), in the shape of the endpoint it came to.
struct CompletionAnswer {
    let request: CompletionRequest
    let service: ModelService
    let id: String
    let created = Int(Date().timeIntervalSince1970)
    private(set) var text = ""
    private(set) var finish: FinishReason?
    private(set) var usage: Usage?
    /// Why the decoder gave up on the request (its adapter was unloaded), if it did.
    private(set) var failure: String?
    private var chatLogprobs: [ChatTokenLogprob] = []
    private var textLogprobs = TextLogprobs()

    init(request: CompletionRequest, service: ModelService) {
        self.request = request; self.service = service
        id = (request.endpoint == .chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
    }

    var wantsLogprobs: Bool { request.topLogprobs != nil }

    mutating func add(_ event: DecodeEvent) {
        switch event {
        case .token(let token):
            if wantsLogprobs {
                switch request.endpoint {
                case .chat: chatLogprobs.append(chatEntry(token))
                case .text: appendTextEntry(token, offset: text.count, to: &textLogprobs)
                }
            }
            text += token.text
        case .finished(let reason, let prompt, let completion):
            finish = reason
            usage = Usage(prompt: prompt, completion: completion)
        case .failed(let message):
            failure = message
        }
    }

    private var failureError: APIError? {
        failure.map { APIError(.serviceUnavailable, "the request was stopped: \($0)", type: "server_error") }
    }

    /// The whole answer's body.
    func whole() throws -> Data {
        if let failureError { throw failureError }
        let usage = usage ?? Usage(prompt: 0, completion: 0)
        let reason = (finish ?? .length).rawValue
        switch request.endpoint {
        case .chat:
            let choice = ChatChoice(index: 0, message: ChatMessageBody(role: "assistant", content: text),
                                    logprobs: Nullable(wantsLogprobs ? ChatLogprobs(content: chatLogprobs) : nil),
                                    finish_reason: reason)
            return encodeJSON(CompletionBody(id: id, object: "chat.completion", created: created, model: request.model,
                                             choices: [choice], usage: usage))
        case .text:
            let choice = TextChoice(index: 0, text: text, logprobs: Nullable(wantsLogprobs ? textLogprobs : nil),
                                    finish_reason: Nullable(reason))
            return encodeJSON(CompletionBody(id: id, object: "text_completion", created: created, model: request.model,
                                             choices: [choice], usage: usage))
        }
    }

    /// Chat streams open with the assistant's role, as OpenAI's do.
    func openingChunks() -> [Data] {
        guard request.endpoint == .chat else { return [] }
        return [chatChunk(ChatDelta(role: "assistant", content: ""), logprobs: nil, finish: nil)]
    }

    /// The chunks one event adds to a stream: a token's text (and log-probabilities); at the end the finish reason
    /// and, with `stream_options.include_usage`, a last chunk with no choices and the usage.
    mutating func chunks(for event: DecodeEvent) -> [Data] {
        add(event)
        switch event {
        case .token(let token):
            guard !token.text.isEmpty || wantsLogprobs else { return [] }
            switch request.endpoint {
            case .chat:
                return [chatChunk(ChatDelta(content: token.text),
                                  logprobs: wantsLogprobs ? ChatLogprobs(content: [chatEntry(token)]) : nil, finish: nil)]
            case .text:
                var entry = TextLogprobs()
                if wantsLogprobs { appendTextEntry(token, offset: text.count - token.text.count, to: &entry) }
                return [textChunk(token.text, logprobs: wantsLogprobs ? entry : nil, finish: nil)]
            }
        case .finished(let reason, _, _):
            var chunks = [request.endpoint == .chat ? chatChunk(ChatDelta(), logprobs: nil, finish: reason.rawValue)
                                                    : textChunk("", logprobs: nil, finish: reason.rawValue)]
            if request.includeUsage, let usage {
                chunks.append(request.endpoint == .chat
                    ? encodeJSON(CompletionBody<ChatChunkChoice>(id: id, object: "chat.completion.chunk", created: created,
                                                                 model: request.model, choices: [], usage: usage))
                    : encodeJSON(CompletionBody<TextChoice>(id: id, object: "text_completion", created: created,
                                                            model: request.model, choices: [], usage: usage)))
            }
            return chunks
        case .failed:
            // A stream that has begun cannot change its status: the error comes as a last event, as OpenAI's do.
            return failureError.map { [encodeJSON($0.body)] } ?? []
        }
    }

    private func chatChunk(_ delta: ChatDelta, logprobs: ChatLogprobs?, finish: String?) -> Data {
        encodeJSON(CompletionBody(id: id, object: "chat.completion.chunk", created: created, model: request.model,
                                  choices: [ChatChunkChoice(index: 0, delta: delta, logprobs: Nullable(logprobs),
                                                            finish_reason: Nullable(finish))]))
    }

    private func textChunk(_ text: String, logprobs: TextLogprobs?, finish: String?) -> Data {
        encodeJSON(CompletionBody(id: id, object: "text_completion", created: created, model: request.model,
                                  choices: [TextChoice(index: 0, text: text, logprobs: Nullable(logprobs),
                                                       finish_reason: Nullable(finish))]))
    }

    private func chatEntry(_ token: DecodedToken) -> ChatTokenLogprob {
        let text = service.tokenText(token.id)
        return ChatTokenLogprob(token: text, logprob: finite(token.logprob), bytes: Array(text.utf8),
                                top_logprobs: token.top.map { alternative in
                                    let t = service.tokenText(alternative.id)
                                    return .init(token: t, logprob: finite(alternative.logprob), bytes: Array(t.utf8))
                                })
    }

    private func appendTextEntry(_ token: DecodedToken, offset: Int, to entry: inout TextLogprobs) {
        entry.tokens.append(service.tokenText(token.id))
        entry.token_logprobs.append(finite(token.logprob))
        entry.top_logprobs.append(Dictionary(token.top.map { (service.tokenText($0.id), finite($0.logprob)) },
                                             uniquingKeysWith: { first, _ in first }))
        entry.text_offset.append(offset)
    }
}

/// JSON has no −∞: an impossible token gets vLLM's −9999.
private func finite(_ value: Float?) -> Float {
    guard let value, value.isFinite else { return -9999 }
    return value
}
