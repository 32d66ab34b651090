import Foundation
import XCTest
import LatheTestSupport
import LatheData
@testable import LatheEval

/// Perplexity comes from the training loss code.
final class PerplexityTests: TinyModelTestCase {
    func rows(_ lines: [String]) throws -> [DatasetRow] {
        let url = tiny.file("rows-\(UUID().uuidString).jsonl")
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return try DatasetReader.read(url)
    }

    func testPerplexityIsTheExponentialOfTheTrainingLossAndSlidesOverLongTexts() throws {
        let renderer = SFTRenderer(model: lm, options: try SFTOptions(maxLength: 10_000, lossOn: .all))
        let data = try rows([#"{"text": "the theory of the inn on the river then the tea and the art of the inn"}"#])
        let whole = try PerplexityReport.evaluate(rows: data, renderer: renderer, window: 10_000)
        let example = try renderer.render(data[0])
        let targets = example.ids.indices.map { t in t + 1 < example.ids.count && example.supervised[t + 1] ? example.ids[t + 1] : -1 }
        let (sum, count) = try languageModelLoss(lm.model, batch: Batch(rows: [example.ids], targets: [targets]))
        XCTAssertEqual(whole.tokens, count)
        XCTAssertEqual(whole.perplexity, exp(sum / Double(count)), accuracy: 1e-9)
        // A window shorter than the text scores every token exactly once, each with some context.
        let sliding = try PerplexityReport.evaluate(rows: data, renderer: renderer, window: 16)
        XCTAssertEqual(sliding.tokens, whole.tokens)
        XCTAssertNotEqual(sliding.perplexity, whole.perplexity)
    }
}
