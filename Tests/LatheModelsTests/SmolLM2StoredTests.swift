import Foundation
import XCTest
@testable import LatheModels
import LatheFormats
import LatheTensors
import LatheTestSupport

/// The real default model decoded from its own Q4_1 and Q8_0 blocks (`--dtype auto` for inference) against
/// transformers' log-probabilities of the same GGUF, and against the same file expanded to float32. Skipped when the
/// model package is not installed.
final class SmolLM2StoredTests: XCTestCase {
    static let stored: Result<DecoderModel, Error> = Result {
        try ModelFiles.open(try DefaultModelFile.url()).loadModel(weightFormat: .stored)
    }
    static let expanded: Result<DecoderModel, Error> = Result {
        try ModelFiles.open(try DefaultModelFile.url()).loadModel(weightFormat: .float32)
    }

    func cases() throws -> [SmolLM2Tests.Case] {
        try JSONDecoder().decode(SmolLM2Tests.Fixture.self, from: Data(contentsOf: fixtures.appendingPathComponent("models/smollm2_logprobs.json"))).cases
    }

    func logProbabilities(_ logits: Tensor, ids: [Int], vocabulary: Int) -> [Double] {
        (1..<ids.count).map { Softmax.logProbability(logits.pointer + ($0 - 1) * vocabulary, count: vocabulary, index: ids[$0]) }
    }

    func testWeightsStayInTheFileBlocks() throws {
        let model = try Self.stored.get()
        let linears = model.blocks.flatMap(\.linears)
        XCTAssertEqual(linears.count, 210)
        let types = Set(linears.compactMap { ($0.compactWeight as? GGMLBlockWeight)?.type })
        XCTAssertEqual(types, [.q4_1])
        XCTAssertTrue(linears.allSatisfy { !$0.weight.hasValues }, "no float32 copy of a quantized linear")
        let values = linears.reduce(0) { $0 + $1.inFeatures * $1.outFeatures }
        let bytes = linears.reduce(0) { $0 + ($1.compactWeight?.byteCount ?? 0) }
        // Q4_1: a 4-bit code per weight, an fp16 scale and an fp16 minimum per 32 (20 bytes per 32 weights).
        XCTAssertEqual(Double(bytes * 8) / Double(values), 5.0, accuracy: 1e-9)
        let embedding = try XCTUnwrap(model.compactEmbedding as? GGMLBlockWeight)
        XCTAssertEqual(embedding.type, .q8_0)
        XCTAssertFalse(model.embedding.hasValues)
        XCTAssertEqual(embedding.bitsPerValue, 8.5, accuracy: 1e-9)
        XCTAssertNil(model.lmHead, "SmolLM2 ties its head to the embedding")
        XCTAssertEqual(model.compactWeightSummary?.format, "Q4_1+Q8_0")
        // The 4-bit model reads ~5.5 bits per weight for everything it multiplies (the Q8_0 head included).
        let summary = try XCTUnwrap(model.compactWeightSummary)
        XCTAssertLessThan(Double(summary.bytes * 8) / Double(summary.parameters), 6.0)
    }

    /// The blocks decode to the float32 model's values bit for bit, Q/K rows un-permuted as the float32 loader does.
    func testDecodedWeightsEqualTheFloat32Load() throws {
        let stored = try Self.stored.get(), expanded = try Self.expanded.get()
        for layer in [0, 17, 29] {
            for (quantized, plain) in zip(stored.blocks[layer].linears, expanded.blocks[layer].linears) {
                let weight = try XCTUnwrap(quantized.compactWeight)
                let values = Tensor(zeros: plain.weight.shape)
                weight.decompress(into: values.pointer)
                XCTAssertTrue(values.array.elementsEqual(plain.weight.tensor.array) { $0.bitPattern == $1.bitPattern },
                              "\(plain.name) differs from the float32 load")
            }
        }
        let rows = Tensor(zeros: [3, stored.config.hiddenSize])
        let tokens = [0, 1234, stored.config.vocabularySize - 1]
        for (r, token) in tokens.enumerated() {
            try XCTUnwrap(stored.compactEmbedding).decompressRows(token..<token + 1, into: rows.pointer + r * stored.config.hiddenSize)
            let expected = Array(expanded.embedding.tensor.array[token * stored.config.hiddenSize..<(token + 1) * stored.config.hiddenSize])
            XCTAssertEqual(Array(rows.array[r * stored.config.hiddenSize..<(r + 1) * stored.config.hiddenSize]), expected)
        }
    }

