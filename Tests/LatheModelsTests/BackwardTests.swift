import Foundation
import XCTest
import LatheFormats
@testable import LatheModels
@testable import LatheTensors

/// Gradients of the whole model against PyTorch autograd (and PEFT for LoRA) on the tiny models, and against
/// finite differences (scripts/reference/training.py).
final class BackwardTests: XCTestCase {
    struct Batch: Decodable { let ids: [[Int]]; let targets: [[Int]]; let valid: [[Bool]] }

    let batch = try! JSONDecoder().decode(Batch.self, from: Data(contentsOf: fixtures.appendingPathComponent("training/batch.json")))

    func model(_ name: String) throws -> DecoderModel {
        try ModelFiles.open(fixtures.appendingPathComponent("models/\(name)")).loadModel()
    }

    /// Mean cross-entropy over the supervised targets; with `backward`, adds its gradient into the trainable parameters.
    func loss(_ model: DecoderModel, backward: Bool) throws -> Double {
        let rows = batch.ids.count, length = batch.ids[0].count
        let targets = batch.targets.flatMap { $0 }
        let count = targets.filter { $0 >= 0 }.count
        let activations = backward ? TrainingActivations(config: model.config, batchSize: rows, length: length) : nil
        let (sum, counted) = try model.loss(tokens: batch.ids.flatMap { $0 }, batchSize: rows, valid: batch.valid.flatMap { $0 },
                                            targets: targets, scale: 1 / Float(count), saving: activations)
        XCTAssertEqual(counted, count)
        if let activations { model.backward(activations: activations) }
        return sum / Double(count)
    }

    func compare(_ actual: Tensor, _ expected: [Float], _ what: String, rtol: Float = 2e-3, atol: Float = 2e-6) {
        var worst: Float = 0, index = 0
        for i in 0..<expected.count {
            let excess = abs(actual[i] - expected[i]) - rtol * abs(expected[i])
            if !(excess <= worst) { worst = excess; index = i }
        }
        XCTAssertLessThanOrEqual(worst, atol, "\(what): worst at \(index): \(actual[index]) vs \(expected[index]) (rtol \(rtol), atol \(atol))")
    }

    func testFullFineTuningGradientsMatchPyTorch() throws {
        for name in ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-phi3"] {
            let model = try model(name)
            for p in model.parameters { p.trainable = true }
            let reference = try SafetensorsFile(url: fixtures.appendingPathComponent("training/\(name)-full.safetensors"))
            let loss = try loss(model, backward: true)
            XCTAssertEqual(loss, Double(reference.metadata["loss"]!)!, accuracy: 1e-4, "\(name) loss")
            XCTAssertEqual(Set(reference.tensors.map(\.name)), Set(model.parameters.map(\.name)))
            for p in model.parameters {
                compare(p.gradient!, try reference.floats(named: p.name), "\(name) \(p.name)")
            }
        }
    }

    func testLoRAGradientsMatchPEFT() throws {
        for name in ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-phi3"] {
            let model = try model(name)
            let reference = try SafetensorsFile(url: fixtures.appendingPathComponent("training/\(name)-lora.safetensors"))
            var adapters: [LoRAAdapter] = []
            for block in model.blocks {
                for linear in block.linears {
                    let adapter = LoRAAdapter(linear: linear, adapterName: "default", rank: 4, scale: 8.0 / 4, dropout: 0, seed: 1)
                    for p in adapter.parameters {
                        _ = p.tensor.buffer.update(from: try reference.floats(named: p.name))
                    }
                    linear.attach(adapter)
                    adapters.append(adapter)
                }
            }
            let loss = try loss(model, backward: true)
            XCTAssertEqual(loss, Double(reference.metadata["loss"]!)!, accuracy: 1e-4, "\(name) LoRA loss")
            for p in adapters.flatMap(\.parameters) {
                compare(p.gradient!, try reference.floats(named: "grad:" + p.name), "\(name) \(p.name)")
            }
            XCTAssertTrue(model.parameters.allSatisfy { $0.gradient == nil }, "the frozen base gets no gradient")
        }
    }

    /// Central differences in double-precision matmuls, on entries of every kind of parameter.
    func testGradientsMatchFiniteDifferences() throws {
        let saved = MatMul.backend
        MatMul.backend = ReferenceMatMulBackend()
        defer { MatMul.backend = saved }
        let model = try model("tiny-qwen2")
        for p in model.parameters { p.trainable = true }
        _ = try loss(model, backward: true)
        var random = SeededGenerator(seed: 5)
        let h: Float = 1e-2
        var checked = 0
        for p in model.parameters where p.name.contains("layers.1.") || p.name.contains("embed") || p.name.contains("model.norm") {
            for _ in 0..<2 {
                let i = Int(random.next() % UInt64(p.tensor.count))
                let original = p.tensor[i]
                p.tensor[i] = original + h
                let up = try loss(model, backward: false)
                p.tensor[i] = original - h
                let down = try loss(model, backward: false)
                p.tensor[i] = original
                let numeric = (up - down) / Double(2 * h)
                let analytic = Double(p.gradient![i])
                XCTAssertEqual(analytic, numeric, accuracy: 2e-3 + 2e-2 * abs(numeric), "\(p.name)[\(i)]")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 15)
    }
}

extension BackwardTests {
    /// Gradient checkpointing recomputes each block in the backward pass: same gradients, dropout included.
    func testCheckpointingGivesTheSameGradients() throws {
        // qwen3's q/k norms and phi3's fused linears keep and recompute their own activations.
        for name in ["tiny-qwen2", "tiny-qwen3", "tiny-phi3"] {
            func gradients(checkpointing: Bool) throws -> [Float] {
                let model = try model(name)
                let adapters = try model.attachLoRA(LoRAConfiguration(rank: 2, alpha: 4, dropout: 0.3, targets: ["all-linear"]), seed: 4)
                for adapter in adapters { adapter.training = true; adapter.b.tensor.fill(0.05) }
                for p in model.parameters where p.name.contains("norm") { p.trainable = true }
                let rows = batch.ids.count, length = batch.ids[0].count
                let activations = TrainingActivations(config: model.config, batchSize: rows, length: length, checkpointing: checkpointing)
                _ = try model.loss(tokens: batch.ids.flatMap { $0 }, batchSize: rows, valid: batch.valid.flatMap { $0 },
                                   targets: batch.targets.flatMap { $0 }, scale: 0.1, saving: activations)
                model.backward(activations: activations)
                return (adapters.flatMap(\.parameters) + model.parameters.filter(\.trainable)).flatMap { $0.gradient!.array }
            }
            let kept = try gradients(checkpointing: false), recomputed = try gradients(checkpointing: true)
            XCTAssertEqual(kept.count, recomputed.count)
            XCTAssertGreaterThan(kept.filter { $0 != 0 }.count, kept.count / 2)
            XCTAssertEqual(kept, recomputed, name)
        }
    }
}
