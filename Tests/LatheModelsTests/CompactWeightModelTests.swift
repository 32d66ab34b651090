import XCTest
@testable import LatheModels
import LatheTensors

/// A model whose block weights are held compactly computes what the float32 model computes with the same
/// rounded weights: logits and LoRA gradients, through loading, products, merging and the format choice.
extension BackwardTests {
    /// The tolerance of a compact product: the tiled path multiplies the exact expanded values in float32;
    /// oneDNN's native bf16 path also rounds the input to bf16.
    func tolerance(_ format: WeightFormat) -> Float {
        format == .bfloat16 && BF16Weight.multipliesNatively ? 3e-2 : 2e-5
    }

    /// Logits, and gradients of LoRA adapters with dropout off, of `model`.
    func logitsAndLoRAGradients(_ model: LlamaModel) throws -> (logits: [Float], gradients: [Float]) {
        let adapters = try model.attachLoRA(LoRAConfiguration(rank: 2, alpha: 4, targets: ["all-linear"]), seed: 4)
        for adapter in adapters { adapter.training = true; adapter.b.tensor.fill(0.05) }
        let logits = try model.forward(tokens: batch.ids.flatMap { $0 }, batchSize: batch.ids.count,
                                       valid: batch.valid.flatMap { $0 }).array
        _ = try loss(model, backward: true)
        return (logits, adapters.flatMap(\.parameters).flatMap { $0.gradient!.array })
    }

    func checkCompactModelEqualsRoundedFloatModel(_ format: WeightFormat, model name: String) throws {
        let compact = try ModelFiles.open(fixtures.appendingPathComponent("models/\(name)")).loadModel(weightFormat: format)
        let summary = try XCTUnwrap(compact.compactWeightSummary)
        XCTAssertEqual(summary.format, format.rawValue)
        XCTAssertTrue(compact.blocks[0].query.weight.tensor.count == 0, "the float32 values are freed")
        let headIsCompact = compact.compactEmbedding != nil || compact.lmHead?.compactWeight != nil
        XCTAssertEqual(headIsCompact, format == .bfloat16, "bf16 takes the head; NF4 leaves it in float32 as bitsandbytes does")

        let rounded = try model(name)
        try rounded.compressWeights(to: format)
        rounded.expandWeights()
        XCTAssertNil(rounded.compactWeightSummary)

        let (compactLogits, compactGradients) = try logitsAndLoRAGradients(compact)
        let (roundedLogits, roundedGradients) = try logitsAndLoRAGradients(rounded)
        let (logitGap, logitIndex) = largestDifference(compactLogits, roundedLogits)
        XCTAssertLessThanOrEqual(logitGap, tolerance(format), "\(format) logits differ most at \(logitIndex)")
        let scale = roundedGradients.map(abs).max() ?? 1
        let (gradientGap, gradientIndex) = largestDifference(compactGradients, roundedGradients)
        XCTAssertGreaterThan(scale, 0)
        XCTAssertLessThanOrEqual(gradientGap / scale, tolerance(format),
                                 "\(format) LoRA gradients differ most at \(gradientIndex) (relative to \(scale))")

        // Merging expands the compact weights: the merged model computes what the adapters computed.
        let ids = [3, 14, 15, 92, 65]
        let adapted = try compact.forward(tokens: ids).array
        compact.mergeAdapters()
        XCTAssertNil(compact.compactWeightSummary)
        XCTAssertLessThanOrEqual(largestDifference(try compact.forward(tokens: ids).array, adapted).0, 1e-4 + tolerance(format))
    }

    /// bf16 takes the embedding and the head too: untied (tiny-llama) and tied (tiny-qwen2).
    func testBF16BaseComputesWhatTheRoundedFloatModelComputes() throws {
        try checkCompactModelEqualsRoundedFloatModel(.bfloat16, model: "tiny-llama")
        try checkCompactModelEqualsRoundedFloatModel(.bfloat16, model: "tiny-qwen2")
    }

    func testWeightFormatChoiceNamesTheSetting() throws {
        XCTAssertEqual(try WeightFormat.choose(dtype: "f32", quantize: nil, trainsBase: false), .float32)
        XCTAssertEqual(try WeightFormat.choose(dtype: "bf16", quantize: "none", trainsBase: false), .bfloat16)
        XCTAssertEqual(try WeightFormat.choose(dtype: "auto", quantize: nil, trainsBase: true), WeightFormat.fastest)
        XCTAssertEqual(try WeightFormat.choose(dtype: "bf16", quantize: nil, trainsBase: true), .bfloat16)
        XCTAssertEqual(try WeightFormat.choose(dtype: "auto", quantize: nil, trainsBase: false), WeightFormat.fastest)
        XCTAssertThrowsError(try WeightFormat.choose(dtype: "fp8", quantize: nil, trainsBase: false)) {
            XCTAssertTrue("\($0)".hasPrefix("dtype: 'fp8'"), "\($0)")
        }
        XCTAssertThrowsError(try WeightFormat.choose(dtype: "auto", quantize: "nf4", trainsBase: true)) {
            XCTAssertTrue("\($0)".contains("full fine-tuning"), "\($0)")
        }
        XCTAssertThrowsError(try WeightFormat.choose(dtype: "auto", quantize: "int3", trainsBase: false)) {
            XCTAssertTrue("\($0)".hasPrefix("quantize: 'int3'"), "\($0)")
        }
    }
}

extension BackwardTests {
    func testNF4BaseComputesWhatTheRoundedFloatModelComputes() throws {
        try checkCompactModelEqualsRoundedFloatModel(.nf4, model: "tiny-qwen2")
    }
}

extension BackwardTests {
    /// bf16 full fine-tuning: the products use bf16 copies of the float32 master weights, so every gradient is the
    /// one of the float32 model holding the rounded weights; the masters keep their float32 values.
    func testFullFineTuningOnBF16CopiesHasTheGradientsOfTheRoundedModel() throws {
        func gradients(_ model: LlamaModel) throws -> [Float] {
            for p in model.parameters { p.trainable = true }
            _ = try loss(model, backward: true)
            return model.parameters.flatMap { $0.gradient!.array }
        }
        let copied = try model("tiny-llama")
        let masters = copied.parameters.flatMap(\.tensor.array)
        try copied.keepCompactCopies(.bfloat16)
        XCTAssertEqual(copied.compactWeightSummary?.format, "bf16")
        let rounded = try model("tiny-llama")
        try rounded.compressWeights(to: .bfloat16)
        rounded.expandWeights()
        let original = try model("tiny-llama")
        _ = rounded.embedding.tensor.buffer.update(from: original.embedding.tensor.buffer)  // copies leave the embedding alone
        let expected = try gradients(rounded), actual = try gradients(copied)
        let scale = expected.map(abs).max() ?? 1
        let (gap, index) = largestDifference(actual, expected)
        XCTAssertGreaterThan(scale, 0)
        XCTAssertLessThanOrEqual(gap / scale, tolerance(.bfloat16), "gradients differ most at \(index) (relative to \(scale))")
        XCTAssertEqual(copied.parameters.flatMap(\.tensor.array), masters, "the float32 masters are untouched")
        copied.expandWeights()
        XCTAssertNil(copied.compactWeightSummary)
        XCTAssertEqual(copied.parameters.flatMap(\.tensor.array), masters, "dropping the copies keeps the masters")
    }
}
