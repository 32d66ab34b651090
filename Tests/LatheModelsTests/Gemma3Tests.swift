import Foundation
import XCTest
import LatheFormats
@testable import LatheModels
@testable import LatheTensors

/// The tiny random Gemma 3 of Tests/Fixtures/models/tiny-gemma3 (scripts/reference/models.py, transformers'
/// Gemma3ForCausalLM): three layers (sliding, full, sliding) with a window of 4 under 7- and 9-token sequences,
/// local RoPE base 100 against 1e6, query_pre_attn_scalar 24 against head_dim 16, norms perturbed from zero.
final class Gemma3Tests: XCTestCase {
    let folder = fixtures.appendingPathComponent("models/tiny-gemma3")

    func model() throws -> DecoderModel { try ModelFiles.open(folder).loadModel() }

    func testConfigurationReadsTheGemmaRecipe() throws {
        let c = try model().config
        XCTAssertEqual(c.modelType, "gemma3_text")
        XCTAssertEqual(c.slidingLayers, [0, 2])
        XCTAssertEqual(c.slidingWindow, 4)
        XCTAssertEqual(c.ropeTheta, 1_000_000)
        XCTAssertEqual(c.localRopeTheta, 100)
        XCTAssertEqual(c.attentionScale, Float(1 / 24.0.squareRoot()))
        XCTAssertEqual(c.embeddingScale, Float(32).squareRoot())
        XCTAssertTrue(c.tieWordEmbeddings && c.sandwichNorms && c.qkNorm)
        XCTAssertEqual(c.gatedActivation, .geluTanh)
        XCTAssertEqual(c.normWeightOffset, 1)
    }

    func testLogitsMatchTransformers() throws {
        let expected = try JSONDecoder().decode(ExpectedLogits.self, from: Data(contentsOf: folder.appendingPathComponent("expected.json")))
        let logits = try model().forward(tokens: expected.ids.flatMap { $0 }, batchSize: expected.ids.count)
        let want = expected.logits.flatMap { $0.flatMap { $0 } }
        XCTAssertEqual(logits.count, want.count)
        let (worst, index) = largestDifference(logits.array, want)
        XCTAssertLessThanOrEqual(worst, 2e-4, "largest logit difference \(worst) at \(index)")
    }

    func testEveryGradientMatchesPyTorch() throws {
        struct Batch: Decodable { let ids: [[Int]]; let targets: [[Int]]; let valid: [[Bool]] }
        let batch = try JSONDecoder().decode(Batch.self, from: Data(contentsOf: fixtures.appendingPathComponent("training/batch.json")))
        let reference = try SafetensorsFile(url: folder.appendingPathComponent("gradients.safetensors"))
        let model = try model()
        for p in model.parameters { p.trainable = true }
        let rows = batch.ids.count, length = batch.ids[0].count
        let targets = batch.targets.flatMap { $0 }, count = targets.filter { $0 >= 0 }.count
        let activations = TrainingActivations(config: model.config, batchSize: rows, length: length)
        let (sum, counted) = try model.loss(tokens: batch.ids.flatMap { $0 }, batchSize: rows, valid: batch.valid.flatMap { $0 },
                                            targets: targets, scale: 1 / Float(count), saving: activations)
        model.backward(activations: activations)
        XCTAssertEqual(counted, Int(reference.metadata["count"]!)!)
        XCTAssertEqual(sum / Double(count), Double(reference.metadata["loss"]!)!, accuracy: 1e-4, "loss")
        XCTAssertEqual(Set(reference.tensors.map(\.name)), Set(model.parameters.map(\.name)))
        for p in model.parameters {
            let expected = try reference.floats(named: p.name), actual = p.gradient!.array
            var worst: Float = 0, index = 0
            for i in expected.indices {
                let excess = abs(actual[i] - expected[i]) - 2e-3 * abs(expected[i])
                if !(excess <= worst) { worst = excess; index = i }
            }
            XCTAssertLessThanOrEqual(worst, 2e-6, "\(p.name): worst at \(index): \(actual[index]) vs \(expected[index]) (rtol 2e-3, atol 2e-6)")
        }
    }

