import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One message of a chat-completion request.
public struct ChatCompletionMessage: Sendable, Equatable, Codable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

/// Anything that answers chat messages with text: the HTTP client, or a scripted stand-in in tests.
public protocol ChatCompleting {
    func complete(_ messages: [ChatCompletionMessage], temperature: Double, maxTokens: Int?, seed: Int?) throws -> String
}

/// How often and how long to wait before trying a failed request again.
public struct RetryPolicy: Sendable, Equatable {
    /// Retries after the first attempt; 0 means one attempt only.
    public var maxRetries: Int
    /// The wait before the first retry, in seconds; each later wait is `factor` times longer, up to `maxDelay`.
    public var initialDelay: TimeInterval
    public var factor: Double
    public var maxDelay: TimeInterval

    public init(maxRetries: Int = 4, initialDelay: TimeInterval = 1, factor: Double = 2, maxDelay: TimeInterval = 60) {
        self.maxRetries = maxRetries; self.initialDelay = initialDelay; self.factor = factor; self.maxDelay = maxDelay
    }

    /// The wait before retry number `retry` (0 for the first), or the server's `Retry-After` when it gave one.
    public func delay(beforeRetry retry: Int, retryAfter: TimeInterval?) -> TimeInterval {
        if let retryAfter { return min(retryAfter, maxDelay) }
        return min(initialDelay * pow(factor, Double(retry)), maxDelay)
    }
}

/// Requests, attempts and retries made so far, for reporting how healthy the endpoint was.
public struct ChatCompletionCounts: Sendable, Equatable, Codable {
    /// Calls of `complete`.
    public var requests = 0
    /// HTTP requests sent (one per attempt).
    public var attempts = 0
    public var retries = 0
    /// Calls that failed after all their retries.
    public var failures = 0
    public init() {}
}

/// A request that failed for good: it names the URL, the HTTP status when there was one and what the server said.
public struct RemoteError: Error, CustomStringConvertible, Equatable {
    public let url: URL
    /// The HTTP status of the last attempt; nil when no response came (timeout, connection refused).
    public let status: Int?
    public let attempts: Int
    public let reason: String
    /// The start of the response body, for telling what went wrong.
    public let bodyExcerpt: String

    public var description: String {
        var text = "POST \(url.absoluteString)"
        if let status { text += ": HTTP \(status)" }
        text += ": \(reason) (after \(attempts) attempt\(attempts == 1 ? "" : "s"))"
        if !bodyExcerpt.isEmpty { text += "; body: \(bodyExcerpt)" }
        return text
    }
}

/// A synchronous client for OpenAI-compatible `chat/completions` endpoints (OpenAI, vLLM, llama.cpp's server,
/// Ollama, ...), with retries and exponential backoff on timeouts, connection errors, 429 and 5xx.
public final class ChatCompletionClient: ChatCompleting, @unchecked Sendable {
    /// The full URL requests go to.
    public let endpoint: URL
    public let model: String
    public let timeout: TimeInterval
    public let retry: RetryPolicy
    private let apiKey: String?
    private let sleep: (TimeInterval) -> Void
    private let session: URLSession
    private let lock = NSLock()
    private var _counts = ChatCompletionCounts()

    /// - Parameters:
    ///   - baseURL: the API root. A URL ending in `/chat/completions` is used as is; one ending in `/v1` gets
    ///     `/chat/completions` appended; any other gets `/v1/chat/completions`. So `http://host:8000`,
    ///     `http://host:8000/v1` and `https://api.openai.com/v1` all work.
    ///   - apiKey: sent as `Authorization: Bearer KEY` when given (local servers usually need none).
    ///   - timeout: seconds without a byte from the server before an attempt is abandoned (and retried); whole
    ///     seconds, rounded up, on Linux.
    ///   - sleep: waits between attempts; tests pass one that records the waits instead.
    public init(baseURL: URL, model: String, apiKey: String?, timeout: TimeInterval = 60, retry: RetryPolicy = RetryPolicy(),
                sleep: @escaping (TimeInterval) -> Void = { Thread.sleep(forTimeInterval: $0) }) {
        self.endpoint = Self.endpoint(for: baseURL)
        self.model = model; self.apiKey = apiKey; self.timeout = timeout; self.retry = retry; self.sleep = sleep
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = Self.requestTimeout(timeout)
        session = URLSession(configuration: configuration)
    }

    /// corelibs Foundation (Linux) truncates request timeouts to whole seconds, so that 0.5 s times out at once:
    /// round up to at least one second there.
    static func requestTimeout(_ timeout: TimeInterval) -> TimeInterval {
        #if canImport(FoundationNetworking)
        return max(1, timeout.rounded(.up))
        #else
        return timeout
        #endif
    }

    deinit { session.finishTasksAndInvalidate() }

    public var counts: ChatCompletionCounts { lock.lock(); defer { lock.unlock() }; return _counts }

