import Foundation
import XCTest
import LatheFormats
@testable import LatheModels
@testable import LatheTensors

/// Qwen3 and Phi-3 against transformers and PEFT (scripts/reference/models.py --families, training.py --families):
/// logits from the Hugging Face folder and from the GGUF llama.cpp's names describe, PEFT's adapters in and out,
/// adapter conversions, merges and export.
final class FamilyTests: XCTestCase {
    let tolerance: Float = 2e-4  // absolute, on logits of magnitude ~1
    struct Expected: Decodable { let ids: [[Int]]; let logits: [[[Float]]] }

    func model(_ name: String) throws -> DecoderModel {
        try ModelFiles.open(fixtures.appendingPathComponent("models/\(name)")).loadModel()
    }

    func assertLogits(_ model: DecoderModel, _ expectedFile: String, _ what: String) throws {
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: fixtures.appendingPathComponent(expectedFile)))
        let logits = try model.forward(tokens: expected.ids.flatMap { $0 }, batchSize: expected.ids.count)
        let want = expected.logits.flatMap { $0.flatMap { $0 } }
        XCTAssertEqual(logits.count, want.count, what)
        let (worst, index) = largestDifference(logits.array, want)
        XCTAssertLessThanOrEqual(worst, tolerance, "\(what): largest logit difference \(worst) at \(index)")
    }

    func temporaryFolder() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-family-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func testQwen3FromSafetensorsAndGGUF() throws {
        let hf = try model("tiny-qwen3")
        XCTAssertTrue(hf.config.qkNorm)
        XCTAssertEqual(hf.config.headDim, 16, "head_dim is read, not hidden / heads")
        XCTAssertNil(hf.lmHead)
        try assertLogits(hf, "models/tiny-qwen3/expected.json", "tiny qwen3")
        let gguf = try model("tiny-qwen3.gguf")
        XCTAssertEqual(gguf.config, hf.config.withMaxPositions(gguf.config.maxPositions))
        try assertLogits(gguf, "models/tiny-qwen3-gguf.json", "tiny qwen3 gguf")
    }

    func testPhi3FromSafetensorsAndGGUF() throws {
        let hf = try model("tiny-phi3")
        XCTAssertTrue(hf.config.fusedQKV && hf.config.fusedGateUp)
        XCTAssertNil(hf.blocks[0].query)
        XCTAssertEqual(hf.blocks[0].queryKeyValue?.outFeatures, (4 + 2 * 2) * 8)
        XCTAssertEqual(hf.blocks[0].gateUp?.outFeatures, 2 * 64)
        try assertLogits(hf, "models/tiny-phi3/expected.json", "tiny phi3")
        try assertLogits(try model("tiny-phi3.gguf"), "models/tiny-phi3-gguf.json", "tiny phi3 gguf")
    }

    func testParameterCountsAreTheFilesTensorSizes() throws {
        for name in ["tiny-qwen3", "tiny-phi3"] {
            let model = try model(name)
            XCTAssertEqual(model.config.parameterCount, model.parameters.reduce(0) { $0 + $1.tensor.count }, name)
        }
    }

    /// PEFT's adapter on every linear (Phi-3: one pair per fused linear) gives PEFT's logits; Lathe writes it back with
    /// PEFT's own tensor names, shapes and target_modules, and reads that back to the same logits.
    func testPEFTAdaptersBothWays() throws {
        for (name, targets) in [("tiny-qwen3", 7), ("tiny-phi3", 4)] {
            let model = try model(name)
            let peft = fixtures.appendingPathComponent("training/peft-\(name)")
            let config = try PEFTAdapter.load(peft, into: model)
            XCTAssertEqual(model.adapters.count, targets * model.config.layerCount, name)
            try assertLogits(model, "training/peft-\(name)-logits.json", "PEFT adapter on \(name)")

            let saved = temporaryFolder()
            try PEFTAdapter.save(model, config: config, baseModel: name, to: saved)
            let theirs = try SafetensorsFile(url: peft.appendingPathComponent("adapter_model.safetensors"))
            let ours = try SafetensorsFile(url: saved.appendingPathComponent("adapter_model.safetensors"))
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: ours.tensors.map { ($0.name, $0.dimensions) }),
                           Dictionary(uniqueKeysWithValues: theirs.tensors.map { ($0.name, $0.dimensions) }), name)
            let theirConfig = try JSONValue.parse(Data(contentsOf: peft.appendingPathComponent("adapter_config.json")))
            let ourConfig = try JSONValue.parse(Data(contentsOf: saved.appendingPathComponent("adapter_config.json")))
            XCTAssertEqual(Set(ourConfig["target_modules"]?.array?.compactMap(\.string) ?? []),
                           Set(theirConfig["target_modules"]?.array?.compactMap(\.string) ?? []), name)
            let reloaded = try self.model(name)
            try PEFTAdapter.load(saved, into: reloaded)
            try assertLogits(reloaded, "training/peft-\(name)-logits.json", "Lathe's copy of the PEFT adapter on \(name)")

            // Merged into the base, the same function with no adapter left.
            reloaded.mergeAdapters()
            XCTAssertTrue(reloaded.adapters.isEmpty)
            try assertLogits(reloaded, "training/peft-\(name)-logits.json", "merged PEFT adapter on \(name)")
        }
    }

    /// PEFT → MLX-LM → PEFT and PEFT → llama.cpp GGUF LoRA → PEFT give PEFT's logits; the files name the fused linears
    /// as mlx-lm (`self_attn.qkv_proj`) and llama.cpp (`blk.N.attn_qkv.weight.lora_a`, `ffn_up` for gate_up) do.
    func testAdapterConversionsKeepTheFunction() throws {
        for name in ["tiny-qwen3", "tiny-phi3"] {
            let peft = fixtures.appendingPathComponent("training/peft-\(name)")
            let ggufBase = fixtures.appendingPathComponent("models/\(name).gguf").path
            let folder = temporaryFolder()
            for (format, base) in [(AdapterFormat.mlx, nil), (.gguf, ggufBase)] {
                let converted = folder.appendingPathComponent("converted-\(format)"), back = folder.appendingPathComponent("back-\(format)")
                try AdapterConversion.convert(input: peft, to: format, output: converted, model: base)
                try AdapterConversion.convert(input: converted, to: .peft, output: back, model: base)
                let model = try model(name)
                try PEFTAdapter.load(back, into: model)
                try assertLogits(model, "training/peft-\(name)-logits.json", "\(name) \(format) round trip")
            }
            let mlx = try SafetensorsFile(url: folder.appendingPathComponent("converted-mlx/adapters.safetensors")).tensors.map(\.name)
            let gguf = try GGUFFile(url: folder.appendingPathComponent("converted-gguf")).tensors.map(\.name)
            if name == "tiny-phi3" {
                XCTAssertTrue(mlx.contains("model.layers.0.self_attn.qkv_proj.lora_a") && mlx.contains("model.layers.1.mlp.gate_up_proj.lora_b"), "\(mlx)")
                XCTAssertTrue(gguf.contains("blk.0.attn_qkv.weight.lora_a") && gguf.contains("blk.1.ffn_up.weight.lora_b"), "\(gguf)")
            } else {
                XCTAssertTrue(gguf.contains("blk.0.attn_q.weight.lora_a") && gguf.contains("blk.1.ffn_gate.weight.lora_b"), "\(gguf)")
            }
        }
    }

    /// The Hugging Face folder Lathe writes (config.json from the family, weights by name) loads to the same logits.
    func testHuggingFaceExportLoadsBack() throws {
        for name in ["tiny-qwen3", "tiny-phi3"] {
            let model = try model(name)
            let folder = temporaryFolder()
            try ModelExport.writeNewModel(model, tokenizerFolder: folder, bosTokenID: nil, eosTokenID: nil, to: folder)
            let config = try JSONValue.parse(Data(contentsOf: folder.appendingPathComponent("config.json")))
            XCTAssertEqual(config["model_type"]?.string, name.dropFirst(5).description)
            let reloaded = try ModelFiles.open(folder).loadModel()
            XCTAssertEqual(reloaded.config, model.config, name)
            try assertLogits(reloaded, "models/\(name)/expected.json", "\(name) exported")
        }
    }

    func testLoRATargetsFollowTheFamily() throws {
        let phi3 = try model("tiny-phi3")
        let defaults = try phi3.attachLoRA(LoRAConfiguration(), seed: 1)
        XCTAssertEqual(Set(defaults.map { $0.parameters[0].name.split(separator: ".")[4] }), ["qkv_proj", "o_proj"])
        XCTAssertThrowsError(try self.model("tiny-phi3").attachLoRA(LoRAConfiguration(targets: ["q_proj", "v_proj"]), seed: 1)) {
            XCTAssertTrue("\($0)".contains("'q_proj'") && "\($0)".contains("qkv_proj"), "\($0)")
        }
        XCTAssertEqual(try self.model("tiny-qwen3").attachLoRA(LoRAConfiguration(targets: ["all-linear"]), seed: 1).count, 7 * 2)
    }

    func testUnsupportedConfigurationsNameTheField() throws {
        let base = try JSONValue.parse(Data(contentsOf: fixtures.appendingPathComponent("models/tiny-phi3/config.json"))).object!
        func decode(_ change: (inout [String: JSONValue]) -> Void) throws -> DecoderConfiguration {
            var object = base
            change(&object)
            return try DecoderConfiguration.decode(huggingFaceJSON: try JSONValue.object(object).formatted(), source: "config.json")
        }
        XCTAssertNoThrow(try decode { _ in })
        XCTAssertThrowsError(try decode { $0["rope_parameters"] = .object(["rope_type": .string("longrope"), "rope_theta": .number(1e4)]) }) {
            XCTAssertTrue("\($0)".contains("config.json") && "\($0)".contains("rope_parameters.rope_type") && "\($0)".contains("longrope"), "\($0)")
        }
        XCTAssertThrowsError(try decode { $0["rope_parameters"] = .object(["partial_rotary_factor": .number(0.75), "rope_theta": .number(1e4)]) }) {
            XCTAssertTrue("\($0)".contains("rope_parameters.partial_rotary_factor"), "\($0)")
        }
        XCTAssertThrowsError(try decode { $0["model_type"] = .string("gemma2") }) {
            XCTAssertTrue("\($0)".contains("'gemma2'") && "\($0)".contains("qwen3") && "\($0)".contains("phi3"), "\($0)")
        }
    }
}

extension DecoderConfiguration {
    func withMaxPositions(_ positions: Int) -> DecoderConfiguration {
        var copy = self
        copy.maxPositions = positions
        return copy
    }
}
