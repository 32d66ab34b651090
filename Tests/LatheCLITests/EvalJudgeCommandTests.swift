import Foundation
import XCTest
@testable import LatheCLI
import LatheModels
import LatheTestSupport

/// `lathe eval judge` on the built binary against a loopback OpenAI-compatible server.
final class EvalJudgeCommandTests: XCTestCase {
    var folder: URL!
    override func setUpWithError() throws { folder = try temporaryFolder() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func testFlagsParseAndBadValuesAreRejectedBeforeRunning() throws {
        let judge = try XCTUnwrap(LatheCommand.parseAsRoot(["eval", "judge", "--input", "f.jsonl", "--url", "http://127.0.0.1:1/v1",
                                                            "--judge-model", "m", "--pairwise", "--seed", "5"]) as? EvalJudgeCommand)
        XCTAssertTrue(judge.pairwise)
        XCTAssertEqual(judge.apiKeyEnv, "OPENAI_API_KEY")
        XCTAssertEqual(judge.bootstrap.seed, 5)
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["eval", "judge", "--input", "f", "--url", "http://h"]))  // no --judge-model
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["eval", "judge", "--input", "f", "--url", "ftp://h", "--judge-model", "m"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["eval", "judge", "--input", "f", "--url", "http://h", "--judge-model", "m",
                                                           "--timeout", "0"]))
    }

    /// The body's last message, as the server received it.
    static func userMessage(_ request: ChatCompletionTestServer.Request) -> String {
        let body = (try? JSONSerialization.jsonObject(with: request.body)) as? [String: Any]
        let messages = body?["messages"] as? [[String: Any]]
        return messages?.last?["content"] as? String ?? ""
    }

    func testPairwiseEndToEnd() throws {
        // Prefers the answer that says "good"; the "flaky" prompt gets a 500 before its answer; the "down" prompt
        // never gets one.
        let flaky = FailOnce()
        let server = try ChatCompletionTestServer { request, _ in
            let user = Self.userMessage(request)
            if user.contains("down") { return .raw(status: 503, body: "overloaded") }
            if user.contains("flaky"), flaky.first() {
                return .raw(status: 500, body: "try again")
            }
            let a = user.range(of: "[The Start of Assistant A's Answer]\ngood") != nil
            let b = user.range(of: "[The Start of Assistant B's Answer]\ngood") != nil
            return .answer(a == b ? "[[C]]" : a ? "[[A]]" : "[[B]]")
        }
        defer { server.stop() }
        let input = folder.appendingPathComponent("pairs.jsonl")
        try write("""
            {"prompt": "q1", "base": "bad", "tuned": "good"}
            {"prompt": "q2 flaky", "base": "bad", "tuned": "good"}
            {"prompt": "q3", "base": "good", "tuned": "bad"}
            {"prompt": "q4 down", "base": "bad", "tuned": "good"}
            """, to: input)
        let output = try LatheProcess.run(["eval", "judge", "--input", input.path, "--url", server.baseURL.absoluteString,
                                           "--judge-model", "judge", "--pairwise", "--json", "--retries", "2",
                                           "--retry-delay", "0", "--timeout", "5", "--resamples", "100"])
        XCTAssertEqual(output.status, 0, output.stderr)
        let printed = try JSONValue.parse(Data(output.stdout.utf8))
        let report = try XCTUnwrap(printed["report"])
        XCTAssertEqual(printed["mode"]?.string, "pairwise")
        XCTAssertEqual(printed["judge_model"]?.string, "judge")
        XCTAssertEqual(report["pairs"]?.array?.first?["base_first"]?.string, "B")
        XCTAssertEqual([report["wins"]?.int, report["ties"]?.int, report["losses"]?.int], [2, 0, 1])
        XCTAssertEqual(report["failures"]?.array?.count, 1)
        XCTAssertEqual(report["failures"]?.array?.first?["source"]?.string, "\(input.path):4")
        XCTAssertTrue(report["failures"]?.array?.first?["reason"]?.string?.contains("HTTP 503") ?? false, output.stdout)
        XCTAssertEqual(report["win_rate"]?["estimate"]?.double ?? .nan, 2.0 / 3.0, accuracy: 1e-12)
        // 3 judged pairs × 2 orders, + 1 retry for the flaky one, + 3 attempts for the pair that stays down.
        let requests = try XCTUnwrap(printed["requests"])
        XCTAssertEqual([requests["requests"]?.int, requests["attempts"]?.int, requests["retries"]?.int, requests["failures"]?.int],
                       [7, 10, 3, 1])
        XCTAssertEqual(server.requests.count, 10)

        let table = try LatheProcess.run(["eval", "judge", "--input", input.path, "--url", server.baseURL.absoluteString,
                                          "--judge-model", "judge", "--pairwise", "--retries", "0", "--resamples", "100"])
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertTrue(table.stdout.contains("win   2  0.667"), table.stdout)
        XCTAssertTrue(table.stdout.contains("1 item not judged"), table.stdout)
    }

    func testGradingTableSendsTheKeyFromTheNamedVariable() throws {
        let server = try ChatCompletionTestServer { request, _ in
            let user = Self.userMessage(request)
            return .answer(user.contains("Paris") ? "Right.\nRating: [[9]]" : user.contains("Lyon") ? "Rating: [[3]]" : "No idea.")
        }
        defer { server.stop() }
        let input = folder.appendingPathComponent("answers.jsonl")
        try write("""
            {"prompt": "Capital of France?", "answer": "Paris"}
            {"prompt": "Capital of France?", "answer": "Lyon"}
            {"prompt": "Capital of France?", "answer": "Marseille"}
            """, to: input)
        setenv("LATHE_TEST_JUDGE_KEY", "sk-local", 1)
        defer { unsetenv("LATHE_TEST_JUDGE_KEY") }
        let output = try LatheProcess.run(["eval", "judge", "--input", input.path, "--url", "http://127.0.0.1:\(server.port)",
                                           "--judge-model", "judge", "--api-key-env", "LATHE_TEST_JUDGE_KEY",
                                           "--rubric", "Judge geography only.", "--retry-delay", "0"])
        XCTAssertEqual(output.status, 0, output.stderr)
        XCTAssertTrue(output.stdout.hasPrefix("mean rating 6.000"), output.stdout)
        XCTAssertTrue(output.stdout.contains("over 2 answers"), output.stdout)
        XCTAssertTrue(output.stdout.contains("1 item not judged"), output.stdout)
        XCTAssertTrue(output.stdout.contains("\(input.path):3: no rating"), output.stdout)
        XCTAssertEqual(server.requests.count, 3, "a reply without a rating is not retried")
        XCTAssertEqual(server.requests.first?.path, "/v1/chat/completions")
        XCTAssertEqual(server.requests.first?.headers["authorization"], "Bearer sk-local")
        XCTAssertTrue(Self.userMessage(server.requests[0]).contains("Judge geography only."))
    }

    func testNothingJudgedFails() throws {
        let server = try ChatCompletionTestServer(script: [.raw(status: 401, body: "no key")])
        defer { server.stop() }
        let input = folder.appendingPathComponent("answers.jsonl")
        try write(#"{"prompt": "p", "answer": "a"}"#, to: input)
        let output = try LatheProcess.run(["eval", "judge", "--input", input.path, "--url", server.baseURL.absoluteString,
                                           "--judge-model", "judge"])
        XCTAssertNotEqual(output.status, 0)
        XCTAssertTrue(output.stdout.contains("HTTP 401"), output.stdout)
        XCTAssertTrue(output.stderr.contains("scored none of the 1 items"), output.stderr)
        XCTAssertEqual(server.requests.count, 1)
    }
}

/// True the first time it is asked, false afterwards: makes one request of a scripted server fail.
final class FailOnce: @unchecked Sendable {
    private let lock = NSLock()
    private var asked = false
    func first() -> Bool {
        lock.lock(); defer { lock.unlock() }
        defer { asked = true }
        return !asked
    }
}