    static func endpoint(for baseURL: URL) -> URL {
        let path = baseURL.path.hasSuffix("/") ? String(baseURL.path.dropLast()) : baseURL.path
        if path.hasSuffix("/chat/completions") { return baseURL }
        let root = path.hasSuffix("/v1") ? baseURL : baseURL.appendingPathComponent("v1")
        return root.appendingPathComponent("chat").appendingPathComponent("completions")
    }

    /// The request body, as OpenAI's API defines it.
    struct RequestBody: Encodable {
        let model: String
        let messages: [ChatCompletionMessage]
        let temperature: Double
        let max_tokens: Int?
        let seed: Int?
    }

    /// The text of the first choice. Throws `RemoteError` when every attempt failed, on a 4xx other than 429,
    /// and on a reply that is not JSON or has no `choices[0].message.content`.
    public func complete(_ messages: [ChatCompletionMessage], temperature: Double = 0, maxTokens: Int? = nil,
                         seed: Int? = nil) throws -> String {
        update { $0.requests += 1 }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let body = try encoder.encode(RequestBody(model: model, messages: messages, temperature: temperature,
                                                  max_tokens: maxTokens, seed: seed))
        var request = URLRequest(url: endpoint, timeoutInterval: Self.requestTimeout(timeout))
        request.httpMethod = "POST"
        request.httpBody = body
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        if let apiKey, !apiKey.isEmpty { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization") }

        var attempt = 0
        while true {
            attempt += 1
            update { $0.attempts += 1 }
            let failure: RemoteError
            var retryAfter: TimeInterval?
            switch send(request) {
            case .transport(let error):
                failure = RemoteError(url: endpoint, status: nil, attempts: attempt, reason: Self.describe(error), bodyExcerpt: "")
                guard Self.isTransient(error) else { return try fail(failure) }
            case .response(let status, let headers, let data):
                if (200..<300).contains(status) {
                    do { return try Self.content(of: data) } catch let reason as MalformedReply {
                        return try fail(RemoteError(url: endpoint, status: status, attempts: attempt, reason: reason.message,
                                                    bodyExcerpt: Self.excerpt(data)))
                    }
                }
                failure = RemoteError(url: endpoint, status: status, attempts: attempt,
                                      reason: HTTPURLResponse.localizedString(forStatusCode: status), bodyExcerpt: Self.excerpt(data))
                guard status == 429 || status >= 500 else { return try fail(failure) }
                retryAfter = headers["retry-after"].flatMap { Self.retryAfterSeconds($0, now: Date()) }
            }
            guard attempt <= retry.maxRetries else { return try fail(failure) }
            update { $0.retries += 1 }
            sleep(retry.delay(beforeRetry: attempt - 1, retryAfter: retryAfter))
        }
    }

    /// A `Retry-After` header's wait: delay-seconds, or an HTTP date (RFC 9110) counted from `now`.
    static func retryAfterSeconds(_ value: String, now: Date) -> TimeInterval? {
        let text = value.trimmingCharacters(in: .whitespaces)
        if let seconds = TimeInterval(text) { return max(0, seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text).map { max(0, $0.timeIntervalSince(now)) }
    }

    private func fail(_ error: RemoteError) throws -> String {
        update { $0.failures += 1 }
        throw error
    }

    private func update(_ change: (inout ChatCompletionCounts) -> Void) {
        lock.lock(); defer { lock.unlock() }
        change(&_counts)
    }

    private func send(_ request: URLRequest) -> HTTPExchange.Outcome { HTTPExchange.send(request, session: session) }

    /// Timeouts and lost or refused connections may pass; a bad URL or an unsupported scheme will not.
    static func isTransient(_ error: Error) -> Bool {
        guard let error = error as? URLError else { return false }
        let transient: Set<URLError.Code> = [.timedOut, .cannotConnectToHost, .networkConnectionLost, .cannotFindHost,
                                             .dnsLookupFailed, .notConnectedToInternet, .badServerResponse,
                                             .zeroByteResource, .cannotParseResponse]
        return transient.contains(error.code)
    }

    static func describe(_ error: Error) -> String {
        if let error = error as? URLError {
            return error.code == .timedOut ? "timed out" : "connection failed (URLError \(error.code.rawValue): \(error.localizedDescription))"
        }
        return "\(error)"
    }

    struct MalformedReply: Error { let message: String }

    /// `choices[0].message.content` of a reply; a reply without it is an error, never an empty answer.
    static func content(of data: Data) throws -> String {
        guard let object = try? JSONSerialization.jsonObject(with: data) else {
            throw MalformedReply(message: "the reply is not valid JSON")
        }
        guard let reply = object as? [String: Any], let choices = reply["choices"] as? [Any] else {
            throw MalformedReply(message: "the reply has no \"choices\" array")
        }
        guard let first = choices.first as? [String: Any], let message = first["message"] as? [String: Any],
              let content = message["content"] as? String else {
            throw MalformedReply(message: "the reply has no choices[0].message.content string")
        }
        return content
    }

    static func excerpt(_ data: Data, limit: Int = 200) -> String {
        let text = String(decoding: data.prefix(limit * 4), as: UTF8.self).replacingOccurrences(of: "\n", with: " ")
        return text.count > limit ? String(text.prefix(limit)) + "…" : text
    }
}
