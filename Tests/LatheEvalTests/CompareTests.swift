import Foundation
import XCTest
import LatheTestSupport
import LatheData
import LatheTensors
@testable import LatheEval

/// `ComparisonReport` on a tiny model with a saved LoRA adapter, checked against generation and scoring done
/// separately on a model without the adapter and on one with the adapter loaded from disk.
final class CompareTests: TinyModelTestCase {
    var adapterFolder: URL!
    var inputURL: URL!

    override func setUpWithError() throws {
        try super.setUpWithError()
        // Random, non-zero B: the adapter changes the logits enough to change greedy answers.
        let config = LoRAConfiguration(rank: 2, alpha: 4, targets: ["all-linear"])
        let adapters = try lm.model.attachLoRA(config, seed: 1)
        var random = SeededGenerator(seed: 2)
        for adapter in adapters { for i in 0..<adapter.b.tensor.count { adapter.b.tensor[i] = (random.nextUnitFloat() - 0.5) * 2 } }
        adapterFolder = tiny.file("adapter")
        try PEFTAdapter.save(lm.model, config: config, baseModel: "tiny", to: adapterFolder)
        inputURL = tiny.file("compare.jsonl")
        try """
            {"prompt": "the theory", "reference": "the art of the inn"}
            {"prompt": "then the", "reference": ["an inn", "the inn"]}
            {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the tea?"}], "reference": "the tea"}
            {"prompt": "on the river", "reference": "then the theory"}
            {"prompt": "the art", "reference": "<script>alert(1)</script>"}
            """.write(to: inputURL, atomically: true, encoding: .utf8)
    }

    var settings: CompareSettings { CompareSettings(maxTokens: 6, batchSize: 3, bootstrap: Bootstrap(resamples: 200, seed: 5)) }

    func testAnswersEqualSeparateGenerationWithoutAndWithTheAdapter() throws {
        let examples = try CompareExample.read(inputURL)
        let report = try ComparisonReport.evaluate(examples, lm: lm, settings: settings)

        let plain = try LanguageModel.load(tiny.modelPath)
        let adapted = try LanguageModel.load(tiny.modelPath)
        try PEFTAdapter.load(adapterFolder, into: adapted.model)
        for (i, example) in examples.enumerated() {
            let sampling = SamplingOptions(seed: UInt64(i))
            XCTAssertEqual(report.base.answers[i], try plain.generate(try example.promptTokens(plain), sampling: sampling, maxTokens: 6), "example \(i)")
            XCTAssertEqual(report.tuned.answers[i], try adapted.generate(try example.promptTokens(adapted), sampling: sampling, maxTokens: 6), "example \(i)")
        }
        XCTAssertNotEqual(report.base.answers, report.tuned.answers, "the adapter should change some answer")
        // The adapters are left on.
        XCTAssertTrue(lm.model.adapters.allSatisfy(\.enabled))

        // Perplexity of the references equals PerplexityReport over all the rows, by the training loss code.
        let renderer = SFTRenderer(model: plain, options: try SFTOptions(maxLength: 100_000, lossOn: .completion))
        let whole = try PerplexityReport.evaluate(rows: examples.map { $0.referenceRow(hasChatTemplate: true) },
                                                  renderer: renderer, window: 100_000)
        XCTAssertEqual(report.base.perplexity(), whole.perplexity, accuracy: 1e-9 * whole.perplexity)
        let tunedRenderer = SFTRenderer(model: adapted, options: renderer.options)
        let tunedWhole = try PerplexityReport.evaluate(rows: examples.map { $0.referenceRow(hasChatTemplate: true) },
                                                       renderer: tunedRenderer, window: 100_000)
        XCTAssertEqual(report.tuned.perplexity(), tunedWhole.perplexity, accuracy: 1e-9 * tunedWhole.perplexity)
    }

