import Foundation
import XCTest
@testable import LatheEval
import LatheModels

/// The package root, found from this file's path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let evalFixtures = packageRoot.appendingPathComponent("Tests/Fixtures/eval")

/// Every metric against the Python packages it claims to equal (scripts/reference/eval.py): SQuAD v1.1's
/// evaluation functions, sacrebleu 2.6 and rouge-score 0.1.2, on 64 varied pairs.
final class MetricsReferenceTests: XCTestCase {
    struct Case: Decodable {
        let prediction: String
        let references: [String]
        let exact_match, f1, rouge1, rouge2, rougeL, sentence_bleu: Double
        let normalized: String
        let rouge_tokens, bleu_tokens: [String]
    }
    struct Fixture: Decodable { let cases: [Case]; let corpus_bleu: Double; let corpus_bleu_first_reference: Double }

    var fixture: Fixture!

    override func setUpWithError() throws {
        fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: evalFixtures.appendingPathComponent("metrics.json")))
        XCTAssertGreaterThanOrEqual(fixture.cases.count, 60)
    }

    /// Compares per-case values within `tolerance` (absolute) and reports the worst case.
    func assertClose(_ name: String, tolerance: Double, _ actual: (Case) -> Double, _ expected: (Case) -> Double) {
        var worst = 0.0, worstCase = ""
        for c in fixture.cases {
            let difference = abs(actual(c) - expected(c))
            if difference > worst { worst = difference; worstCase = "\(c.prediction.debugDescription) vs \(c.references)" }
        }
        XCTAssertLessThanOrEqual(worst, tolerance, "\(name): largest difference \(worst) on \(worstCase)")
    }

    func testSQuADNormalizationExactMatchAndF1() {
        for c in fixture.cases {
            XCTAssertEqual(Array(AnswerNormalization.squad.normalize(c.prediction).unicodeScalars), Array(c.normalized.unicodeScalars),
                           "normalize_answer(\(c.prediction.debugDescription))")
        }
        assertClose("exact match", tolerance: 0, { AnswerMetrics.exactMatch($0.prediction, references: $0.references) }, \.exact_match)
        assertClose("F1", tolerance: 1e-12, { AnswerMetrics.tokenF1($0.prediction, references: $0.references) }, \.f1)
    }

    func testROUGEEqualsRougeScore() {
        for c in fixture.cases {
            XCTAssertEqual(ROUGE.tokenize(c.prediction).map { Array($0.unicodeScalars) }, c.rouge_tokens.map { Array($0.unicodeScalars) },
                           "tokens of \(c.prediction.debugDescription)")
        }
        func best(_ c: Case, _ pick: (ROUGEScore, ROUGEScore, ROUGEScore) -> ROUGEScore) -> Double {
            c.references.map { r in
                let s = ROUGE.scores(prediction: c.prediction, reference: r)
                return pick(s.rouge1, s.rouge2, s.rougeL).fMeasure
            }.max() ?? 0
        }
        assertClose("rouge1", tolerance: 1e-12, { best($0) { a, _, _ in a } }, \.rouge1)
        assertClose("rouge2", tolerance: 1e-12, { best($0) { _, b, _ in b } }, \.rouge2)
        assertClose("rougeL", tolerance: 1e-12, { best($0) { _, _, l in l } }, \.rougeL)
        // The standalone functions agree with the combined one.
        let c = fixture.cases[1]
        XCTAssertEqual(ROUGE.nGram(2, prediction: c.prediction, reference: c.references[0]).fMeasure, c.rouge2, accuracy: 1e-12)
        XCTAssertEqual(ROUGE.longestCommonSubsequence(prediction: c.prediction, reference: c.references[0]).fMeasure, c.rougeL, accuracy: 1e-12)
    }

    func testBLEUEqualsSacrebleu() {
        for c in fixture.cases {
            XCTAssertEqual(Tokenizer13a.tokenize(c.prediction).map { Array($0.unicodeScalars) }, c.bleu_tokens.map { Array($0.unicodeScalars) },
                           "13a tokens of \(c.prediction.debugDescription)")
        }
        assertClose("sentence BLEU", tolerance: 1e-9, { BLEU.sentenceScore(hypothesis: $0.prediction, references: $0.references) },
                    \.sentence_bleu)
        let corpus = BLEU.corpusScore(hypotheses: fixture.cases.map(\.prediction), references: fixture.cases.map(\.references))
        XCTAssertEqual(corpus, fixture.corpus_bleu, accuracy: 1e-9)
        let single = BLEU.corpusScore(hypotheses: fixture.cases.map(\.prediction), references: fixture.cases.map { [$0.references[0]] })
        XCTAssertEqual(single, fixture.corpus_bleu_first_reference, accuracy: 1e-9)
    }

    func testReportAveragesPerPairScores() throws {
        let lines = try JSONLines.read(evalFixtures.appendingPathComponent("metrics.jsonl"))
        let report = GenerationReport(pairs: try GenerationPair.read(lines))
        let expected = try JSONValue.parse(Data(contentsOf: evalFixtures.appendingPathComponent("metrics_expected.json")))
        XCTAssertEqual(report.count, expected["count"]?.int)
        XCTAssertEqual(report.bleu, try XCTUnwrap(expected["bleu"]?.double), accuracy: 1e-9)
        XCTAssertEqual(report.mean(\.exactMatch), try XCTUnwrap(expected["exact_match"]?.double), accuracy: 1e-12)
        XCTAssertEqual(report.mean(\.f1), try XCTUnwrap(expected["f1"]?.double), accuracy: 1e-12)
        XCTAssertEqual(report.mean(\.rouge1), try XCTUnwrap(expected["rouge1"]?.double), accuracy: 1e-12)
        XCTAssertEqual(report.mean(\.rouge2), try XCTUnwrap(expected["rouge2"]?.double), accuracy: 1e-12)
        XCTAssertEqual(report.mean(\.rougeL), try XCTUnwrap(expected["rougeL"]?.double), accuracy: 1e-12)
        XCTAssertNil(report.mean(\.schemaMatch))
    }
}

