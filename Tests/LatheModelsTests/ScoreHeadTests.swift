import Foundation
import XCTest
@testable import LatheModels
@testable import LatheTensors

/// The heads RLHF adds: log-probabilities at a sampling temperature and a score head on the final hidden states,
/// their gradients through the whole model against central differences.
final class ScoreHeadTests: XCTestCase {
    struct Batch: Decodable { let ids: [[Int]]; let targets: [[Int]]; let valid: [[Bool]] }
    let batch = try! JSONDecoder().decode(Batch.self, from: Data(contentsOf: fixtures.appendingPathComponent("training/batch.json")))

    /// J = Σ c·log p_T(target) + Σ d·score(row) on a tiny model with every weight and the head trainable; with
    /// `backward`, adds dJ into the gradients.
    func objective(_ model: DecoderModel, head: ScoreHead, temperature: Float, logProbabilities: Bool,
                   backward: Bool) throws -> Double {
        let rows = batch.ids.count, length = batch.ids[0].count
        let tokens = batch.ids.flatMap { $0 }, targets = batch.targets.flatMap { $0 }, valid = batch.valid.flatMap { $0 }
        let activations = backward ? TrainingActivations(config: model.config, batchSize: rows, length: length) : nil
        let scored = (0..<rows).map { $0 * length + length - 2 }
        let scoreWeights: [Float] = scored.indices.map { 0.5 - Float($0) * 0.7 }
        let tokenWeights: [Float] = targets.indices.map { targets[$0] < 0 ? 0 : Float(($0 % 5) - 2) * 0.3 }
        var value = 0.0
        let hidden: Tensor
        if logProbabilities {
            let logP = try model.targetLogProbabilities(tokens: tokens, batchSize: rows, valid: valid, targets: targets,
                                                        temperature: temperature, saving: activations)
            value += zip(logP, tokenWeights).reduce(0) { $0 + Double($1.0 * $1.1) }
            if let activations {
                hidden = model.finalHiddenStates(of: activations)
            } else {
                hidden = try model.finalHiddenStates(tokens: tokens, batchSize: rows, valid: valid)
            }
        } else {
            hidden = try model.finalHiddenStates(tokens: tokens, batchSize: rows, valid: valid, saving: activations)
        }
        value += zip(head.scores(hidden, rows: scored), scoreWeights).reduce(0) { $0 + Double($1.0 * $1.1) }
        if let activations {
            let dHidden = Tensor(zeros: hidden.shape)
            head.backward(hidden: hidden, rows: scored, scoreGradient: scoreWeights, dHidden: dHidden)
            if logProbabilities {
                model.backward(activations: activations, targets: targets, logProbabilityGradient: tokenWeights,
                               temperature: temperature, finalHiddenGradient: dHidden)
            } else {
                model.backward(activations: activations, finalHiddenGradient: dHidden)
            }
        }
        return value
    }

    func check(temperature: Float, logProbabilities: Bool) throws {
        let saved = MatMul.backend
        MatMul.backend = ReferenceMatMulBackend()
        defer { MatMul.backend = saved }
        let model = try ModelFiles.open(fixtures.appendingPathComponent("models/tiny-qwen2")).loadModel()
        let head = ScoreHead(hiddenSize: model.config.hiddenSize)
        var random = SeededGenerator(seed: 9)
        for i in 0..<head.weight.tensor.count { head.weight.tensor[i] = random.nextUnitFloat() - 0.5 }
        head.weight.trainable = true
        for p in model.parameters { p.trainable = true }
        _ = try objective(model, head: head, temperature: temperature, logProbabilities: logProbabilities, backward: true)
        let h: Float = 1e-2
        var checked = 0
        let parameters = [head.weight] + model.parameters.filter {
            $0.name.contains("layers.1.") || $0.name.contains("embed") || $0.name.contains("model.norm")
        }
        for p in parameters {
            for _ in 0..<2 {
                let i = Int(random.next() % UInt64(p.tensor.count))
                let original = p.tensor[i]
                p.tensor[i] = original + h
                let up = try objective(model, head: head, temperature: temperature, logProbabilities: logProbabilities, backward: false)
                p.tensor[i] = original - h
                let down = try objective(model, head: head, temperature: temperature, logProbabilities: logProbabilities, backward: false)
                p.tensor[i] = original
                let numeric = (up - down) / Double(2 * h)
                XCTAssertEqual(Double(p.gradient![i]), numeric, accuracy: 2e-3 + 2e-2 * abs(numeric),
                               "T=\(temperature) \(p.name)[\(i)]")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 15)
    }

    func testLogProbabilitiesAtATemperatureWithAValueHeadMatchFiniteDifferences() throws {
        try check(temperature: 0.7, logProbabilities: true)
    }

    func testScoreHeadAloneMatchesFiniteDifferences() throws {
        try check(temperature: 1, logProbabilities: false)
    }

    /// log softmax(logits / T) from the chunked head equals the same from the full logits.
    func testTemperatureDividesTheLogits() throws {
        let model = try ModelFiles.open(fixtures.appendingPathComponent("models/tiny-llama")).loadModel()
        let tokens = batch.ids[0], targets = batch.targets[0]
        let logP = try model.targetLogProbabilities(tokens: tokens, targets: targets, temperature: 0.5)
        let logits = try model.forward(tokens: tokens)
        let n = model.config.vocabularySize
        for (row, target) in targets.enumerated() where target >= 0 {
            let scaled = (0..<n).map { Double(logits[row * n + $0]) / 0.5 }
            let top = scaled.max()!
            let expected = scaled[target] - top - log(scaled.reduce(0) { $0 + exp($1 - top) })
            XCTAssertEqual(Double(logP[row]), expected, accuracy: 1e-4, "row \(row)")
        }
        XCTAssertThrowsError(try model.targetLogProbabilities(tokens: tokens, targets: targets, temperature: 0))
    }
}