    func testBatchedGenerationEqualsOneAtATimeAlsoWhenSampling() throws {
        let examples = try CompareExample.read(inputURL)
        let prompts = try examples.map { try $0.promptTokens(lm) }
        for temperature in [Float(0), 0.9] {
            var batched = settings
            batched.sampling = SamplingOptions(temperature: temperature, seed: 11)
            batched.maxTokens = 8
            let together = try ComparisonReport.generate(prompts, firstIndex: 0, lm: lm, settings: batched)
            for (i, prompt) in prompts.enumerated() {
                let alone = try ComparisonReport.generate([prompt], firstIndex: i, lm: lm, settings: batched)
                XCTAssertEqual(together[i], alone[0], "temperature \(temperature), example \(i)")
                let library = try lm.generate(prompt, sampling: SamplingOptions(temperature: temperature, seed: 11 + UInt64(i)), maxTokens: 8)
                XCTAssertEqual(together[i], library, "temperature \(temperature), example \(i)")
            }
        }
    }

    func testSameSeedSameReportAndDeltasAreTunedMinusBase() throws {
        let examples = try CompareExample.read(inputURL)
        var sampled = settings
        sampled.sampling = SamplingOptions(temperature: 0.8, seed: 3)
        let first = try ComparisonReport.evaluate(examples, lm: lm, settings: sampled)
        let second = try ComparisonReport.evaluate(examples, lm: lm, settings: sampled)
        XCTAssertEqual(first.base.answers, second.base.answers)
        XCTAssertEqual(first.tuned.answers, second.tuned.answers)
        XCTAssertEqual(first.metrics, second.metrics)

        XCTAssertEqual(first.metrics.map(\.name), ["exact_match", "f1", "bleu", "rouge1", "rouge2", "rougeL", "perplexity"])
        for metric in first.metrics {
            XCTAssertEqual(metric.delta, metric.tuned - metric.base, "\(metric.name)")
            XCTAssertLessThanOrEqual(metric.interval.lower, metric.interval.upper, "\(metric.name)")
        }
        // The per-system numbers are LatheEval's metrics of the answers.
        let references = examples.map(\.references)
        let f1 = try XCTUnwrap(first.metrics.first { $0.name == "f1" })
        XCTAssertEqual(f1.base, GenerationReport(pairs: zip(first.base.answers, references).map {
            GenerationPair(prediction: $0, references: $1) }).mean(\.f1))
        let bleu = try XCTUnwrap(first.metrics.first { $0.name == "bleu" })
        XCTAssertEqual(bleu.tuned, BLEU.corpusScore(hypotheses: first.tuned.answers, references: references), accuracy: 1e-9)
        // The paired interval is Bootstrap.pairedDifference of the per-example scores.
        let expected = try sampled.bootstrap.pairedDifference(first.tuned.scores.examples.map(\.f1), first.base.scores.examples.map(\.f1))
        XCTAssertEqual(f1.interval, expected)
    }

    func testJSONHasTheDocumentedKeysAndHTMLEscapesAnswers() throws {
        let examples = try CompareExample.read(inputURL)
        let report = try ComparisonReport.evaluate(examples, lm: lm, settings: settings)
        let object = try XCTUnwrap(report.json.object)
        XCTAssertEqual(Set(object.keys), ["exact_match", "f1", "bleu", "rouge1", "rouge2", "rougeL", "perplexity", "count", "settings"])
        XCTAssertEqual(object["count"]?.int, 5)
        for name in ["exact_match", "f1", "bleu", "rouge1", "rouge2", "rougeL", "perplexity"] {
            XCTAssertEqual(Set(try XCTUnwrap(object[name]?.object, name).keys), ["base", "tuned", "delta", "ci_low", "ci_high"], name)
        }
        XCTAssertEqual(object["settings"]?.object?["batch_size"]?.int, 3)

        // An answer with markup is shown as text, not run.
        var answers = report.base.answers
        answers[0] = "<script>alert('x')</script> & more"
        let hostile = ComparisonReport(
            examples: report.examples,
            base: SystemResult(answers: answers, scores: report.base.scores, bleuStatistics: report.base.bleuStatistics,
                               referenceLosses: report.base.referenceLosses),
            tuned: report.tuned, metrics: report.metrics, settings: report.settings)
        let url = tiny.file("report.html")
        try hostile.writeHTML(to: url)
        let page = try String(contentsOf: url, encoding: .utf8)
        XCTAssertTrue(page.contains("<table id=\"metrics\">"))
        XCTAssertTrue(page.contains("<td>perplexity</td>"))
        XCTAssertFalse(page.contains("<script"), "raw markup in the page")
        XCTAssertTrue(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"))
        XCTAssertTrue(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))  // the reference
        XCTAssertEqual(report.tableLines.count, 9)
    }

