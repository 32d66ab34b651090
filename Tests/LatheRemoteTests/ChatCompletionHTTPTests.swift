import Foundation
import LatheRemote
import LatheTestSupport
import XCTest

/// The chat-completion client over real HTTP against a loopback server that scripts each reply. Timeouts are
/// 1 s and waits between attempts are recorded instead of slept, so the tests take well under a second each.
final class ChatCompletionHTTPTests: XCTestCase {
    /// Records the waits the client asks for.
    final class Waits: @unchecked Sendable {
        private let lock = NSLock()
        private var _values: [TimeInterval] = []
        var values: [TimeInterval] { lock.lock(); defer { lock.unlock() }; return _values }
        func record(_ value: TimeInterval) { lock.lock(); _values.append(value); lock.unlock() }
    }

    let messages = [ChatCompletionMessage(role: "user", content: "2+2?")]
    let waits = Waits()

    func client(_ server: ChatCompletionTestServer, retries: Int = 4, key: String? = nil) -> ChatCompletionClient {
        ChatCompletionClient(baseURL: server.baseURL, model: "judge-1", apiKey: key, timeout: 1,
                             retry: RetryPolicy(maxRetries: retries, initialDelay: 0.01, factor: 2, maxDelay: 5),
                             sleep: { [waits] in waits.record($0) })
    }

    func testARequestCarriesTheModelMessagesOptionsAndKey() throws {
        let server = try ChatCompletionTestServer(script: [.answer("4")])
        defer { server.stop() }
        let answer = try client(server, key: "sk-test").complete(messages, temperature: 0, maxTokens: 16, seed: 7)
        XCTAssertEqual(answer, "4")
        let request = try XCTUnwrap(server.requests.first)
        XCTAssertEqual(request.method, "POST")
        XCTAssertEqual(request.path, "/v1/chat/completions")
        XCTAssertEqual(request.headers["authorization"], "Bearer sk-test")
        let body = try XCTUnwrap(JSONSerialization.jsonObject(with: request.body) as? [String: Any])
        XCTAssertEqual(body["model"] as? String, "judge-1")
        XCTAssertEqual(body["max_tokens"] as? Int, 16)
        XCTAssertEqual(body["seed"] as? Int, 7)
        XCTAssertEqual(body["temperature"] as? Double, 0)
        let sent = try XCTUnwrap(body["messages"] as? [[String: String]])
        XCTAssertEqual(sent, [["role": "user", "content": "2+2?"]])
    }

    func testNoKeyNoAuthorizationHeader() throws {
        let server = try ChatCompletionTestServer(script: [.answer("4")])
        defer { server.stop() }
        _ = try client(server).complete(messages, temperature: 0, maxTokens: nil, seed: nil)
        XCTAssertNil(server.requests.first?.headers["authorization"])
        let body = try XCTUnwrap(JSONSerialization.jsonObject(with: try XCTUnwrap(server.requests.first).body) as? [String: Any])
        XCTAssertNil(body["seed"] as? Int)
    }