    func testDecodingWithTheCachePastTheWindowEqualsOneFullPass() throws {
        // Nine positions under a window of four: the later steps' sliding layers must drop the earliest cached keys.
        try assertCachedDecodingEqualsOneFullPass(try model(), ids: [5, 17, 3, 90, 41, 8, 66, 12, 2], promptLength: 2)
    }

    /// config.json as Lathe writes it for Gemma 3 (with the weights) reads back as the same model: the recipe's
    /// fields (layer types, window, local base, query_pre_attn_scalar, activation) survive.
    func testHuggingFaceExportReadsBackAsTheSameModel() throws {
        let model = try model()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gemma3-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try model.config.huggingFaceJSON(bosTokenID: 2, eosTokenID: 1).write(to: folder.appendingPathComponent("config.json"))
        _ = try ModelExport.writeSafetensorsFolder(model, to: folder, dtype: .f32, copying: [])
        let reloaded = try ModelFiles.open(folder).loadModel()
        XCTAssertEqual(reloaded.config, model.config)
        let ids = [5, 17, 3, 90, 41, 8, 66]
        XCTAssertEqual(try reloaded.forward(tokens: ids).array, try model.forward(tokens: ids).array)
    }

    /// The family's default chat template is the official one, whose renders the template fixture holds against
    /// transformers (Tests/Fixtures/templates/templates.json, checked by ReferenceTemplateTests).
    func testDefaultChatTemplateIsGemma3sOwn() throws {
        let root = try JSONValue.parse(Data(contentsOf: fixtures.appendingPathComponent("templates/templates.json")))
        XCTAssertEqual(Gemma3Family().defaultChatTemplate, root["templates"]?["gemma3"]?.string)
        XCTAssertEqual(Gemma3Family().endOfTurnTokens, ["<end_of_turn>"])
        XCTAssertNil(LlamaFamily().defaultChatTemplate)
    }

    /// The config.json of the real google/gemma-3 checkpoints (before transformers 5): rope_theta,
    /// rope_local_base_freq, rope_scaling for the global layers, sliding_window_pattern instead of layer_types; and the
    /// multimodal `gemma3` config with a `text_config`.
    func testOlderAndMultimodalConfigFiles() throws {
        let text = #"""
        {"model_type": "gemma3_text", "vocab_size": 96, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 12,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16,
         "sliding_window": 8, "sliding_window_pattern": 6, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
         "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "final_logit_softcapping": null,
         "attn_logit_softcapping": null, "hidden_activation": "gelu_pytorch_tanh"}
        """#
        let c = try DecoderConfiguration.decode(huggingFaceJSON: Data(text.utf8), source: "config.json")
        XCTAssertEqual(c.slidingLayers, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10])
        XCTAssertEqual(c.ropeLinearFactor, 8)
        XCTAssertEqual(c.localRopeTheta, 10000)
        XCTAssertTrue(c.tieWordEmbeddings)
        let scaled = DecoderModel(config: c)
        XCTAssertEqual(Double(scaled.rope.inverseFrequencies[1]), 1 / pow(1e6, 2.0 / 16) / 8, accuracy: 1e-8)
        XCTAssertEqual(Double(scaled.localRope!.inverseFrequencies[1]), 1 / pow(1e4, 2.0 / 16), accuracy: 1e-7)

        let multimodal = #"{"model_type": "gemma3", "text_config": "# + text + "}"
        let unwrapped = try DecoderConfiguration.decode(huggingFaceJSON: Data(multimodal.utf8), source: "config.json")
        XCTAssertEqual(unwrapped, c)

        let capped = text.replacingOccurrences(of: #""final_logit_softcapping": null"#, with: #""final_logit_softcapping": 30.0"#)
        XCTAssertThrowsError(try DecoderConfiguration.decode(huggingFaceJSON: Data(capped.utf8), source: "config.json")) { error in
            XCTAssertEqual("\(error)", "config.json: field 'final_logit_softcapping' is not supported (Gemma 3 leaves it null)")
        }
        let badRope = text.replacingOccurrences(of: #""rope_type": "linear""#, with: #""rope_type": "yarn""#)
        XCTAssertThrowsError(try DecoderConfiguration.decode(huggingFaceJSON: Data(badRope.utf8), source: "config.json")) { error in
            XCTAssertTrue("\(error)".contains("yarn"), "\(error)")
        }
    }
}
