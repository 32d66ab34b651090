import Foundation
import XCTest
@testable import LatheModels
import LatheTensors
import LatheTestSupport
import LatheFormats

/// The real default model against transformers' log-probabilities and greedy continuations of the same GGUF
/// (scripts/reference/models.py). Skipped when the model package is not installed.
final class SmolLM2Tests: XCTestCase {
    struct Case: Decodable {
        let ids: [Int]
        let logprobs: [Double?]
        let greedy_ids: [Int]?
    }
    struct Fixture: Decodable { let cases: [Case] }

    static let model: Result<DecoderModel, Error> = Result {
        try ModelFiles.open(try DefaultModelFile.url()).loadModel()
    }

    func loadedModel() throws -> DecoderModel { try Self.model.get() }

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

extension SmolLM2Tests {
    /// LoRA on q/v of layers 0, 14 and 29 of the real model: loss and every A/B gradient against PEFT
    /// (scripts/reference/training.py).
    func testLoRAGradientsMatchPEFTOnTheRealModel() throws {
        let model = try loadedModel()
        let reference = try SafetensorsFile(url: fixtures.appendingPathComponent("training/smollm2-lora.safetensors"))
        let ids = try JSONDecoder().decode([Int].self, from: Data(reference.metadata["ids"]!.utf8))
        let targets = try JSONDecoder().decode([Int].self, from: Data(reference.metadata["targets"]!.utf8))
        var adapters: [LoRAAdapter] = []
        for layer in [0, 14, 29] {
            for linear in [model.blocks[layer].query!, model.blocks[layer].value!] {
                let adapter = LoRAAdapter(linear: linear, adapterName: "gradient-check", rank: 4, scale: 2, dropout: 0, seed: 0)
                for p in adapter.parameters { _ = p.tensor.buffer.update(from: try reference.floats(named: p.name)) }
                linear.attach(adapter)
                adapters.append(adapter)
            }
        }
        defer { for block in model.blocks { for linear in block.linears { linear.detachAdapters(named: "gradient-check") } } }
        let count = targets.filter { $0 >= 0 }.count
        let activations = TrainingActivations(config: model.config, batchSize: 1, length: ids.count)
        let (sum, _) = try model.loss(tokens: ids, targets: targets, scale: 1 / Float(count), saving: activations)
        model.backward(activations: activations)
        XCTAssertEqual(sum / Double(count), Double(reference.metadata["loss"]!)!, accuracy: 1e-3)
        for p in adapters.flatMap(\.parameters) {
            let expected = try reference.floats(named: "grad:" + p.name)
            let scale = expected.map { abs($0) }.max() ?? 1
            var worst: Float = 0
            for i in expected.indices { worst = max(worst, abs(p.gradient![i] - expected[i])) }
            XCTAssertLessThanOrEqual(worst, 2e-3 * scale, "\(p.name): largest difference \(worst), largest gradient \(scale)")
        }
    }
}