/// Normalisation options and the reading of metric input lines.
final class AnswerMetricTests: XCTestCase {
    func testNormalizationStepsCanBeTurnedOff() {
        XCTAssertEqual(AnswerNormalization.squad.normalize("  The  Cat, a  hat! "), "cat hat")
        XCTAssertEqual(AnswerNormalization(lowercase: false).normalize("The Cat, the hat"), "The Cat hat")
        XCTAssertEqual(AnswerNormalization(removePunctuation: false).normalize("the cat, a hat"), "cat, hat")
        XCTAssertEqual(AnswerNormalization(removeArticles: false).normalize("The cat"), "the cat")
        XCTAssertEqual(AnswerNormalization.none.normalize(" The  cat. "), "The cat.")
        XCTAssertEqual(AnswerMetrics.exactMatch("The cat.", references: ["cat"]), 1)
        XCTAssertEqual(AnswerMetrics.exactMatch("The cat.", references: ["cat"], normalization: .none), 0)
        XCTAssertEqual(AnswerMetrics.tokenF1("cat dog", references: ["dog", "cat dog bird"]), 0.8, accuracy: 1e-12)
    }

    func testBadLinesNameFileLineAndField() throws {
        func error(_ text: String) -> String {
            do {
                _ = try GenerationPair.read(try JSONLines.parse(Data(text.utf8), file: "in.jsonl"))
                return "no error"
            } catch { return "\(error)" }
        }
        XCTAssertEqual(error("{\"prediction\": \"a\", \"reference\": \"b\"}\n{\"reference\": \"b\"}"), "in.jsonl:2: missing field \"prediction\"")
        XCTAssertTrue(error(#"{"prediction": 3, "reference": "b"}"#).hasPrefix("in.jsonl:1: field \"prediction\" must be a string"))
        XCTAssertTrue(error(#"{"prediction": "a", "reference": ["b", 4]}"#).hasPrefix("in.jsonl:1: field \"reference\"[1] must be a string"))
        XCTAssertTrue(error(#"{"prediction": "a", "reference": []}"#).hasPrefix("in.jsonl:1: field \"reference\" is an empty list"))
        XCTAssertTrue(error(#"{"prediction": "a", "reference": "b", "schema": {"type": "thing"}}"#)
            .hasPrefix("in.jsonl:1: field \"schema\": schema: 'type' must be one of"))
        XCTAssertEqual(try GenerationPair.read(try JSONLines.parse(Data(#"{"prediction": "a", "reference": ["b", "c"]}"#.utf8), file: "f"))
            .first?.references, ["b", "c"])
    }
}
