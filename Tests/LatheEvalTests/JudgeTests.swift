import Foundation
import LatheEval
import LatheModels
import LatheRemote
import XCTest

/// A judge stand-in that answers from the request: it sees which answer is shown as A and which as B.
final class ScriptedJudge: ChatCompleting {
    let reply: (_ user: String) throws -> String
    private(set) var calls: [[ChatCompletionMessage]] = []
    init(reply: @escaping (String) throws -> String) { self.reply = reply }

    func complete(_ messages: [ChatCompletionMessage], temperature: Double, maxTokens: Int?, seed: Int?) throws -> String {
        calls.append(messages)
        return try reply(messages.last?.content ?? "")
    }

    /// The answer shown in position A or B of a pairwise prompt.
    static func answer(_ position: String, in user: String) -> String {
        guard let start = user.range(of: "[The Start of Assistant \(position)'s Answer]\n"),
              let end = user.range(of: "\n[The End of Assistant \(position)'s Answer]") else { return "" }
        return String(user[start.upperBound..<end.lowerBound])
    }
}

struct JudgeUnavailable: Error {}

final class JudgeTests: XCTestCase {
    func testRatingsAreReadFromTheLastBracketedNumberOrARatingLine() {
        XCTAssertEqual(JudgeReplyParser.rating("Good answer.\nRating: [[8]]"), 8)
        XCTAssertEqual(JudgeReplyParser.rating("Format is [[rating]], e.g. [[5]]. Mine:\nRating: [[7.5]]"), 7.5)
        XCTAssertEqual(JudgeReplyParser.rating("Rating: [[ 10 ]]"), 10)
        XCTAssertEqual(JudgeReplyParser.rating("Rating: 6/10"), 6, "no brackets: the number after Rating:")
        XCTAssertEqual(JudgeReplyParser.rating("rating: [3]"), 3)
        XCTAssertNil(JudgeReplyParser.rating("A fine answer, I would say good."))
        XCTAssertNil(JudgeReplyParser.rating("Rating: [[11]]"), "outside 1-10")
        XCTAssertNil(JudgeReplyParser.rating("Rating: [[0]]"), "outside 1-10")
        XCTAssertNil(JudgeReplyParser.rating("Rating: [[rating]]"))
    }

    func testVerdictsAreTheLastOfAB_C() {
        XCTAssertEqual(JudgeReplyParser.verdict("B is more accurate.\n[[B]]"), .second)
        XCTAssertEqual(JudgeReplyParser.verdict("[[A]]"), .first)
        XCTAssertEqual(JudgeReplyParser.verdict("Both equal: [[C]]"), .tie)
        XCTAssertEqual(JudgeReplyParser.verdict("Output [[A]], [[B]] or [[C]]. My verdict: [[a]]"), .first)
        XCTAssertNil(JudgeReplyParser.verdict("A is better."))
        XCTAssertNil(JudgeReplyParser.verdict("[[D]]"))
    }

    func testSwappedVerdictsCombineFromTheTunedSide() {
        // Base shown first (A), tuned second (B), then the other way round.
        XCTAssertEqual(PairOutcome.combining(baseFirst: .second, tunedFirst: .first).outcome, .win)
        XCTAssertEqual(PairOutcome.combining(baseFirst: .first, tunedFirst: .second).outcome, .loss)
        XCTAssertEqual(PairOutcome.combining(baseFirst: .tie, tunedFirst: .tie).outcome, .tie)
        // Always the first position, or always the second: the judge followed the order, not the answer.
        let followsOrder = PairOutcome.combining(baseFirst: .first, tunedFirst: .first)
        XCTAssertEqual(followsOrder.outcome, .tie)
        XCTAssertFalse(followsOrder.consistent)
        XCTAssertEqual(PairOutcome.combining(baseFirst: .second, tunedFirst: .second).outcome, .tie)
        XCTAssertEqual(PairOutcome.combining(baseFirst: .second, tunedFirst: .tie).outcome, .tie, "a win in one order only is a tie")
    }

    func testGradingRatesAnswersAndReportsUnratedOnesApart() {
        let backend = ScriptedJudge { user in
            if user.contains("fails") { throw JudgeUnavailable() }
            if user.contains("rambles") { return "Hard to say." }
            return user.contains("Paris") ? "Correct.\nRating: [[9]]" : "Wrong.\nRating: [[2]]"
        }
        let items = [JudgeGradingItem(prompt: "Capital of France?", answer: "Paris", source: "in:1"),
                     JudgeGradingItem(prompt: "Capital of France?", answer: "Lyon", source: "in:2"),
                     JudgeGradingItem(prompt: "Capital of France?", answer: "rambles", source: "in:3"),
                     JudgeGradingItem(prompt: "Capital of France?", answer: "fails", source: "in:4")]
        let report = Judge(backend: backend, rubric: "Judge correctness only.").grade(items, bootstrap: Bootstrap(resamples: 200))
        XCTAssertEqual(report.ratings.map(\.rating), [9, 2])
        XCTAssertEqual(report.meanRating.estimate, 5.5)
        XCTAssertLessThanOrEqual(report.meanRating.lower, 5.5)
        XCTAssertGreaterThanOrEqual(report.meanRating.upper, 5.5)
        XCTAssertEqual(report.failures.map(\.source), ["in:3", "in:4"])
        XCTAssertTrue(report.failures[0].reason.contains("no rating"), report.failures[0].reason)
        XCTAssertEqual(backend.calls.count, 4)
        XCTAssertTrue(backend.calls[0][1].content.contains("Judge correctness only."), "the rubric reaches the prompt")
        XCTAssertTrue(backend.calls[0][1].content.contains("[Question]\nCapital of France?"))
    }

