import Foundation
import XCTest
@testable import LatheModels
import LatheTensors
import LatheTestSupport

/// The real default model against transformers' log-probabilities and greedy continuations of the same GGUF
/// (scripts/reference/models.py). Skipped when the model package is not installed.
final class SmolLM2Tests: XCTestCase {
    struct Case: Decodable {
        let ids: [Int]
        let logprobs: [Double?]
        let greedy_ids: [Int]?
    }
    struct Fixture: Decodable { let cases: [Case] }

    static let model: Result<LlamaModel, Error> = Result {
        try ModelFiles.open(try DefaultModelFile.url()).loadModel()
    }

    func loadedModel() throws -> LlamaModel { try Self.model.get() }

    func testLogProbabilitiesMatchTransformers() throws {
        let model = try loadedModel()
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: fixtures.appendingPathComponent("models/smollm2_logprobs.json")))
        for (n, c) in fixture.cases.enumerated() {
            let logits = try model.forward(tokens: c.ids)
            var worst = 0.0
            for i in 1..<c.ids.count {
                let lp = Softmax.logProbability(logits.pointer + (i - 1) * model.config.vocabularySize,
                                                count: model.config.vocabularySize, index: c.ids[i])
                worst = max(worst, abs(lp - c.logprobs[i]!))
            }
            XCTAssertLessThanOrEqual(worst, 1e-3, "case \(n): largest log-probability difference \(worst)")
        }
    }

    func testGreedyContinuationMatchesTransformers() throws {
        let model = try loadedModel()
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: fixtures.appendingPathComponent("models/smollm2_logprobs.json")))
        for c in fixture.cases {
            guard let expected = c.greedy_ids else { continue }
            let generator = TokenGenerator(model: model, stopTokenIDs: [2])
            let output = try generator.generate(prompts: [c.ids], maxTokens: expected.count, sampling: SamplingOptions())
            XCTAssertEqual(output[0], expected.filter { $0 != 2 })
        }
    }
}
