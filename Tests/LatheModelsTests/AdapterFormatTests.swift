import Foundation
import XCTest
import LatheFormats
@testable import LatheModels
import LatheTestSupport

/// Adapters in llama.cpp's GGUF LoRA and MLX-LM's folder: written as those tools' own writers write them
/// (scripts/reference/adapters.py), read back to the same updates, and round trips that leave the logits alone.
final class AdapterFormatTests: XCTestCase {
    var folder: URL!
    let adapters = fixtures.appendingPathComponent("adapters")
    let peft = fixtures.appendingPathComponent("training/peft-tiny-llama")
    let tinyFolder = fixtures.appendingPathComponent("models/tiny-llama")

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-adapter-formats-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    var base: AdapterBaseModel { get throws { try AdapterBaseModel(model: tinyFolder.path) } }

    /// Every linear's ΔW of `got` against `expected`: the largest difference relative to the linear's largest value.
    func assertSameUpdates(_ got: LoRAWeights, _ expected: LoRAWeights, relative: Float = 1e-6, _ what: String,
                           file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Set(got.pairs.keys), Set(expected.pairs.keys), what, file: file, line: line)
        for module in expected.moduleNames {
            guard let g = got.delta(of: module), let e = expected.delta(of: module) else { continue }
            let scale = e.map(abs).max() ?? 0
            let (worst, index) = largestDifference(g, e)
            XCTAssertLessThanOrEqual(worst, relative * scale, "\(what): \(module) differs by \(worst) at \(index) (largest value \(scale))",
                                     file: file, line: line)
        }
    }

    func testGGUFLoRAIsWhatLlamaCppsConverterWrites() throws {
        let written = folder.appendingPathComponent("rslora.gguf")
        let report = try AdapterConversion.convert(input: adapters.appendingPathComponent("rslora-tiny-llama"), to: .gguf,
                                                   output: written, model: tinyFolder.path)
        XCTAssertEqual(report.modules, 14)
        let ours = try GGUFFile(url: written), reference = try GGUFFile(url: adapters.appendingPathComponent("rslora-tiny-llama.gguf"))
        for key in ["general.architecture", "general.type", "adapter.type"] {
            XCTAssertEqual(ours.metadata[key], reference.metadata[key], key)
        }
        // rsLoRA folded: alpha·√r = 5·√3, so that llama.cpp's alpha / r is alpha / √r.
        let alpha = try XCTUnwrap(ours.metadata["adapter.lora.alpha"]?.double)
        XCTAssertEqual(alpha, try XCTUnwrap(reference.metadata["adapter.lora.alpha"]?.double), accuracy: 1e-6 * alpha)
        XCTAssertEqual(Set(ours.tensors.map(\.name)), Set(reference.tensors.map(\.name)))
        for tensor in reference.tensors {
            let mine = try XCTUnwrap(ours.tensor(named: tensor.name), tensor.name)
            XCTAssertEqual(mine.dimensions, tensor.dimensions, tensor.name)
            XCTAssertEqual(mine.type, .f32, tensor.name)
            // Copies and row moves only: the same floats, bit for bit (Q and K rows in ggml's RoPE order).
            XCTAssertEqual(try ours.floats(of: mine), try reference.floats(of: tensor), tensor.name)
        }
    }

    func testMLXAdapterIsWhatMLXLMWrites() throws {
        let written = folder.appendingPathComponent("mlx")
        try AdapterConversion.convert(input: adapters.appendingPathComponent("rslora-tiny-llama"), to: .mlx, output: written, model: nil)
        let ours = try SafetensorsFile(url: written.appendingPathComponent("adapters.safetensors"))
        let reference = try SafetensorsFile(url: adapters.appendingPathComponent("rslora-tiny-llama-mlx/adapters.safetensors"))
        XCTAssertEqual(Set(ours.tensors.map(\.name)), Set(reference.tensors.map(\.name)))
        for tensor in reference.tensors {
            let mine = try XCTUnwrap(ours.tensor(named: tensor.name), tensor.name)
            XCTAssertEqual(mine.dimensions, tensor.dimensions, tensor.name)
            XCTAssertEqual(try ours.floats(of: mine), try reference.floats(of: tensor), tensor.name)
        }
        let config = try JSONValue.parse(Data(contentsOf: written.appendingPathComponent("adapter_config.json")))
        let expected = try JSONValue.parse(Data(contentsOf: adapters.appendingPathComponent("rslora-tiny-llama-mlx/adapter_config.json")))
        XCTAssertEqual(config["fine_tune_type"], expected["fine_tune_type"])
        XCTAssertEqual(config["lora_parameters"]?["rank"], expected["lora_parameters"]?["rank"])
        XCTAssertEqual(Set((config["lora_parameters"]?["keys"]?.array ?? []).compactMap(\.string)),
                       Set((expected["lora_parameters"]?["keys"]?.array ?? []).compactMap(\.string)))
        let scale = try XCTUnwrap(config["lora_parameters"]?["scale"]?.double)
        XCTAssertEqual(scale, try XCTUnwrap(expected["lora_parameters"]?["scale"]?.double), accuracy: 1e-6 * scale)
    }

    func testFilesOfTheReferenceWritersReadAsTheAdapter() throws {
        let original = try LoRAWeights(peftFolder: adapters.appendingPathComponent("rslora-tiny-llama"))
        XCTAssertTrue(original.config.rsLoRA)
        let gguf = try LoRAWeights(ggufLoRA: adapters.appendingPathComponent("rslora-tiny-llama.gguf"), base: try base)
        assertSameUpdates(gguf, original, "llama.cpp GGUF LoRA")
        let mlx = try LoRAWeights(mlxFolder: adapters.appendingPathComponent("rslora-tiny-llama-mlx"))
        assertSameUpdates(mlx, original, "MLX-LM folder")
    }

    /// PEFT → MLX → PEFT and PEFT → GGUF → PEFT: the adapter PEFT saved gives PEFT's logits again.
    func testRoundTripsGiveThePEFTLogits() throws {
        struct Expected: Decodable { let ids: [[Int]]; let logits: [[[Float]]] }
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: fixtures.appendingPathComponent("training/peft-tiny-llama-logits.json")))
        func logits(_ adapter: URL) throws -> [Float] {
            let model = try ModelFiles.open(tinyFolder).loadModel()
            try PEFTAdapter.load(adapter, into: model)
            return try model.forward(tokens: expected.ids.flatMap { $0 }, batchSize: expected.ids.count).array
        }
        let direct = try logits(peft)
        // The GGUF leg against the GGUF base, whose Q/K rows are permuted: the LoRA's must be permuted alike.
        let ggufBase = fixtures.appendingPathComponent("models/tiny-llama.gguf").path
        for (format, model) in [(AdapterFormat.mlx, nil), (.gguf, ggufBase)] {
            let converted = folder.appendingPathComponent("converted-\(format)"), back = folder.appendingPathComponent("back-\(format)")
            try AdapterConversion.convert(input: peft, to: format, output: converted, model: model)
            try AdapterConversion.convert(input: converted, to: .peft, output: back, model: model)
            let roundTrip = try logits(back)
            let (worst, index) = largestDifference(roundTrip, expected.logits.flatMap { $0.flatMap { $0 } })
            XCTAssertLessThanOrEqual(worst, 2e-4, "\(format) round trip against PEFT's logits: \(worst) at \(index)")
            XCTAssertLessThanOrEqual(largestDifference(roundTrip, direct).0, 1e-6, "\(format) round trip against the adapter itself")
        }
    }

    func testReadBackCheckCatchesAPermutedFactor() throws {
        let original = try LoRAWeights(peftFolder: peft)
        var broken = original
        let module = "model.layers.1.self_attn.q_proj"
        var pair = try XCTUnwrap(broken.pairs[module])
        // Q's rows left in ggml's order: the mistake a writer without the un-permutation makes.
        pair.b.withUnsafeMutableBufferPointer { GGUFWeightSource.permuteRows($0, rows: pair.outFeatures, heads: 4, toGGML: true) }
        broken.pairs[module] = pair
        XCTAssertThrowsError(try AdapterConversion.largestDifference(broken, original, writtenTo: folder)) {
            XCTAssertTrue("\($0)".contains(module) && "\($0)".contains("B·A·scale"), "\($0)")
        }
        XCTAssertEqual(try AdapterConversion.largestDifference(original, original, writtenTo: folder), 0)
    }

    func testBadInputsNameTheFileAndField() throws {
        let reference = adapters.appendingPathComponent("rslora-tiny-llama.gguf")
        // A GGUF LoRA without its base.
        XCTAssertThrowsError(try AdapterConversion.convert(input: reference, to: .peft, output: folder.appendingPathComponent("x"), model: nil)) {
            XCTAssertTrue("\($0)".contains("--model"), "\($0)")
        }
        // Another architecture's base (qwen2 does not permute Q/K: the wrong base would silently scramble them).
        let qwen = fixtures.appendingPathComponent("models/tiny-qwen2").path
        XCTAssertThrowsError(try LoRAWeights(ggufLoRA: reference, base: try AdapterBaseModel(model: qwen))) {
            XCTAssertTrue("\($0)".contains("general.architecture"), "\($0)")
        }
        // A DoRA adapter from MLX-LM.
        let dora = folder.appendingPathComponent("dora")
        try FileManager.default.copyItem(at: adapters.appendingPathComponent("rslora-tiny-llama-mlx"), to: dora)
        try Data(#"{"fine_tune_type": "dora", "num_layers": 2, "lora_parameters": {"rank": 3, "scale": 2}}"#.utf8)
            .write(to: dora.appendingPathComponent("adapter_config.json"))
        XCTAssertThrowsError(try LoRAWeights(mlxFolder: dora)) { XCTAssertTrue("\($0)".contains("fine_tune_type"), "\($0)") }
        // Not an adapter at all.
        XCTAssertThrowsError(try AdapterFormat.detect(folder)) { XCTAssertTrue("\($0)".contains("adapters.safetensors"), "\($0)") }
        // A base whose shapes do not fit (tiny GGUF with hidden 64).
        let wide = folder.appendingPathComponent("wide.gguf")
        try TinyModel.write(to: wide, hidden: 64)
        XCTAssertThrowsError(try AdapterConversion.convert(input: peft, to: .gguf, output: folder.appendingPathComponent("y.gguf"),
                                                           model: wide.path)) {
            XCTAssertTrue("\($0)".contains("q_proj") && "\($0)".contains("shape"), "\($0)")
        }
    }

    /// An MLX-LM adapter on its last blocks only (num_layers < the layer count) becomes a PEFT folder whose first
    /// blocks change nothing.
    func testMLXAdapterOnTheLastLayersFillsTheOthersWithZeros() throws {
        let mlx = folder.appendingPathComponent("last")
        var weights = try LoRAWeights(mlxFolder: adapters.appendingPathComponent("rslora-tiny-llama-mlx"))
        for module in weights.moduleNames where LoRAWeights.layer(of: module) == 0 { weights.pairs[module] = nil }
        try weights.writeMLX(to: mlx)
        let out = folder.appendingPathComponent("peft")
        try AdapterConversion.convert(input: mlx, to: .peft, output: out, model: nil)
        let back = try LoRAWeights(peftFolder: out)
        XCTAssertEqual(back.pairs.count, 14)
        XCTAssertEqual(back.delta(of: "model.layers.0.mlp.up_proj")?.allSatisfy { $0 == 0 }, true)
        assertSameUpdates(back.filtering(layer: 1), weights, "layer 1")
    }
}

private extension LoRAWeights {
    func filtering(layer: Int) -> LoRAWeights {
        var copy = self
        copy.pairs = pairs.filter { LoRAWeights.layer(of: $0.key) == layer }
        return copy
    }
}