    func testPairwiseSwapsPositionsAndLeavesFailuresOutOfTheCounts() throws {
        // The judge prefers "good" answers; for "biased" pairs it always picks position A; "broken" pairs fail
        // after retries; "mute" pairs get a reply without a verdict.
        let backend = ScriptedJudge { user in
            let a = ScriptedJudge.answer("A", in: user), b = ScriptedJudge.answer("B", in: user)
            if a.contains("broken") || b.contains("broken") { throw JudgeUnavailable() }
            if a.contains("mute") { return "Both are fine." }
            if a.contains("biased") { return "[[A]]" }
            if a.contains("good") == b.contains("good") { return "[[C]]" }
            return a.contains("good") ? "A is better.\n[[A]]" : "B is better.\n[[B]]"
        }
        let items = [JudgePairItem(prompt: "q1", base: "poor", tuned: "good", source: "1"),
                     JudgePairItem(prompt: "q2", base: "poor", tuned: "good too", source: "2"),
                     JudgePairItem(prompt: "q3", base: "good", tuned: "poor", source: "3"),
                     JudgePairItem(prompt: "q4", base: "good", tuned: "good", source: "4"),
                     JudgePairItem(prompt: "q5", base: "biased", tuned: "biased", source: "5"),
                     JudgePairItem(prompt: "q6", base: "broken", tuned: "good", source: "6"),
                     JudgePairItem(prompt: "q7", base: "mute", tuned: "mute", source: "7")]
        let report = Judge(backend: backend).compare(items, bootstrap: Bootstrap(resamples: 500, seed: 3))
        XCTAssertEqual([report.wins, report.ties, report.losses], [2, 2, 1])
        XCTAssertEqual(report.inconsistent, 1)
        XCTAssertEqual(report.pairs.map(\.outcome), [.win, .win, .loss, .tie, .tie])
        XCTAssertEqual(report.pairs[0].baseFirst, .second)
        XCTAssertEqual(report.pairs[0].tunedFirst, .first)
        XCTAssertEqual(report.failures.map(\.source), ["6", "7"], "failures are reported, not counted as losses")
        XCTAssertTrue(report.failures[1].reason.contains("no verdict"), report.failures[1].reason)
        XCTAssertEqual(report.winRate.estimate, 0.4, accuracy: 1e-12)
        XCTAssertEqual(report.tieRate, 0.4, accuracy: 1e-12)
        XCTAssertEqual(report.lossRate, 0.2, accuracy: 1e-12)
        XCTAssertEqual(report.score.estimate, 0.6, accuracy: 1e-12)
        // The interval is the library bootstrap of the per-pair win indicators.
        XCTAssertEqual(report.winRate, Bootstrap(resamples: 500, seed: 3).mean([1, 1, 0, 0, 0]))
        XCTAssertLessThan(report.winRate.lower, report.winRate.upper)
        // Every pair asked in both orders, answers in the swapped places; the failing pair stops at its first call.
        XCTAssertEqual(backend.calls.count, 2 * 5 + 1 + 1)
        let first = backend.calls[0][1].content, second = backend.calls[1][1].content
        XCTAssertEqual([ScriptedJudge.answer("A", in: first), ScriptedJudge.answer("B", in: first)], ["poor", "good"])
        XCTAssertEqual([ScriptedJudge.answer("A", in: second), ScriptedJudge.answer("B", in: second)], ["good", "poor"])
    }

    func testInputLinesNeedTheirStringFields() throws {
        let lines = try JSONLines.parse(Data(#"{"prompt": "p", "answer": "a"}"# .utf8), file: "in.jsonl")
        XCTAssertEqual(try JudgeGradingItem.read(lines), [JudgeGradingItem(prompt: "p", answer: "a", source: "in.jsonl:1")])
        XCTAssertThrowsError(try JudgePairItem.read(lines)) { error in
            XCTAssertEqual("\(error)", "in.jsonl:1: missing the \"base\" field")
        }
        let numeric = try JSONLines.parse(Data(#"{"prompt": "p", "answer": 3}"# .utf8), file: "in.jsonl")
        XCTAssertThrowsError(try JudgeGradingItem.read(numeric)) { error in
            XCTAssertTrue("\(error)".hasPrefix("in.jsonl:1: \"answer\" must be a string"), "\(error)")
        }
    }
}
