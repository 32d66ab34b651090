import XCTest
@testable import LatheModels
import LatheTensors

/// A model whose block weights are held compactly computes what the float32 model computes with the same
/// rounded weights: logits and LoRA gradients, through loading, products, merging and the format choice.
extension BackwardTests {
    /// The tolerance of a compact product against the float32 model holding the rounded weights: the widened
    /// path multiplies the exact expanded values in float32, so only the summation order differs.
    func tolerance(_ format: WeightFormat) -> Float { 2e-5 }

    /// Runs `body` with every bf16 weight on `path`, restoring the CPU's own choice after.
    func withBF16Products<T>(_ path: BF16ProductPath, _ body: () throws -> T) rethrows -> T {
        let saved = BF16Weight.productPath
        BF16Weight.productPath = path
        defer { BF16Weight.productPath = saved }
        return try body()
    }

    /// Logits, and gradients of LoRA adapters with dropout off, of `model`.
    func logitsAndLoRAGradients(_ model: DecoderModel) throws -> (logits: [Float], gradients: [Float]) {
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
        XCTAssertTrue(compact.blocks[0].query!.weight.tensor.count == 0, "the float32 values are freed")
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

    /// bf16 takes the embedding and the head too: untied (tiny-llama) and tied (tiny-qwen2). The widened path
    /// rounds only the weights, on every CPU.
    func testBF16BaseComputesWhatTheRoundedFloatModelComputes() throws {
        try withBF16Products(.widened) {
            try checkCompactModelEqualsRoundedFloatModel(.bfloat16, model: "tiny-llama")
            try checkCompactModelEqualsRoundedFloatModel(.bfloat16, model: "tiny-qwen2")
        }
    }

    /// oneDNN's bf16 products (AMX, AVX512-BF16, or emulated under a lower `ONEDNN_MAX_CPU_ISA`) also round each
    /// product's input to bf16: logits and LoRA gradients equal the plain reference that rounds the input and
    /// multiplies the widened weights in float32. Tolerance 1e-4 (relative to the largest value), float32
    /// summation order only — against the float32 model the gap is ~5e-2 (8-bit mantissas of the activations).
    func testNativeBF16ProductsComputeWhatRoundedInputsAndWeightsCompute() throws {
        guard BF16Products.oneDNNHasBF16Matmul else { throw XCTSkip("oneDNN has no bf16 matmul on this CPU (AVX2): bf16 is widened") }
        for name in ["tiny-llama", "tiny-qwen2"] {
            let file = fixtures.appendingPathComponent("models/\(name)")
            let native = try withBF16Products(.native) {
                try logitsAndLoRAGradients(try ModelFiles.open(file).loadModel(weightFormat: .bfloat16))
            }
            let reference = try withBF16Products(.roundedInputReference) {
                try logitsAndLoRAGradients(try ModelFiles.open(file).loadModel(weightFormat: .bfloat16))
            }
            let widened = try withBF16Products(.widened) {
                try logitsAndLoRAGradients(try ModelFiles.open(file).loadModel(weightFormat: .bfloat16))
            }
            for (what, actual, expected, other) in [("logits", native.logits, reference.logits, widened.logits),
                                                    ("LoRA gradients", native.gradients, reference.gradients, widened.gradients)] {
                let scale = max(expected.map(abs).max() ?? 1, 1e-30)
                let (gap, index) = largestDifference(actual, expected)
                XCTAssertLessThanOrEqual(gap / scale, 1e-4, "\(name) \(what) on \(BF16Products.current): native differs "
                                         + "from the rounded-input reference most at \(index) (\(gap), relative to \(scale))")
                // The reference is not the widened path under another name: rounding the inputs changes the results.
                XCTAssertGreaterThan(largestDifference(expected, other).0 / scale, 1e-4, "\(name) \(what)")
            }
        }
    }

    func testWeightFormatChoiceNamesTheSetting() throws {
        XCTAssertEqual(try WeightFormat.choose(dtype: "f32", quantize: nil, use: .frozenBase), .float32)
        XCTAssertEqual(try WeightFormat.choose(dtype: "bf16", quantize: "none", use: .inference), .bfloat16)
        XCTAssertEqual(try WeightFormat.choose(dtype: "bf16", quantize: nil, use: .masterWeights), .bfloat16)
        XCTAssertEqual(try WeightFormat.choose(dtype: "auto", quantize: "nf4", use: .frozenBase), .nf4)
        XCTAssertThrowsError(try WeightFormat.choose(dtype: "fp8", quantize: nil, use: .inference)) {
            XCTAssertTrue("\($0)".hasPrefix("dtype: 'fp8'"), "\($0)")
        }
        XCTAssertThrowsError(try WeightFormat.choose(dtype: "auto", quantize: "nf4", use: .masterWeights)) {
            XCTAssertTrue("\($0)".contains("full fine-tuning"), "\($0)")
        }
        XCTAssertThrowsError(try WeightFormat.choose(dtype: "auto", quantize: "int3", use: .inference)) {
            XCTAssertTrue("\($0)".hasPrefix("quantize: 'int3'"), "\($0)")
        }
    }
}

extension BackwardTests {
    /// `--dtype auto` on each kind of CPU: as the file stores them to score and generate everywhere; bf16 to train
    /// only where bf16 products beat float32 — AMX, and AVX512-BF16 on AMD — never on Intel's AVX512-BF16 alone or
    /// without bf16.
    func testAutoIsStoredToScoreAndFloat32ToTrainExceptWhereBF16ProductsAreFaster() throws {
        let kinds: [(BF16Products, WeightFormat)] = [
            (BF16Products(instructions: .amx, vendor: "GenuineIntel"), .bfloat16),
            (BF16Products(instructions: .avx512BF16, vendor: "GenuineIntel"), .float32),
            (BF16Products(instructions: .avx512BF16, vendor: "AuthenticAMD"), .bfloat16),
            (BF16Products(instructions: .none, vendor: "GenuineIntel"), .float32),
            (BF16Products(instructions: .none, vendor: ""), .float32),
        ]
        for (products, training) in kinds {
            XCTAssertEqual(try WeightFormat.choose(dtype: "auto", quantize: nil, use: .inference, products: products), .stored, "\(products)")
            XCTAssertEqual(try WeightFormat.choose(dtype: "auto", quantize: nil, use: .frozenBase, products: products), training, "\(products)")
            XCTAssertEqual(try WeightFormat.choose(dtype: "auto", quantize: nil, use: .masterWeights, products: products), training, "\(products)")
            XCTAssertEqual(try WeightFormat.choose(dtype: "f32", quantize: nil, use: .frozenBase, products: products), .float32)
            XCTAssertEqual(try WeightFormat.choose(dtype: "bf16", quantize: nil, use: .inference, products: products), .bfloat16)
        }
        // A bf16 weight runs oneDNN's product exactly where bf16 beats float32 (unless a test set another path).
        XCTAssertEqual(BF16Weight.productPath, BF16Products.current.beatFloat32 ? .native : .widened)
    }

    func testNF4BaseComputesWhatTheRoundedFloatModelComputes() throws {
        try checkCompactModelEqualsRoundedFloatModel(.nf4, model: "tiny-qwen2")
    }
}

extension BackwardTests {
    /// bf16 full fine-tuning: the products use bf16 copies of the float32 master weights, so every gradient (on the
    /// widened path, which rounds only weights) is the one of the float32 model holding the rounded weights; the
    /// masters keep their float32 values.
    func testFullFineTuningOnBF16CopiesHasTheGradientsOfTheRoundedModel() throws {
        let saved = BF16Weight.productPath
        BF16Weight.productPath = .widened
        defer { BF16Weight.productPath = saved }
        func gradients(_ model: DecoderModel) throws -> [Float] {
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
