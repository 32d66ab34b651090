import Foundation
import XCTest
@testable import LatheModels
import LatheTensors
import LatheTestSupport

/// Gemma 3 270M (Q4_K_M GGUF) against transformers' log-probabilities, greedy continuations and token ids on the
/// same file (scripts/reference/models.py, Tests/Fixtures/models/gemma3_logprobs.json). Skipped when the model is
/// not installed.
final class Gemma3RealModelTests: XCTestCase {
    struct Case: Decodable {
        let text: String
        let ids: [Int]
        let logprobs: [Double?]
        let greedy_ids: [Int]?
    }
    struct Fixture: Decodable { let cases: [Case] }

    static let model: Result<LanguageModel, Error> = Result { try LanguageModel.load(try Gemma3ModelFile.url().path) }
    let fixture = Result {
        try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: fixtures.appendingPathComponent("models/gemma3_logprobs.json")))
    }

    func testTheFileReadsAsGemma3WithItsQuantizedBlocks() throws {
        let lm = try Self.model.get()
        let c = lm.model.config
        XCTAssertEqual(c.modelType, "gemma3_text")
        XCTAssertEqual(c.layerCount, 18)
        XCTAssertEqual(c.slidingWindow, 512)
        XCTAssertEqual(c.slidingLayers.count, 15, "layers 5, 11 and 17 are global")
        XCTAssertEqual(c.attentionScale, 1 / 16)
        XCTAssertNotNil(lm.chatTemplate, "the family's default template")
        XCTAssertTrue(lm.stopTokenIDs.contains(try XCTUnwrap(lm.tokenizer.id(of: "<end_of_turn>"))))
    }

    func testTokenIdsAndLogProbabilitiesMatchTransformers() throws {
        let lm = try Self.model.get()
        for (n, c) in try fixture.get().cases.enumerated() {
            XCTAssertEqual(lm.tokenizer.encode(c.text, addSpecialTokens: true), c.ids, "case \(n) ids")
            let logits = try lm.model.forward(tokens: c.ids)
            var worst = 0.0
            for i in 1..<c.ids.count {
                let lp = Softmax.logProbability(logits.pointer + (i - 1) * lm.model.config.vocabularySize,
                                                count: lm.model.config.vocabularySize, index: c.ids[i])
                worst = max(worst, abs(lp - c.logprobs[i]!))
            }
            XCTAssertLessThanOrEqual(worst, 1e-3, "case \(n): largest log-probability difference \(worst)")
        }
    }

    func testGreedyContinuationMatchesTransformers() throws {
        let lm = try Self.model.get()
        for c in try fixture.get().cases {
            guard let expected = c.greedy_ids else { continue }
            let generator = TokenGenerator(model: lm.model, stopTokenIDs: lm.stopTokenIDs)
            let output = try generator.generate(prompts: [c.ids], maxTokens: expected.count, sampling: SamplingOptions())
            XCTAssertEqual(output[0], expected, c.text)
        }
    }
}
