import Foundation
import XCTest
@testable import LatheRemote

/// The parts of the client that need no server: where requests go, how long it waits, what counts as an answer.
/// Its behaviour over real HTTP is tested against a loopback server in LatheEvalTests/JudgeEndpointTests.swift.
final class ChatCompletionClientTests: XCTestCase {
    func testTheEndpointIsFoundWithOrWithoutV1() throws {
        func endpoint(_ base: String) throws -> String {
            ChatCompletionClient.endpoint(for: try XCTUnwrap(URL(string: base))).absoluteString
        }
        XCTAssertEqual(try endpoint("http://127.0.0.1:8080"), "http://127.0.0.1:8080/v1/chat/completions")
        XCTAssertEqual(try endpoint("http://127.0.0.1:8080/"), "http://127.0.0.1:8080/v1/chat/completions")
        XCTAssertEqual(try endpoint("https://api.openai.com/v1"), "https://api.openai.com/v1/chat/completions")
        XCTAssertEqual(try endpoint("https://api.openai.com/v1/"), "https://api.openai.com/v1/chat/completions")
        XCTAssertEqual(try endpoint("http://h/proxy/v1/chat/completions"), "http://h/proxy/v1/chat/completions")
    }

    func testBackoffGrowsByTheFactorUpToTheCapAndHonoursRetryAfter() {
        let policy = RetryPolicy(maxRetries: 5, initialDelay: 0.5, factor: 2, maxDelay: 3)
        XCTAssertEqual((0..<5).map { policy.delay(beforeRetry: $0, retryAfter: nil) }, [0.5, 1, 2, 3, 3])
        XCTAssertEqual(policy.delay(beforeRetry: 0, retryAfter: 2), 2)
        XCTAssertEqual(policy.delay(beforeRetry: 0, retryAfter: 100), 3, "a Retry-After longer than the cap waits the cap")
    }

    func testRetryAfterIsSecondsOrAnHTTPDate() {
        let now = Date(timeIntervalSince1970: 1_445_412_480)  // Wed, 21 Oct 2015 07:28:00 GMT
        XCTAssertEqual(ChatCompletionClient.retryAfterSeconds(" 7 ", now: now), 7)
        XCTAssertEqual(ChatCompletionClient.retryAfterSeconds("Wed, 21 Oct 2015 07:28:30 GMT", now: now), 30)
        XCTAssertEqual(ChatCompletionClient.retryAfterSeconds("Wed, 21 Oct 2015 07:27:00 GMT", now: now), 0, "a past date: no wait")
        XCTAssertNil(ChatCompletionClient.retryAfterSeconds("soon", now: now))
    }

    func testOnlyTheFirstChoicesMessageContentIsAnAnswer() throws {
        XCTAssertEqual(try ChatCompletionClient.content(of: Data(#"{"choices":[{"message":{"role":"assistant","content":"hi"}}]}"#.utf8)), "hi")
        XCTAssertEqual(try ChatCompletionClient.content(of: Data(#"{"choices":[{"message":{"content":""}}]}"#.utf8)), "",
                       "an empty answer the server gave is an answer")
        let bad = [#"{"choices":[{"message":{"content":"hi"}}"#, #"{"id":"x"}"#, #"{"choices":[]}"#,
                   #"{"choices":[{"message":{"content":null}}]}"#, #"[1,2]"#, ""]
        for body in bad {
            XCTAssertThrowsError(try ChatCompletionClient.content(of: Data(body.utf8)), "accepted \(body)")
        }
    }

    func testTransientErrorsAreThoseThatMayPass() {
        XCTAssertTrue(ChatCompletionClient.isTransient(URLError(.timedOut)))
        XCTAssertTrue(ChatCompletionClient.isTransient(URLError(.cannotConnectToHost)))
        XCTAssertFalse(ChatCompletionClient.isTransient(URLError(.unsupportedURL)))
        XCTAssertFalse(ChatCompletionClient.isTransient(CocoaError(.fileNoSuchFile)))
    }

    func testErrorsNameTheURLStatusAndBody() throws {
        let error = RemoteError(url: try XCTUnwrap(URL(string: "http://h/v1/chat/completions")), status: 500, attempts: 3,
                                reason: "internal server error", bodyExcerpt: "{\"error\":\"boom\"}")
        XCTAssertEqual(error.description,
                       "POST http://h/v1/chat/completions: HTTP 500: internal server error (after 3 attempts); body: {\"error\":\"boom\"}")
        let long = ChatCompletionClient.excerpt(Data(String(repeating: "x", count: 500).utf8), limit: 10)
        XCTAssertEqual(long, "xxxxxxxxxx…")
    }
}