    /// Whole sequences at once (the tiled products for more than 8 rows) and token by token through the KV cache (the
    /// in-register dot products): tolerance 1e-3 against transformers, as SmolLM2Tests, and 1e-4 against the same
    /// file expanded to float32.
    func testLogProbabilitiesMatchTransformersAndTheFloat32Model() throws {
        let stored = try Self.stored.get(), expanded = try Self.expanded.get()
        let vocabulary = stored.config.vocabularySize
        for (n, c) in try cases().enumerated() {
            let wanted = c.logprobs.dropFirst().map { $0! }
            let whole = logProbabilities(try stored.forward(tokens: c.ids), ids: c.ids, vocabulary: vocabulary)
            let plain = logProbabilities(try expanded.forward(tokens: c.ids), ids: c.ids, vocabulary: vocabulary)
            let cache = KVCache(config: stored.config, batchSize: 1, capacity: c.ids.count)
            var stepped: [Double] = []
            for i in 0..<c.ids.count - 1 {
                let logits = try stored.forward(tokens: [c.ids[i]], cache: cache, logits: .last)
                stepped.append(Softmax.logProbability(logits.pointer, count: vocabulary, index: c.ids[i + 1]))
            }
            for (name, values) in [("whole", whole), ("token by token", stepped)] {
                let fromTransformers = zip(values, wanted).map { abs($0 - $1) }.max() ?? 0
                let fromFloat32 = zip(values, plain).map { abs($0 - $1) }.max() ?? 0
                print("SmolLM2 Q4_1 as stored, case \(n) \(name): largest log-probability difference \(fromTransformers) "
                      + "from transformers, \(fromFloat32) from the float32 model")
                XCTAssertLessThanOrEqual(fromTransformers, 1e-3, "case \(n) \(name): largest difference from transformers \(fromTransformers)")
                XCTAssertLessThanOrEqual(fromFloat32, 1e-4, "case \(n) \(name): largest difference from the float32 model \(fromFloat32)")
            }
        }
    }

    /// `--activations int8` takes effect on every block weight and costs about what llama.cpp's own int8 activations
    /// cost: token by token on these cases llama.cpp (llama-cpp-python 0.3.36, n_batch 1, the same file) is 0.062 from
    /// transformers on average and 0.35 at most, Lathe with int8 activations 0.065 and 0.73 (with float32 activations
    /// under 1e-3 everywhere). Offsets multiplied with the exact activation sums instead gave 0.18 on average.
    func testInt8ActivationsStayCloseToTransformers() throws {
        try XCTSkipUnless(ActivationFormat.int8Available, "no AVX512-VNNI here")
        let stored = try Self.stored.get()
        XCTAssertNil(stored.setActivations(.int8))
        defer { XCTAssertNil(stored.setActivations(.float32)) }
        XCTAssertTrue(stored.compactWeights.allSatisfy { ($0 as? GGMLBlockWeight)?.activations == .int8 })
        var differences: [Double] = []
        for c in try cases() {
            let cache = KVCache(config: stored.config, batchSize: 1, capacity: c.ids.count)
            for i in 0..<c.ids.count - 1 {
                let logits = try stored.forward(tokens: [c.ids[i]], cache: cache, logits: .last)
                let logprob = Softmax.logProbability(logits.pointer, count: stored.config.vocabularySize, index: c.ids[i + 1])
                differences.append(abs(logprob - c.logprobs[i + 1]!))
            }
        }
        let mean = differences.reduce(0, +) / Double(differences.count), largest = differences.max() ?? 0
        print("SmolLM2 Q4_1, int8 activations, token by token: log-probability difference from transformers mean \(mean), largest \(largest) over \(differences.count) tokens")
        XCTAssertGreaterThan(largest, 1e-3, "the int8 products are in use")
        XCTAssertLessThan(mean, 0.1)
        XCTAssertLessThan(largest, 1.0)
    }

    func testGreedyContinuationEqualsTheFloat32Model() throws {
        let stored = try Self.stored.get(), expanded = try Self.expanded.get()
        for c in try cases() {
            guard let expected = c.greedy_ids else { continue }
            let fromBlocks = try TokenGenerator(model: stored, stopTokenIDs: [2])
                .generate(prompts: [c.ids], maxTokens: expected.count, sampling: SamplingOptions())
            let fromFloats = try TokenGenerator(model: expanded, stopTokenIDs: [2])
                .generate(prompts: [c.ids], maxTokens: expected.count, sampling: SamplingOptions())
            XCTAssertEqual(fromBlocks, fromFloats)
            XCTAssertEqual(fromBlocks[0], expected.filter { $0 != 2 })
        }
    }

    func testAutoDecodesFromTheStoredBlocksAndF32Expands() throws {
        XCTAssertEqual(try WeightFormat.choose(dtype: "auto", quantize: nil, use: .inference), .stored)
        XCTAssertEqual(try WeightFormat.choose(dtype: "f32", quantize: nil, use: .inference), .float32)
        XCTAssertNotEqual(try WeightFormat.choose(dtype: "auto", quantize: nil, use: .frozenBase), .stored)
        XCTAssertNotEqual(try WeightFormat.choose(dtype: "auto", quantize: nil, use: .masterWeights), .stored)
        let lm = try LanguageModel.load(try DefaultModelFile.url().path, weightFormat: .stored)
        XCTAssertLessThan(lm.weightBytes, 110 << 20, "the Q4_1 model holds about 100 MB of weights, not 540 MB of float32")
        // What `lathe plan --serve` counts from the file alone is what the loaded model holds.
        let files = try ModelFiles.open(try DefaultModelFile.url())
        XCTAssertEqual(files.storedWeightBytes(config: try files.configuration()), lm.weightBytes)
    }
}
