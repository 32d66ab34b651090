import Foundation
import XCTest
@testable import LatheEval
import LatheModels
import LatheTensors
import LatheTestSupport

/// Multiple-choice scoring on a tiny model, checked against `LanguageModel.logProbabilities(of:)`.
final class MultipleChoiceTests: XCTestCase {
    var folder: URL!
    var lm: LanguageModel!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let url = folder.appendingPathComponent("tiny.gguf")
        try TinyModel.write(to: url)
        lm = try LanguageModel.load(url.path)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func items(_ text: String) throws -> [MultipleChoiceItem] {
        try MultipleChoiceItem.read(try JSONLines.parse(Data(text.utf8), file: "items.jsonl"))
    }

    func testReadingBothStylesAndTheirPrompts() throws {
        let read = try items("""
            {"question": " What is 2+2? ", "choices": ["3", "4"], "answer": "B", "subject": "high_school_math"}
            {"context": "The cat", "endings": ["sat.", "flew away."], "label": "1"}
            """)
        XCTAssertEqual(read[0].prompt, "What is 2+2?\nA. 3\nB. 4\nAnswer:")
        XCTAssertEqual(read[0].continuations, [" A", " B"])
        XCTAssertEqual(read[0].answer, 1)
        XCTAssertEqual(read[1].continuations, [" sat.", " flew away."])
        XCTAssertEqual(read[1].solvedExample, "The cat flew away.")
        XCTAssertEqual(MultipleChoiceReport.fewShotContext(read[0], examples: [read[1]]),
                       "The following are multiple choice questions (with answers) about high school math.\n\n"
                       + "The cat flew away.\n\nWhat is 2+2?\nA. 3\nB. 4\nAnswer:")
        XCTAssertThrowsError(try MultipleChoiceItem(style: .lettered, text: "q", choices: Array(repeating: "x", count: 27), answer: 0))
        XCTAssertThrowsError(try MultipleChoiceItem(style: .continuation, text: "q", choices: ["a", "b"], answer: 2))
        func error(_ text: String) -> String { do { _ = try items(text); return "no error" } catch { return "\(error)" } }
        XCTAssertEqual(error(#"{"question": "q", "choices": ["a", "b"], "answer": 2}"#),
                       "items.jsonl:1: field \"answer\" must be a choice index 0..<2 or a letter, got 2")
        XCTAssertEqual(error(#"{"choices": ["a", "b"], "answer": 0}"#),
                       "items.jsonl:1: expected a \"question\" (lettered choices) or a \"context\" (continuations) field")
        XCTAssertTrue(error(#"{"context": "c", "endings": ["a", 1], "label": 0}"#).hasPrefix("items.jsonl:1: field \"endings\"[1] must be a string"))
        XCTAssertTrue(error(#"{"context": "c", "endings": ["a"], "label": 0}"#).hasPrefix("items.jsonl:1: field \"endings\" must hold 2"))
    }

    /// Rows of the HellaSwag dataset become the query and choices lm-evaluation-harness makes of them
    /// (Tests/Fixtures/eval/hellaswag_rows.json, from scripts/reference/eval.py).
    func testHellaSwagRowsArePreparedAsTheHarnessDoes() throws {
        struct Row: Decodable { let row: JSONValue; let query: String; let choices: [String]; let gold: Int }
        let rows = try JSONDecoder().decode([Row].self, from: Data(contentsOf: evalFixtures.appendingPathComponent("hellaswag_rows.json")))
        let text = try rows.map { String(decoding: try JSONEncoder().encode($0.row), as: UTF8.self) }.joined(separator: "\n")
        let read = try MultipleChoiceItem.read(try JSONLines.parse(Data(text.utf8), file: "rows"))
        XCTAssertEqual(read.count, rows.count)
        for (item, row) in zip(read, rows) {
            XCTAssertEqual(Array(item.prompt.unicodeScalars), Array(row.query.unicodeScalars), "query \(row.query.debugDescription)")
            XCTAssertEqual(item.choices.map { Array($0.unicodeScalars) }, row.choices.map { Array($0.unicodeScalars) })
            XCTAssertEqual(item.answer, row.gold)
            XCTAssertEqual(item.style, MultipleChoiceItem.Style.continuation)
        }
    }

    func testContextWhitespaceMovesToTheContinuation() {
        let scorer = LogLikelihoodScorer(lm: lm)
        let (context, continuation) = scorer.encodePair(context: "the cat ", continuation: "sat")
        XCTAssertEqual(context, lm.tokenizer.encode("the cat", addSpecialTokens: false))
        XCTAssertEqual(lm.tokenizer.decode(continuation), " sat")
        XCTAssertEqual(context + continuation, lm.tokenizer.encode("the cat sat", addSpecialTokens: false))
    }

    /// One code path: a batched forward over all choices gives the same sums as scoring each sequence alone.
    func testLogLikelihoodsEqualSummedTokenLogProbabilities() throws {
        let scorer = LogLikelihoodScorer(lm: lm)
        let context = "the theory of"
        let continuations = [" the tea", " an answer that is longer", " x", " in the end"]
        let scores = try scorer.logLikelihoods(context: context, continuations: continuations)
        var worst = 0.0
        for (continuation, score) in zip(continuations, scores) {
            let (contextIDs, continuationIDs) = scorer.encodePair(context: context, continuation: continuation)
            let logProbabilities = try lm.logProbabilities(of: contextIDs + continuationIDs)
            let expected = logProbabilities.suffix(continuationIDs.count).reduce(0.0) { $0 + ($1 ?? .nan) }
            XCTAssertLessThan(score, 0)
            worst = max(worst, abs(score - expected))
        }
        XCTAssertLessThanOrEqual(worst, 1e-5, "largest difference between batched and single scoring: \(worst)")
        // Scoring one choice at a time (the path for long inputs) gives the same numbers.
        var single = scorer
        single.maxLogitCount = 1
        let alone = try single.logLikelihoods(context: context, continuations: continuations)
        XCTAssertEqual(zip(alone, scores).map { abs($0 - $1) }.max() ?? .nan, 0, accuracy: 1e-5)
    }

    /// One-token continuations after a shared context take the single-pass path; it must agree too.
    func testOneTokenContinuationsEqualSummedTokenLogProbabilities() throws {
        let scorer = LogLikelihoodScorer(lm: lm)
        let continuations = [" a", "x", "e", "<|im_end|>"]
        for continuation in continuations {
            XCTAssertEqual(scorer.encodePair(context: "the theory", continuation: continuation).continuation.count, 1, continuation)
        }
        let scores = try scorer.logLikelihoods(context: "the theory", continuations: continuations)
        var worst = 0.0
        for (continuation, score) in zip(continuations, scores) {
            let (contextIDs, continuationIDs) = scorer.encodePair(context: "the theory", continuation: continuation)
            let expected = try lm.logProbabilities(of: contextIDs + continuationIDs).last ?? nil
            worst = max(worst, abs(score - (expected ?? .nan)))
        }
        XCTAssertLessThanOrEqual(worst, 1e-5, "largest difference from logProbabilities(of:): \(worst)")
    }

    func testAccuracyFollowsTheLogLikelihoods() throws {
        let read = try items("""
            {"context": "the theory", "endings": ["of the tea", "x", "in an hour or two"], "label": 0}
            {"question": "the answer?", "choices": ["the", "an", "on"], "answer": 2}
            {"context": "in the", "endings": ["end", "other theory of"], "label": 1}
            """)
        let scorer = LogLikelihoodScorer(lm: lm)
        let report = try MultipleChoiceReport.evaluate(read, scorer: scorer)
        var correct = 0.0, correctNormalized = 0.0
        for (item, outcome) in zip(read, report.outcomes) {
            let scores = try scorer.logLikelihoods(context: item.prompt, continuations: item.continuations)
            XCTAssertEqual(outcome.logLikelihoods, scores)
            let best = scores.indices.max { scores[$0] < scores[$1] } ?? -1
            let normalized = scores.indices.map { scores[$0] / Double(item.choiceTexts[$0].count) }
            let bestNormalized = normalized.indices.max { normalized[$0] < normalized[$1] } ?? -1
            XCTAssertEqual(outcome.predicted, best)
            XCTAssertEqual(outcome.predictedNormalized, bestNormalized)
            if best == item.answer { correct += 1 }
            if bestNormalized == item.answer { correctNormalized += 1 }
        }
        XCTAssertEqual(report.accuracy.estimate, correct / 3, accuracy: 1e-12)
        XCTAssertEqual(report.normalizedAccuracy.estimate, correctNormalized / 3, accuracy: 1e-12)
        XCTAssertLessThanOrEqual(report.accuracy.lower, report.accuracy.estimate)
        XCTAssertGreaterThanOrEqual(report.accuracy.upper, report.accuracy.estimate)
    }

    func testFewShotExamplesAreDrawnWithTheSeed() throws {
        let pool = try items((0..<6).map { #"{"context": "pool \#($0)", "endings": ["a", "b"], "label": 0}"# }.joined(separator: "\n"))
        var first = SeededGenerator(seed: 5), again = SeededGenerator(seed: 5), other = SeededGenerator(seed: 6)
        let drawn = MultipleChoiceReport.sample(pool, count: 3, using: &first)
        XCTAssertEqual(drawn, MultipleChoiceReport.sample(pool, count: 3, using: &again))
        XCTAssertEqual(Set(drawn.map(\.text)).count, 3, "examples are distinct")
        XCTAssertNotEqual(drawn, MultipleChoiceReport.sample(pool, count: 3, using: &other))
        let item = try items(#"{"context": "the", "endings": ["tea", "theory"], "label": 1}"#)
        XCTAssertThrowsError(try MultipleChoiceReport.evaluate(item, scorer: LogLikelihoodScorer(lm: lm), fewShotPool: pool, shots: 7))
        let report = try MultipleChoiceReport.evaluate(item, scorer: LogLikelihoodScorer(lm: lm), fewShotPool: pool, shots: 2, seed: 5)
        var random = SeededGenerator(seed: 5)
        let context = MultipleChoiceReport.fewShotContext(item[0], examples: MultipleChoiceReport.sample(pool, count: 2, using: &random))
        XCTAssertTrue(context.hasPrefix("pool "))
        // With the item itself in the pool, it is never its own example.
        let selfPool = try items(#"{"context": "the", "endings": ["tea", "theory"], "label": 1}"# + "\n"
                                 + #"{"context": "other", "endings": ["a", "b"], "label": 0}"#)
        for seed in 0..<4 as Range<UInt64> {
            let report = try MultipleChoiceReport.evaluate([selfPool[0]], scorer: LogLikelihoodScorer(lm: lm), fewShotPool: selfPool,
                                                           shots: 1, seed: seed)
            let expected = try LogLikelihoodScorer(lm: lm).logLikelihoods(
                context: MultipleChoiceReport.fewShotContext(selfPool[0], examples: [selfPool[1]]), continuations: selfPool[0].continuations)
            XCTAssertEqual(report.outcomes[0].logLikelihoods, expected, "seed \(seed)")
        }
        XCTAssertThrowsError(try MultipleChoiceReport.evaluate([selfPool[0]], scorer: LogLikelihoodScorer(lm: lm), fewShotPool: selfPool, shots: 2))
        XCTAssertEqual(report.outcomes[0].logLikelihoods,
                       try LogLikelihoodScorer(lm: lm).logLikelihoods(context: context, continuations: item[0].continuations))
    }
}

/// Choice log-likelihoods of the real SmolLM2 against transformers (scripts/reference/eval.py).
final class SmolLM2ChoiceTests: XCTestCase {
    struct Choice: Decodable { let continuation: String; let context_ids: [Int]; let continuation_ids: [Int]; let loglikelihood: Double }
    struct Item: Decodable { let context: String; let choices: [Choice] }
    struct Fixture: Decodable { let items: [Item] }

    func testChoiceLogLikelihoodsEqualTransformers() throws {
        let lm = try LanguageModel.load(try DefaultModelFile.url().path)
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: evalFixtures.appendingPathComponent("smollm2_choices.json")))
        let scorer = LogLikelihoodScorer(lm: lm)
        var worst = 0.0
        // One lettered and one continuation item keep the test to a few forward passes.
        XCTAssertEqual(fixture.items.count, 4)
        for item in [fixture.items[0], fixture.items[3]] {
            for choice in item.choices {
                let (contextIDs, continuationIDs) = scorer.encodePair(context: item.context, continuation: choice.continuation)
                XCTAssertEqual(contextIDs, choice.context_ids)
                XCTAssertEqual(continuationIDs, choice.continuation_ids)
            }
            let scores = try scorer.logLikelihoods(context: item.context, continuations: item.choices.map(\.continuation))
            for (score, choice) in zip(scores, item.choices) { worst = max(worst, abs(score - choice.loglikelihood)) }
        }
        // Tolerance: 1e-3 absolute on each summed log-likelihood (float32 forward passes on both sides).
        XCTAssertLessThanOrEqual(worst, 1e-3, "largest log-likelihood difference from transformers: \(worst)")
        print("SmolLM2 choice log-likelihoods: largest difference from transformers \(worst)")
    }
}
