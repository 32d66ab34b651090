import Foundation
import XCTest
@testable import LatheCLI
@testable import LatheModels
import LatheTensors
import LatheTestSupport

/// An adapter gets the base it was trained on: a QLoRA adapter loads (`--adapter`) and merges (`lathe merge`) on its
/// NF4 base unless `--dtype` or `--quantize` choose otherwise; plain LoRA adapters load as before.
final class AdapterBaseTests: XCTestCase {
    var folder: URL!
    var model: String!
    let ids = [3, 14, 15, 92, 65, 35, 89, 7, 200]

    override func setUpWithError() throws {
        folder = try temporaryFolder()
        model = folder.appendingPathComponent("tiny.gguf").path
        // 64 columns: whole NF4 blocks per row, as in SmolLM2.
        try TinyModel.write(to: URL(fileURLWithPath: model), hidden: 64, intermediate: 128)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    /// An adapter on every linear with random A and B (B large enough to move the logits), saved as `lathe sft` saves
    /// it; `record` is its `lathe_training.base_weights`, nil to leave `lathe_training` out as PEFT does.
    func writeAdapter(named name: String, record: String?) throws -> String {
        let lm = try LanguageModel.load(model)
        let config = LoRAConfiguration(rank: 4, alpha: 8, targets: ["all-linear"])
        var random = SeededGenerator(seed: 5)
        for adapter in try lm.model.attachLoRA(config, seed: 2) {
            for i in 0..<adapter.b.tensor.count { adapter.b.tensor[i] = (random.nextUnitFloat() - 0.5) * 0.2 }
        }
        let url = folder.appendingPathComponent(name)
        try PEFTAdapter.save(lm.model, config: config, baseModel: model, to: url,
                             extra: record.map { ["lathe_training": .object(["steps": .number(1), "base_weights": .string($0)])] } ?? [:])
        return url.path
    }

    /// Loads the model as a command given `flags` would, with `adapter`, and returns the logits of `ids`.
    func logits(adapter: String?, _ flags: [String] = []) throws -> [Float] {
        let options = try ModelOptions.parse(["--model", model] + (adapter.map { ["--adapter", $0] } ?? []) + flags)
        return try options.load().model.forward(tokens: ids).array
    }

    /// |a − b| ≤ absolute + relative·|b| everywhere; the failure message gives the largest difference and where.
    func assertClose(_ a: [Float], _ b: [Float], absolute: Float, relative: Float, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        var worst: (excess: Float, gap: Float, index: Int) = (-.infinity, 0, -1)
        for i in 0..<min(a.count, b.count) {
            let gap = abs(a[i] - b[i]), excess = gap - (absolute + relative * abs(b[i]))
            if excess > worst.excess { worst = (excess, gap, i) }
        }
        XCTAssertLessThanOrEqual(worst.excess, 0, "\(what): largest difference \(worst.gap) at \(worst.index) "
                                 + "(tolerance \(absolute) + \(relative)·|b|)", file: file, line: line)
    }

    func largestGap(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }

    /// The base model in `format` with `adapter` on it, loaded directly (not through the options).
    func logits(adapter: String, base format: WeightFormat) throws -> [Float] {
        let lm = try LanguageModel.load(model, weightFormat: format)
        try PEFTAdapter.load(URL(fileURLWithPath: adapter), into: lm.model)
        return try lm.model.forward(tokens: ids).array
    }

    func testAQLoRAAdapterLoadsOnTheNF4BaseUnlessTheFlagsSayOtherwise() throws {
        let qlora = try writeAdapter(named: "qlora", record: "nf4")
        let byDefault = try logits(adapter: qlora)
        // The same code path as --quantize nf4: the same numbers, exactly.
        assertClose(byDefault, try logits(adapter: qlora, ["--quantize", "nf4"]), absolute: 0, relative: 0, "default against --quantize nf4")
        assertClose(byDefault, try logits(adapter: qlora, base: .nf4), absolute: 0, relative: 0, "default against an NF4 load")
        // Any explicit choice wins: --dtype f32 is the float32 base, --quantize none the base --dtype auto picks
        // without the adapter (float32, or bf16 where the CPU multiplies bf16 natively).
        let float32 = try logits(adapter: qlora, ["--dtype", "f32"])
        assertClose(float32, try logits(adapter: qlora, base: .float32), absolute: 0, relative: 0, "--dtype f32 against a float32 load")
        let auto = try ModelOptions.parse(["--model", model]).weightFormat(for: .inference)
        assertClose(try logits(adapter: qlora, ["--quantize", "none"]), try logits(adapter: qlora, base: auto), absolute: 0, relative: 0,
                    "--quantize none against a \(auto) load")
        XCTAssertGreaterThan(largestGap(byDefault, float32), 1e-2, "the NF4 base must differ from the float base")
        XCTAssertEqual(try ModelOptions.parse(["--model", model, "--adapter", qlora, "--dtype", "bf16"]).adapterBase(), nil)
        XCTAssertEqual(try ModelOptions.parse(["--model", model, "--adapter", qlora, "--dtype", "auto"]).adapterBase(), .nf4)
        XCTAssertEqual(try ModelOptions.parse(["--model", model, "--adapter", qlora]).adapterBase(), .nf4)
        XCTAssertEqual(try ModelOptions.parse(["--model", model]).adapterBase(), nil)
    }

    func testPlainLoRAAdaptersLoadAsTheFlagsSay() throws {
        let options = try ModelOptions.parse(["--model", model])
        let auto = try options.weightFormat(for: .inference)
        for (name, record) in [("lora", "f32"), ("peft", nil), ("bf16", "bf16")] as [(String, String?)] {
            let adapter = try writeAdapter(named: name, record: record)
            XCTAssertNil(try ModelOptions.parse(["--model", model, "--adapter", adapter]).adapterBase(), name)
            let lm = try ModelOptions.parse(["--model", model, "--adapter", adapter]).load()
            XCTAssertEqual(lm.model.compactWeightSummary?.format,
                           try LanguageModel.load(model, weightFormat: auto).model.compactWeightSummary?.format,
                           "\(name): --dtype auto as without an adapter")
            assertClose(try lm.model.forward(tokens: ids).array, try logits(adapter: adapter, base: auto), absolute: 0, relative: 0, name)
        }
    }

    func testABadRecordedBaseIsNamed() throws {
        let adapter = try writeAdapter(named: "odd", record: "int3")
        XCTAssertThrowsError(try ModelOptions.parse(["--model", model, "--adapter", adapter]).load()) {
            XCTAssertTrue("\($0)".contains("adapter_config.json") && "\($0)".contains("lathe_training.base_weights"), "\($0)")
        }
    }

    /// Runs `lathe merge` in process (f32 GGUF, so nothing is rounded on the way out) and loads the result.
    func merge(_ adapter: String, _ flags: [String] = [], into name: String) throws -> LanguageModel {
        let output = folder.appendingPathComponent(name).path
        let command = try MergeCommand.parse(["--model", model, "--adapter", adapter, "--output", output, "--type", "f32"] + flags)
        try command.validate()
        try command.run()
        return try LanguageModel.load("\(output)/model.gguf")
    }

    func testAQLoRAAdapterMergesOntoTheDequantizedNF4Weights() throws {
        let qlora = try writeAdapter(named: "qlora", record: "nf4")
        let onNF4 = try merge(qlora, into: "merged-nf4")
        let onFloat = try merge(qlora, ["--quantize", "none"], into: "merged-float")
        // W + scale·B·A in one product against W·x + scale·B·(A·x): float32 rounding only.
        let nf4Logits = try onNF4.model.forward(tokens: ids).array, floatLogits = try onFloat.model.forward(tokens: ids).array
        assertClose(nf4Logits, try logits(adapter: qlora, base: .nf4), absolute: 1e-4, relative: 1e-4,
                    "merged (default) against the NF4 base + adapter")
        assertClose(floatLogits, try logits(adapter: qlora, base: .float32), absolute: 1e-4, relative: 1e-4,
                    "merged --quantize none against the float base + adapter")
        XCTAssertGreaterThan(largestGap(nf4Logits, floatLogits), 1e-2)

        // Weight by weight: a block weight is NF4-quantize→dequantize of the float weight plus the adapter's delta;
        // the embedding and the norms keep their float values.
        let base = try LanguageModel.load(model).model
        let adapter = try LanguageModel.load(model).model
        try PEFTAdapter.load(URL(fileURLWithPath: qlora), into: adapter)
        for (i, block) in onNF4.model.blocks.enumerated() {
            for module in ["q_proj", "down_proj"] {
                let merged = try XCTUnwrap(block.linear(named: module)), float = try XCTUnwrap(base.blocks[i].linear(named: module))
                let lora = try XCTUnwrap(adapter.blocks[i].linear(named: module)?.adapters.first)
                let (rows, columns) = (float.outFeatures, float.inFeatures)
                var expected = [Float](repeating: 0, count: rows * columns)
                let nf4 = try NF4Weight(rows: rows, columns: columns, values: UnsafeBufferPointer(float.weight.tensor.buffer))
                expected.withUnsafeMutableBufferPointer { nf4.decompress(into: $0.baseAddress!) }
                let a = lora.a.tensor.array, b = lora.b.tensor.array
                for r in 0..<rows {
                    for c in 0..<columns {
                        var delta: Float = 0
                        for k in 0..<lora.rank { delta += b[r * lora.rank + k] * a[k * columns + c] }
                        expected[r * columns + c] += lora.scale * delta
                    }
                }
                assertClose(merged.weight.tensor.array, expected, absolute: 1e-6, relative: 1e-5, "block \(i) \(module)")
            }
            for (merged, float) in zip([block.attentionNorm, block.mlpNorm], [base.blocks[i].attentionNorm, base.blocks[i].mlpNorm]) {
                XCTAssertEqual(merged.tensor.array, float.tensor.array, "block \(i) norm")
            }
        }
        XCTAssertEqual(onNF4.model.embedding.tensor.array, base.embedding.tensor.array, "the embedding stays float")
        XCTAssertEqual(onNF4.model.finalNorm.tensor.array, base.finalNorm.tensor.array)
    }

    func testAPlainLoRAAdapterMergesOntoTheFloatBase() throws {
        let lora = try writeAdapter(named: "lora", record: "f32")
        let merged = try merge(lora, into: "merged")
        assertClose(try merged.model.forward(tokens: ids).array, try logits(adapter: lora, base: .float32),
                    absolute: 1e-4, relative: 1e-4, "merged plain LoRA against the float base + adapter")
        XCTAssertEqual(MergeCommand.baseNote(.float32, adapter: lora, followsAdapter: false), "merged onto the float32 base")
    }
}
