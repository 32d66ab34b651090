import Foundation
import XCTest
import LatheModels
import LatheTestSupport
@testable import LatheEval

/// GRPO's reward functions: the rule rewards on hand-made completions, and external ones over a real process and
/// real HTTP, with their failures named.
final class RewardFunctionTests: XCTestCase {
    func input(_ completion: String, reference: JSONValue? = nil, tokens: Int = 3) -> RewardInput {
        RewardInput(prompt: "p", completion: completion, completionTokenCount: tokens,
                    row: reference.map { ["reference": $0] } ?? [:], sequence: [1, 2])
    }

    func rewards(_ spec: RewardSpec, _ inputs: [RewardInput]) throws -> [Double?] {
        try spec.make(rewardModel: { _ in XCTFail("no reward model here"); throw EvalError.invalidInput("") }).rewards(inputs)
    }

    func testRuleRewards() throws {
        let reference = JSONValue.string(#"{"item": "mug", "quantity": 2}"#)
        let completions = [#"{"quantity": 2, "item": "mug"}"#, #"{"item": "mug", "quantity": "2"}"#,
                           "```json\n{\"item\": \"mug\", \"quantity\": 2}\n```", #"{"item": "mug"}"#, "  {\"item\": \"mug\", \"quantity\": 2} "]
        let inputs = completions.map { input($0, reference: reference) }
        // Keys in any order and surrounding whitespace are the same JSON; a string "2" or a code fence are not.
        XCTAssertEqual(try rewards(RewardSpec(name: .jsonMatch), inputs), [1, 0, 0, 0, 1])
        XCTAssertEqual(try rewards(RewardSpec(name: .jsonValid), inputs), [1, 1, 0, 1, 1])
        XCTAssertEqual(try rewards(RewardSpec(name: .jsonKeys), inputs), [1, 1, 0, 0.5, 1])
        XCTAssertEqual(try rewards(RewardSpec(name: .exactMatch), inputs), [0, 0, 0, 0, 1])
        var regex = RewardSpec(name: .regex)
        regex.pattern = #"\{.*\}"#
        XCTAssertEqual(try rewards(regex, inputs), [1, 1, 0, 1, 0])
        regex.mode = .search
        XCTAssertEqual(try rewards(regex, inputs), [1, 1, 1, 1, 1])
        var length = RewardSpec(name: .length)
        length.target = 4
        XCTAssertEqual(try rewards(length, [input("a", tokens: 4), input("b", tokens: 2), input("c", tokens: 10)]), [0, -0.5, -1.5])
        // A reference given as a JSON value, not a string, is compared as it is.
        XCTAssertEqual(try rewards(RewardSpec(name: .jsonMatch), [input("[1, 2]", reference: .array([.number(1), .number(2)]))]), [1])
    }

    func testMissingSettingsAndFieldsAreNamed() throws {
        XCTAssertThrowsError(try rewards(RewardSpec(name: .regex), [])) { XCTAssertTrue("\($0)".contains("`pattern` is required"), "\($0)") }
        XCTAssertThrowsError(try rewards(RewardSpec(name: .jsonMatch), [input("{}")])) {
            XCTAssertTrue("\($0)".contains("no `reference` field"), "\($0)")
        }
        XCTAssertThrowsError(try rewards(RewardSpec(name: .exactMatch), [input("x", reference: .string("x"))].map {
            var i = $0; i.row = ["answer": .string("x")]; return i
        })) { XCTAssertTrue("\($0)".contains("reference"), "\($0)") }
    }

    func testACommandRewardGetsTheRowsAndItsTimeoutIsEnforced() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-reward-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let script = folder.appendingPathComponent("score.sh")
        // Reward = the completion's length in characters when the row's "reference" is "yes", else null.
        try """
            while IFS= read -r line; do
              case "$line" in
                *'"reference":"yes"'*) printf '%s' "$line" | sed 's/.*"completion":"\\([^"]*\\)".*/\\1/' | tr -d '\\n' | wc -c ;;
                *) echo null ;;
              esac
            done
            """.write(to: script, atomically: true, encoding: .utf8)
        var spec = RewardSpec(name: .command)
        spec.command = ["sh", script.path]
        let got = try rewards(spec, [input("abcd", reference: .string("yes")), input("ab", reference: .string("no")),
                                     input("abcdef", reference: .string("yes"))])
        XCTAssertEqual(got, [4, nil, 6])
        spec.command = ["sleep", "5"]
        spec.timeout = 0.5
        let start = Date()
        XCTAssertThrowsError(try rewards(spec, [input("a")])) { XCTAssertTrue("\($0)".contains("did not finish within"), "\($0)") }
        XCTAssertLessThan(Date().timeIntervalSince(start), 4)
        // A command that writes more to standard error than a pipe holds before it answers is still read.
        spec.command = ["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x >&2; while read -r line; do echo 0.5; done"]
        spec.timeout = 10
        XCTAssertEqual(try rewards(spec, [input("a"), input("b")]), [0.5, 0.5])
        spec.command = ["sh", "-c", "echo 1"]
        XCTAssertThrowsError(try rewards(spec, [input("a"), input("b")])) { XCTAssertTrue("\($0)".contains("1 rewards for 2"), "\($0)") }
    }

    func testAnHTTPRewardPostsTheInputsAndReadsTheRewards() throws {
        let server = try ChatCompletionTestServer(script: [.raw(status: 200, body: #"{"rewards": [0.25, null]}"#),
                                                           .raw(status: 500, body: "boom")])
        defer { server.stop() }
        var spec = RewardSpec(name: .http)
        spec.url = "http://127.0.0.1:\(server.port)/score"
        spec.timeout = 5
        XCTAssertEqual(try rewards(spec, [input("x", reference: .string("r")), input("y")]), [0.25, nil])
        let body = try JSONValue.parse(server.requests[0].body)
        XCTAssertEqual(body["inputs"]?.array?.first?["completion"], .string("x"))
        XCTAssertEqual(body["inputs"]?.array?.first?["reference"], .string("r"))
        XCTAssertThrowsError(try rewards(spec, [input("x")])) { XCTAssertTrue("\($0)".contains("answered 500"), "\($0)") }
    }
}
