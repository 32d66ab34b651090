import Foundation
import XCTest
@testable import LatheModels
@testable import LatheTensors
import LatheTestSupport

/// PEFT adapters in and out, switching adapters off and on, and merging.
final class AdapterTests: XCTestCase {
    func tinyLlama() throws -> DecoderModel {
        try ModelFiles.open(fixtures.appendingPathComponent("models/tiny-llama")).loadModel()
    }

    struct Expected: Decodable { let ids: [[Int]]; let logits: [[[Float]]] }

    func testAdapterSavedByPEFTGivesPEFTsLogits() throws {
        let model = try tinyLlama()
        let config = try PEFTAdapter.load(fixtures.appendingPathComponent("training/peft-tiny-llama"), into: model)
        XCTAssertEqual(Set(config.targets), ["q_proj", "v_proj", "down_proj"])
        XCTAssertEqual(model.adapters.count, 3 * model.config.layerCount)
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: fixtures.appendingPathComponent("training/peft-tiny-llama-logits.json")))
        let logits = try model.forward(tokens: expected.ids.flatMap { $0 }, batchSize: expected.ids.count)
        let (worst, index) = largestDifference(logits.array, expected.logits.flatMap { $0.flatMap { $0 } })
        XCTAssertLessThanOrEqual(worst, 2e-4, "largest logit difference \(worst) at \(index)")
    }

    func testSaveLoadSwitchOffAndMergeAreConsistent() throws {
        let ids = [3, 14, 15, 92, 65, 35, 89]
        let base = try tinyLlama()
        let baseLogits = try base.forward(tokens: ids).array

        let model = try tinyLlama()
        let config = LoRAConfiguration(rank: 2, alpha: 4, targets: ["all-linear"], rsLoRA: true)
        let adapters = try model.attachLoRA(config, seed: 3)
        XCTAssertEqual(adapters.count, 7 * model.config.layerCount)
        XCTAssertEqual(adapters[0].scale, 4 / Float(2).squareRoot())
        // B starts at zero: a fresh adapter leaves the model unchanged.
        XCTAssertEqual(try model.forward(tokens: ids).array, baseLogits)
        var random = SeededGenerator(seed: 9)
        for adapter in adapters { for i in 0..<adapter.b.tensor.count { adapter.b.tensor[i] = random.nextUnitFloat() - 0.5 } }
        let adapted = try model.forward(tokens: ids).array
        XCTAssertGreaterThan(largestDifference(adapted, baseLogits).0, 1e-2)

        // Switched off, the model is the base again, without a copy of the base.
        model.setAdapters(enabled: false)
        XCTAssertLessThanOrEqual(largestDifference(try model.forward(tokens: ids).array, baseLogits).0, 1e-6)
        model.setAdapters(enabled: true)

        // Saved and loaded onto a fresh base, the adapter gives the same logits.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-adapter-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try PEFTAdapter.save(model, config: config, baseModel: "tiny-llama", to: folder)
        let reloaded = try tinyLlama()
        XCTAssertEqual(try PEFTAdapter.load(folder, into: reloaded).targets, config.targetModules(in: reloaded.config.family))
        XCTAssertLessThanOrEqual(largestDifference(try reloaded.forward(tokens: ids).array, adapted).0, 1e-6)

        // Merged into the base weights, the model computes the same function with no adapter left.
        reloaded.mergeAdapters()
        XCTAssertTrue(reloaded.adapters.isEmpty)
        XCTAssertLessThanOrEqual(largestDifference(try reloaded.forward(tokens: ids).array, adapted).0, 1e-4)
    }

    func testBadAdapterFoldersAreNamed() throws {
        let model = try tinyLlama()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-bad-adapter-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        XCTAssertThrowsError(try PEFTAdapter.load(folder, into: model)) { XCTAssertTrue("\($0)".contains("adapter_config.json"), "\($0)") }
        try Data(#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}"#.utf8)
            .write(to: folder.appendingPathComponent("adapter_config.json"))
        XCTAssertThrowsError(try PEFTAdapter.load(folder, into: model)) { XCTAssertTrue("\($0)".contains("adapter_model.safetensors"), "\($0)") }
        // Weights for another rank than the config says.
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("training/peft-tiny-llama/adapter_model.safetensors"),
                                         to: folder.appendingPathComponent("adapter_model.safetensors"))
        try Data(#"{"peft_type": "LORA", "r": 8, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"]}"#.utf8)
            .write(to: folder.appendingPathComponent("adapter_config.json"))
        XCTAssertThrowsError(try PEFTAdapter.load(folder, into: try tinyLlama())) { XCTAssertTrue("\($0)".contains("shape"), "\($0)") }
    }
}

final class ExportTests: XCTestCase {
    func testMergedModelExportsToGGUFThatComputesTheSameFunction() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = folder.appendingPathComponent("tiny.gguf")
        try TinyModel.write(to: source)
        let lm = try LanguageModel.load(source.path)
        let adapters = try lm.model.attachLoRA(LoRAConfiguration(rank: 2, alpha: 2, targets: ["all-linear"]), seed: 1)
        var random = SeededGenerator(seed: 2)
        for adapter in adapters { for i in 0..<adapter.b.tensor.count { adapter.b.tensor[i] = random.nextUnitFloat() - 0.5 } }
        let ids = lm.tokenizer.encode("the theory of the inn")
        let adapted = try lm.model.forward(tokens: ids).array
        lm.model.mergeAdapters()
        let exported = try ModelExport.write(lm, to: folder.appendingPathComponent("out"))
        let reloaded = try LanguageModel.load(exported.path)
        XCTAssertEqual(reloaded.tokenizer.encode("the theory of the inn"), ids, "metadata (tokenizer) carried over")
        XCTAssertLessThanOrEqual(largestDifference(try reloaded.model.forward(tokens: ids).array, adapted).0, 1e-4)
    }
}
