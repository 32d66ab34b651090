import ArgumentParser
import Foundation
import XCTest
@testable import LatheCLI
import LatheEval
import LatheModels
import LatheTensors
import LatheTestSupport

/// `lathe eval compare` end to end on the built binary, checked against the library run in process.
final class CompareCommandTests: XCTestCase {
    var tiny: TinyModelFolder!
    var adapter: URL!
    var input: URL!

    override func setUpWithError() throws {
        tiny = try TinyModelFolder()
        let lm = try LanguageModel.load(tiny.modelPath)
        let config = LoRAConfiguration(rank: 2, alpha: 4, targets: ["all-linear"])
        var random = SeededGenerator(seed: 4)
        for adapter in try lm.model.attachLoRA(config, seed: 1) {
            for i in 0..<adapter.b.tensor.count { adapter.b.tensor[i] = (random.nextUnitFloat() - 0.5) * 2 }
        }
        adapter = tiny.file("adapter")
        try PEFTAdapter.save(lm.model, config: config, baseModel: "tiny", to: adapter)
        input = tiny.file("in.jsonl")
        try write("""
            {"prompt": "the theory", "reference": "the art of the inn"}
            {"messages": [{"role": "user", "content": "the tea?"}], "reference": "the tea"}
            {"prompt": "on the river", "reference": "then the theory"}
            """, to: input)
    }

    override func tearDownWithError() throws { tiny.remove() }

    func testJSONAndHTMLMatchTheLibrary() throws {
        let html = tiny.file("report.html")
        let output = try LatheProcess.run(["eval", "compare", "--model", tiny.modelPath, "--adapter", adapter.path,
                                           "--input", input.path, "--max-tokens", "5", "--batch-size", "2",
                                           "--resamples", "50", "--seed", "7", "--json", "--html", html.path])
        XCTAssertEqual(output.status, 0, output.stderr)
        let object = try XCTUnwrap(try JSONValue.parse(Data(output.stdout.utf8)).object, output.stdout)
        // The form, `lathe eval --baseline`, is the same comparison.
        let baseline = try LatheProcess.run(["eval", "--model", tiny.modelPath, "--adapter", adapter.path, "--baseline",
                                             "--input", input.path, "--max-tokens", "5", "--batch-size", "2",
                                             "--resamples", "50", "--seed", "7", "--json"])
        XCTAssertEqual(baseline.status, 0, baseline.stderr)
        XCTAssertEqual(baseline.stdout, output.stdout)

        let lm = try LanguageModel.load(tiny.modelPath)
        try PEFTAdapter.load(adapter, into: lm.model)
        let report = try ComparisonReport.evaluate(
            try CompareExample.read(input), lm: lm,
            settings: CompareSettings(maxTokens: 5, batchSize: 2, sampling: SamplingOptions(seed: 7),
                                      bootstrap: Bootstrap(resamples: 50, seed: 7)))
        XCTAssertEqual(object["count"]?.int, 3)
        for metric in report.metrics {
            let printed = try XCTUnwrap(object[metric.name]?.object, metric.name)
            // Printed through JSON, so equal to the last bit only up to the encoder's shortest round-trip form.
            for (key, value) in [("base", metric.base), ("tuned", metric.tuned), ("delta", metric.delta),
                                 ("ci_low", metric.interval.lower), ("ci_high", metric.interval.upper)] {
                XCTAssertEqual(try XCTUnwrap(printed[key]?.double, "\(metric.name).\(key)"), value,
                               accuracy: 1e-12 * max(1, abs(value)), "\(metric.name).\(key)")
            }
        }
        XCTAssertEqual(object["settings"]?.object?["seed"]?.int, 7)
        let page = try String(contentsOf: html, encoding: .utf8)
        XCTAssertTrue(page.contains("<table id=\"examples\">"))
        XCTAssertTrue(page.contains(ComparisonReport.escape(report.tuned.answers[2])))

        let table = try LatheProcess.run(["eval", "compare", "--model", tiny.modelPath, "--adapter", adapter.path,
                                          "--input", input.path, "--max-tokens", "5", "--resamples", "20"])
        XCTAssertEqual(table.status, 0, table.stderr)
        let lines = table.stdout.split(separator: "\n")
        XCTAssertEqual(lines.first.map(String.init)?.hasPrefix("metric"), true, table.stdout)
        XCTAssertTrue(lines.contains { $0.hasPrefix("perplexity ") }, table.stdout)
    }

    func testBadLineAndMissingAdapterFail() throws {
        try write("{\"prompt\": \"a\", \"reference\": \"b\"}\n{\"prompt\": \"c\", \"reference\": 4}\n", to: input)
        let bad = try LatheProcess.run(["eval", "compare", "--model", tiny.modelPath, "--adapter", adapter.path, "--input", input.path])
        XCTAssertEqual(bad.status, 1, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("in.jsonl:2: field \"reference\""), bad.stderr)

        let noAdapter = try LatheProcess.run(["eval", "compare", "--model", tiny.modelPath, "--input", input.path])
        XCTAssertNotEqual(noAdapter.status, 0)
        XCTAssertTrue(noAdapter.stderr.contains("--adapter"), noAdapter.stderr)
    }
}
