import Foundation
import XCTest
@testable import LatheModels
@testable import LatheTensors
import LatheTestSupport

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

struct ExpectedLogits: Decodable {
    let ids: [[Int]]
    let logits: [[[Float]]]
}

func largestDifference(_ a: [Float], _ b: [Float]) -> (Float, Int) {
    var worst: Float = -1, index = 0
    for i in 0..<min(a.count, b.count) where !(abs(a[i] - b[i]) <= worst) { worst = abs(a[i] - b[i]); index = i }
    return (worst, index)
}

/// The logits of a prompt of `promptLength` tokens and then one token at a time through a KV cache, against one pass
/// over all of `ids`.
func assertCachedDecodingEqualsOneFullPass(_ model: DecoderModel, ids: [Int], promptLength: Int,
                                           file: StaticString = #filePath, line: UInt = #line) throws {
    let full = try model.forward(tokens: ids)
    let cache = KVCache(config: model.config, batchSize: 1, capacity: ids.count)
    var stepped: [Float] = try model.forward(tokens: Array(ids[0..<promptLength]), cache: cache).array
    for id in ids[promptLength...] { stepped += try model.forward(tokens: [id], cache: cache).array }
    let (worst, index) = largestDifference(stepped, full.array)
    XCTAssertLessThanOrEqual(worst, 1e-5, "cached vs full: \(worst) at \(index)", file: file, line: line)
}

/// Logits of tiny random models, against transformers on the same stored weights (float32 compute).
final class LlamaParityTests: XCTestCase {
    let tolerance: Float = 2e-4  // absolute, on logits of magnitude ~1; float32 sums in another order

    func check(model: DecoderModel, expectedFile: URL, _ what: String) throws {
        let expected = try JSONDecoder().decode(ExpectedLogits.self, from: Data(contentsOf: expectedFile))
        let logits = try model.forward(tokens: expected.ids.flatMap { $0 }, batchSize: expected.ids.count)
        let want = expected.logits.flatMap { $0.flatMap { $0 } }
        XCTAssertEqual(logits.count, want.count)
        let (worst, index) = largestDifference(logits.array, want)
        XCTAssertLessThanOrEqual(worst, tolerance, "\(what): largest logit difference \(worst) at \(index)")
    }

    func testUntiedLlamaFromShardedFloat32Safetensors() throws {
        let model = try ModelFiles.open(fixtures.appendingPathComponent("models/tiny-llama")).loadModel()
        XCTAssertNotNil(model.lmHead)
        try check(model: model, expectedFile: fixtures.appendingPathComponent("models/tiny-llama/expected.json"), "tiny llama")
    }

    func testQwen2WithQKVBiasFromBFloat16() throws {
        let model = try ModelFiles.open(fixtures.appendingPathComponent("models/tiny-qwen2")).loadModel()
        XCTAssertTrue(model.config.attentionBias)
        XCTAssertNil(model.lmHead)
        try check(model: model, expectedFile: fixtures.appendingPathComponent("models/tiny-qwen2/expected.json"), "tiny qwen2")
    }

    func testLlama3RopeScalingFromFloat16() throws {
        let model = try ModelFiles.open(fixtures.appendingPathComponent("models/tiny-llama3")).loadModel()
        XCTAssertNotNil(model.config.ropeLlama3Scaling)
        try check(model: model, expectedFile: fixtures.appendingPathComponent("models/tiny-llama3/expected.json"), "tiny llama3")
    }

    func testGGUFWithPermutedQKAndQ8_0ComputesTheSameFunction() throws {
        let model = try ModelFiles.open(fixtures.appendingPathComponent("models/tiny-llama.gguf")).loadModel()
        try check(model: model, expectedFile: fixtures.appendingPathComponent("models/tiny-llama-gguf.json"), "tiny llama gguf")
    }

    func testIncrementalDecodingWithCacheEqualsOneFullPass() throws {
        let model = try ModelFiles.open(fixtures.appendingPathComponent("models/tiny-qwen2")).loadModel()
        try assertCachedDecodingEqualsOneFullPass(model, ids: [5, 17, 3, 90, 41, 8, 66], promptLength: 3)
    }