    func testTimeout429And500AreRetriedUntilAnAnswer() throws {
        let server = try ChatCompletionTestServer(script: [
            .stall(2), .raw(status: 429, body: #"{"error":"slow down"}"#, headers: ["Retry-After": "3"]),
            .raw(status: 500, body: "oops"), .raw(status: 503, body: ""), .answer("finally")])
        defer { server.stop() }
        let client = client(server)
        XCTAssertEqual(try client.complete(messages, temperature: 0, maxTokens: nil, seed: nil), "finally")
        XCTAssertEqual(server.requests.count, 5)
        // Backoff 0.01 · 2^n, except after the 429, which waits what its Retry-After said.
        XCTAssertEqual(waits.values, [0.01, 3, 0.04, 0.08])
        var expected = ChatCompletionCounts()
        expected.requests = 1; expected.attempts = 5; expected.retries = 4
        XCTAssertEqual(client.counts, expected)
    }

    func testATimeoutUnderOneSecondStillWaits() throws {
        // corelibs Foundation truncates a request timeout to whole seconds (0.5 s would time out at once); the
        // client rounds it up instead.
        let server = try ChatCompletionTestServer(script: [.late(0.1, "in time")])
        defer { server.stop() }
        let client = ChatCompletionClient(baseURL: server.baseURL, model: "m", apiKey: nil, timeout: 0.5,
                                          retry: RetryPolicy(maxRetries: 0))
        XCTAssertEqual(try client.complete(messages, temperature: 0, maxTokens: nil, seed: nil), "in time")
    }

    func testExhaustedRetriesNameTheURLStatusAndBody() throws {
        let server = try ChatCompletionTestServer(script: [.raw(status: 502, body: "bad gateway: upstream down")])
        defer { server.stop() }
        let client = client(server, retries: 2)
        XCTAssertThrowsError(try client.complete(messages, temperature: 0, maxTokens: nil, seed: nil)) { error in
            let remote = error as? RemoteError
            XCTAssertEqual(remote?.status, 502)
            XCTAssertEqual(remote?.attempts, 3)
            XCTAssertEqual(remote?.url.absoluteString, "http://127.0.0.1:\(server.port)/v1/chat/completions")
            XCTAssertTrue("\(error)".contains("bad gateway: upstream down"), "\(error)")
        }
        XCTAssertEqual(server.requests.count, 3)
        XCTAssertEqual(client.counts.failures, 1)
    }

    func testTimeoutsAloneExhaustTheRetries() throws {
        let server = try ChatCompletionTestServer(script: [.stall(2)])
        defer { server.stop() }
        XCTAssertThrowsError(try client(server, retries: 1).complete(messages, temperature: 0, maxTokens: nil, seed: nil)) { error in
            XCTAssertNil((error as? RemoteError)?.status)
            XCTAssertEqual((error as? RemoteError)?.attempts, 2)
            XCTAssertTrue("\(error)".contains("timed out"), "\(error)")
        }
    }

    func testOther4xxIsNotRetried() throws {
        let server = try ChatCompletionTestServer(script: [.raw(status: 401, body: #"{"error":"invalid api key"}"#), .answer("never")])
        defer { server.stop() }
        XCTAssertThrowsError(try client(server).complete(messages, temperature: 0, maxTokens: nil, seed: nil)) { error in
            XCTAssertEqual((error as? RemoteError)?.status, 401)
            XCTAssertTrue("\(error)".contains("invalid api key"), "\(error)")
        }
        XCTAssertEqual(server.requests.count, 1)
        XCTAssertEqual(waits.values, [])
    }

    func testMalformedJSONAndMissingChoicesAreErrorsNotEmptyAnswers() throws {
        let server = try ChatCompletionTestServer(script: [.raw(status: 200, body: #"{"choices": [{"mess"#),
                                                           .raw(status: 200, body: #"{"object": "chat.completion"}"#)])
        defer { server.stop() }
        let client = client(server)
        XCTAssertThrowsError(try client.complete(messages, temperature: 0, maxTokens: nil, seed: nil)) { error in
            XCTAssertEqual((error as? RemoteError)?.status, 200)
            XCTAssertTrue("\(error)".contains("not valid JSON"), "\(error)")
        }
        XCTAssertThrowsError(try client.complete(messages, temperature: 0, maxTokens: nil, seed: nil)) { error in
            XCTAssertTrue("\(error)".contains("no \"choices\""), "\(error)")
            XCTAssertTrue("\(error)".contains("chat.completion"), "the body excerpt: \(error)")
        }
        XCTAssertEqual(server.requests.count, 2)
    }

    func testARefusedConnectionIsRetriedThenReported() throws {
        let server = try ChatCompletionTestServer(script: [.answer("unused")])
        server.stop()  // nothing listens on the port any more
        XCTAssertThrowsError(try client(server, retries: 1).complete(messages, temperature: 0, maxTokens: nil, seed: nil)) { error in
            XCTAssertEqual((error as? RemoteError)?.attempts, 2)
            XCTAssertNil((error as? RemoteError)?.status)
        }
        XCTAssertEqual(waits.values, [0.01])
    }
}
