import ArgumentParser
import Foundation
import XCTest
@testable import LatheCLI
import LatheEval
import LatheModels
import LatheTestSupport

final class EvalCommandParsingTests: XCTestCase {
    func testFlagsParseAndBadValuesAreRejectedBeforeRunning() throws {
        let metrics = try XCTUnwrap(LatheCommand.parseAsRoot(["eval", "metrics", "--input", "f.jsonl", "--json", "--keep-articles",
                                                              "--regex", "a+", "--regex-mode", "search"]) as? EvalMetricsCommand)
        XCTAssertTrue(metrics.json)
        XCTAssertTrue(metrics.keepArticles)
        XCTAssertFalse(metrics.keepCase)
        XCTAssertEqual(metrics.regexMode, "search")
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["eval", "metrics"]))  // --input is required
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["eval", "metrics", "--input", "f", "--regex-mode", "partial"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["eval", "metrics", "--input", "f", "--resamples", "0"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["eval", "metrics", "--input", "f", "--confidence", "1"]))
        let choice = try XCTUnwrap(LatheCommand.parseAsRoot(["eval", "choice", "--model", "m.gguf", "--input", "f",
                                                             "--shots", "2", "--fewshot-input", "pool", "--seed", "9"]) as? EvalChoiceCommand)
        XCTAssertEqual(choice.shots, 2)
        XCTAssertEqual(choice.bootstrap.seed, 9)
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["eval", "choice", "--input", "f", "--shots", "2"]))  // no pool
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["eval", "choice", "--input", "f", "--shots", "-1"]))
    }
}

/// `lathe eval` end to end on the built binary.
final class EvalCommandEndToEndTests: XCTestCase {
    var folder: URL!
    let evalFixtures = fixtures.appendingPathComponent("eval")

    override func setUpWithError() throws { folder = try temporaryFolder() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    /// The JSON form prints exactly the agreed keys, with sacrebleu's and rouge-score's numbers
    /// (Tests/Fixtures/eval/metrics_expected.json, from scripts/reference/eval.py).
    func testMetricsJSONEqualsTheReferencePackages() throws {
        let output = try LatheProcess.run(["eval", "metrics", "--input", evalFixtures.appendingPathComponent("metrics.jsonl").path, "--json"])
        XCTAssertEqual(output.status, 0, output.stderr)
        XCTAssertEqual(output.stdout.split(separator: "\n").count, 1, "one JSON object on one line")
        let printed = try XCTUnwrap(JSONValue.parse(Data(output.stdout.utf8)).object)
        let expected = try XCTUnwrap(JSONValue.parse(Data(contentsOf: evalFixtures.appendingPathComponent("metrics_expected.json"))).object)
        XCTAssertEqual(Set(printed.keys), ["exact_match", "f1", "bleu", "rouge1", "rouge2", "rougeL", "count"])
        XCTAssertEqual(Set(printed.keys), Set(expected.keys))
        var worst = 0.0
        for (key, value) in expected {
            worst = max(worst, abs((printed[key]?.double ?? .nan) - (value.double ?? .nan)))
        }
        XCTAssertEqual(printed["count"]?.int, 64)
        XCTAssertLessThanOrEqual(worst, 1e-9, "largest difference from the reference packages: \(worst)")
    }

    func testMetricsTableSchemaAndRegex() throws {
        let input = folder.appendingPathComponent("in.jsonl"), schema = folder.appendingPathComponent("schema.json")
        try write("""
            {"prediction": "{\\"answer\\": 4}", "reference": "{\\"answer\\": 4}"}
            {"prediction": "four", "reference": ["4", "four"]}
            """, to: input)
        try write(#"{"type": "object", "required": ["answer"]}"#, to: schema)
        let table = try LatheProcess.run(["eval", "metrics", "--input", input.path, "--seed", "1"])
        XCTAssertEqual(table.status, 0, table.stderr)
        let rows = table.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        XCTAssertEqual(rows.first?.prefix(2), ["metric", "value"])
        XCTAssertEqual(rows.first { $0.first == "exact_match" }?[1], "1.0000")
        XCTAssertEqual(rows.first { $0.first == "count" }?[1], "2")
        XCTAssertNotNil(rows.first { $0.first == "bleu" })

        let json = try LatheProcess.run(["eval", "metrics", "--input", input.path, "--json", "--schema", schema.path,
                                         "--regex", "[a-z]+"])
        XCTAssertEqual(json.status, 0, json.stderr)
        let printed = try JSONValue.parse(Data(json.stdout.utf8))
        XCTAssertEqual(printed["json_valid"]?.double, 0.5)
        XCTAssertEqual(printed["schema_match"]?.double, 0.5)
        XCTAssertEqual(printed["regex_match"]?.double, 0.5)
    }

    func testBadLinesNameFileLineAndFieldAndExitWithOne() throws {
        let input = folder.appendingPathComponent("bad.jsonl")
        try write("""
            {"prediction": "a", "reference": "a"}
            {"prediction": "a", "reference": 7}
            """, to: input)
        let output = try LatheProcess.run(["eval", "metrics", "--input", input.path, "--json"])
        XCTAssertEqual(output.status, 1)
        XCTAssertTrue(output.stderr.contains("\(input.path):2: field \"reference\" must be a string or a list of strings, got 7"), output.stderr)
        XCTAssertEqual(output.stdout, "")
        try write(#"{"prediction": "a", "reference": "a"} x"#, to: input)
        let invalid = try LatheProcess.run(["eval", "metrics", "--input", input.path])
        XCTAssertEqual(invalid.status, 1)
        XCTAssertTrue(invalid.stderr.contains("\(input.path):1: invalid JSON"), invalid.stderr)
    }

    func testChoiceAgreesWithTheLibrary() throws {
        let model = folder.appendingPathComponent("tiny.gguf"), input = folder.appendingPathComponent("items.jsonl")
        try TinyModel.write(to: model)
        try write("""
            {"context": "the theory", "endings": ["of the tea", "x", "in an hour"], "label": 0}
            {"question": "the answer?", "choices": ["the", "an", "on"], "answer": "C"}
            {"context": "in the", "endings": ["end", "other theory of"], "label": 1}
            """, to: input)
        let output = try LatheProcess.run(["eval", "choice", "--model", model.path, "--input", input.path, "--json", "--seed", "3"])
        XCTAssertEqual(output.status, 0, output.stderr)
        let printed = try JSONValue.parse(Data(output.stdout.utf8))
        let lm = try LanguageModel.load(model.path)
        let items = try MultipleChoiceItem.read(try JSONLines.read(input))
        let report = try MultipleChoiceReport.evaluate(items, scorer: LogLikelihoodScorer(lm: lm), seed: 3, bootstrap: Bootstrap(seed: 3))
        XCTAssertEqual(printed["acc"]?.double, report.accuracy.estimate)
        XCTAssertEqual(printed["acc_norm"]?.double, report.normalizedAccuracy.estimate)
        XCTAssertEqual(printed["acc_interval"]?.array?.compactMap(\.double), [report.accuracy.lower, report.accuracy.upper])
        XCTAssertEqual(printed["count"]?.int, 3)

        let table = try LatheProcess.run(["eval", "choice", "--model", model.path, "--input", input.path])
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertTrue(table.stdout.contains("acc_norm"), table.stdout)
    }
}