    func testLeftPaddingDoesNotChangeARowsLogits() throws {
        let model = try ModelFiles.open(fixtures.appendingPathComponent("models/tiny-llama")).loadModel()
        let short = [4, 9, 33], long = [7, 1, 2, 60, 12]
        let alone = try model.forward(tokens: short, logits: .last)
        let padded = try model.forward(tokens: [0, 0] + short + long, batchSize: 2, positions: [0, 0, 0, 1, 2, 0, 1, 2, 3, 4],
                                       valid: [false, false, true, true, true, true, true, true, true, true], logits: .last)
        let row0 = Array(padded.array[0..<model.config.vocabularySize])
        let (worst, _) = largestDifference(row0, alone.array)
        XCTAssertLessThanOrEqual(worst, 1e-5, "padded row differs by \(worst)")
    }

    func testMissingAndUnusedWeightsAreNamed() throws {
        let files = try ModelFiles.open(fixtures.appendingPathComponent("models/tiny-llama"))
        var config = try files.configuration()
        config.layerCount = 1  // the file has two layers: layer 1's weights are left over
        XCTAssertThrowsError(try DecoderModel(config: config).load(from: files.weightSource(for: config))) { error in
            XCTAssertTrue("\(error)".contains("model.layers.1."), "\(error)")
        }
        config.layerCount = 3  // now layer 2 is missing
        XCTAssertThrowsError(try DecoderModel(config: config).load(from: files.weightSource(for: config))) { error in
            XCTAssertTrue("\(error)".contains("model.layers.2."), "\(error)")
        }
    }

    func testConfigErrorsNameTheField() {
        let bad = Data(#"{"model_type": "llama", "hidden_size": "wide", "num_attention_heads": 4}"#.utf8)
        XCTAssertThrowsError(try DecoderConfiguration.decode(huggingFaceJSON: bad, source: "config.json")) { error in
            XCTAssertEqual("\(error)", "config.json: field 'hidden_size' must be an integer, got \"wide\"")
        }
        let unknown = Data(#"{"model_type": "gpt2"}"#.utf8)
        XCTAssertThrowsError(try DecoderConfiguration.decode(huggingFaceJSON: unknown, source: "c.json")) { error in
            XCTAssertTrue("\(error)".contains("hidden_size") || "\(error)".contains("gpt2"), "\(error)")
        }
    }
}

/// Generation on a tiny model written by the test: batching, stop tokens, stop strings, streaming.
final class GenerationTests: TinyModelTestCase {
    func testBatchedGreedyGenerationEqualsOneRowAtATime() throws {
        let prompts = [lm.tokenizer.encode("the theory"), lm.tokenizer.encode("an inn on the river, then")]
        let generator = TokenGenerator(model: lm.model, stopTokenIDs: [])
        let together = try generator.generate(prompts: prompts, maxTokens: 8, sampling: SamplingOptions())
        for (row, prompt) in prompts.enumerated() {
            XCTAssertEqual(try generator.generate(prompts: [prompt], maxTokens: 8, sampling: SamplingOptions())[0], together[row])
        }
        XCTAssertEqual(together.map(\.count), [8, 8])
    }

    func testStopTokensAndStopStringsEndTheAnswer() throws {
        let prompt = lm.tokenizer.encode("the")
        let free = try TokenGenerator(model: lm.model, stopTokenIDs: []).generate(
            prompts: [prompt], maxTokens: 10, sampling: SamplingOptions())[0]
        // Declaring the third generated token a stop token cuts the answer before it.
        let stopped = try TokenGenerator(model: lm.model, stopTokenIDs: [free[2]]).generate(
            prompts: [prompt], maxTokens: 10, sampling: SamplingOptions())[0]
        XCTAssertEqual(stopped, Array(free.prefix(while: { $0 != free[2] })))

        let text = try lm.generate(prompt, sampling: SamplingOptions(), maxTokens: 10)
        XCTAssertEqual(text, lm.tokenizer.decode(free.filter { !lm.stopTokenIDs.contains($0) }, skipSpecialTokens: true))
        let marker = String(text.dropFirst(2).prefix(2))
        var streamed = ""
        let cut = try lm.generate(prompt, sampling: SamplingOptions(), maxTokens: 10, stopStrings: [marker]) { streamed += $0 }
        XCTAssertEqual(cut, String(text[..<text.range(of: marker)!.lowerBound]))
        XCTAssertTrue(streamed.hasPrefix(cut))
    }
}