    func testNoAdapterIsAnError() throws {
        let plain = try LanguageModel.load(tiny.modelPath)
        XCTAssertThrowsError(try ComparisonReport.evaluate(try CompareExample.read(inputURL), lm: plain, settings: settings)) { error in
            XCTAssertTrue("\(error)".contains("no LoRA adapter"), "\(error)")
        }
    }
}

/// Reading comparison sets: explicit references, training files with held-out answers, and errors naming the line.
final class CompareInputTests: XCTestCase {
    func read(_ text: String) throws -> [CompareExample] {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("compare-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: url) }
        try text.write(to: url, atomically: true, encoding: .utf8)
        return try CompareExample.read(url)
    }

    func assertError(_ text: String, line: Int, contains fragment: String, file: StaticString = #filePath, lineNumber: UInt = #line) {
        XCTAssertThrowsError(try read(text), file: file, line: lineNumber) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains(".jsonl:\(line): "), message, file: file, line: lineNumber)
            XCTAssertTrue(message.contains(fragment), message, file: file, line: lineNumber)
        }
    }

    func testTrainingRowsHoldOutTheirAnswer() throws {
        let completions = try read("""
            {"prompt": "Q: 2+2?", "completion": " 4"}
            {"prompt": "Q: sky?", "completion": " blue"}
            """)
        XCTAssertEqual(completions.map(\.prompt), [.plainText("Q: 2+2?"), .plainText("Q: sky?")])
        XCTAssertEqual(completions.map(\.references), [[" 4"], [" blue"]])

        let chats = try read(#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}"#)
        XCTAssertEqual(chats[0].prompt, .messages([ChatMessage(role: "user", content: "hi")]))
        XCTAssertEqual(chats[0].references, ["hello"])
        XCTAssertEqual(chats[0].source.hasSuffix(".jsonl:1"), true)

        let alpaca = try read(#"{"instruction": "add", "input": "1 and 2", "output": "3"}"#)
        XCTAssertEqual(alpaca[0].references, ["3"])
        guard case .messages(let messages) = alpaca[0].prompt else { return XCTFail("\(alpaca[0].prompt)") }
        XCTAssertEqual(messages.map(\.role), ["user"])
        XCTAssertTrue(messages[0].content.contains("add") && messages[0].content.contains("1 and 2"), messages[0].content)
    }

    func testExplicitReferences() throws {
        let rows = try read("""
            {"prompt": "p", "reference": "r"}
            {"messages": [{"role": "user", "content": "u"}], "reference": ["a", "b"]}
            """)
        XCTAssertEqual(rows[0].prompt, .userText("p"))
        XCTAssertEqual(rows[1].references, ["a", "b"])
    }

    func testBadRowsNameTheLine() {
        assertError("{\"prompt\": \"p\", \"reference\": \"r\"}\n{\"prompt\": \"q\"}", line: 2, contains: "missing field \"reference\"")
        assertError("{\"prompt\": \"p\", \"reference\": \"r\"}\nnot json", line: 2, contains: "invalid JSON")
        assertError("{\"prompt\": \"p\", \"reference\": 3}", line: 1, contains: "field \"reference\"")
        assertError("{\"text\": \"just text\"}", line: 1, contains: "no held-out answer")
        assertError("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", line: 1, contains: "ends with user")
    }
}
