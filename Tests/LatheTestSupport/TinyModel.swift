import Foundation
import LatheFormats
import LatheTensors
import LatheTokenizers
import LatheModels
import XCTest

/// Builds small, complete models for tests: a GGUF file with a llama architecture, random weights from a seed,
/// a byte-level BPE tokenizer (the 256 byte tokens, a few merges, ChatML special tokens) and a ChatML template.
public enum TinyModel {
    public static let merges = ["t h", "th e", "Ġ t", "Ġt h", "Ġth e", "a n", "i n", "e r", "o n", "Ġ a"]
    public static let specialTokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    public static let chatTemplate = """
        {% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}
        """

    /// The vocabulary: byte tokens, then one token per merge, then the special tokens.
    public static var vocabulary: [String] {
        Tokenizer.byteLevelAlphabet + merges.map { $0.replacingOccurrences(of: " ", with: "") } + specialTokens
    }

    /// Writes the model to `url` and returns its vocabulary size.
    @discardableResult
    public static func write(to url: URL, seed: UInt64 = 1, hidden: Int = 32, layers: Int = 2, heads: Int = 4,
                             kvHeads: Int = 2, intermediate: Int = 64, weightType: GGMLType = .f32) throws -> Int {
        let vocab = vocabulary
        let eos = vocab.firstIndex(of: "<|im_end|>")!
        var w = try GGUFWriter()
        let a = "llama."
        try w.setValue(.string("llama"), forKey: "general.architecture")
        try w.setValue(.string("tiny test model"), forKey: "general.name")
        try w.setValue(.uint32(64), forKey: a + "context_length")
        try w.setValue(.uint32(UInt32(hidden)), forKey: a + "embedding_length")
        try w.setValue(.uint32(UInt32(layers)), forKey: a + "block_count")
        try w.setValue(.uint32(UInt32(intermediate)), forKey: a + "feed_forward_length")
        try w.setValue(.uint32(UInt32(heads)), forKey: a + "attention.head_count")
        try w.setValue(.uint32(UInt32(kvHeads)), forKey: a + "attention.head_count_kv")
        try w.setValue(.float32(10000), forKey: a + "rope.freq_base")
        try w.setValue(.float32(1e-5), forKey: a + "attention.layer_norm_rms_epsilon")
        try w.setValue(.string("gpt2"), forKey: "tokenizer.ggml.model")
        try w.setValue(.string("gpt2"), forKey: "tokenizer.ggml.pre")
        try w.setValue(.array(elementType: .string, elements: vocab.map { .string($0) }), forKey: "tokenizer.ggml.tokens")
        try w.setValue(.array(elementType: .string, elements: merges.map { .string($0) }), forKey: "tokenizer.ggml.merges")
        let types = vocab.indices.map { GGUFValue.int32(specialTokens.contains(vocab[$0]) ? 3 : 1) }
        try w.setValue(.array(elementType: .int32, elements: types), forKey: "tokenizer.ggml.token_type")
        try w.setValue(.uint32(UInt32(vocab.firstIndex(of: "<|im_start|>")!)), forKey: "tokenizer.ggml.bos_token_id")
        try w.setValue(.uint32(UInt32(eos)), forKey: "tokenizer.ggml.eos_token_id")
        try w.setValue(.bool(false), forKey: "tokenizer.ggml.add_bos_token")
        try w.setValue(.string(chatTemplate), forKey: "tokenizer.chat_template")

        var random = SeededGenerator(seed: seed)
        func values(_ count: Int, scale: Float) -> [Float] { (0..<count).map { _ in (random.nextUnitFloat() * 2 - 1) * scale } }
        let headDim = hidden / heads
        // ggml dimensions are fastest first: a [out, in] weight is written as [in, out].
        func add(_ name: String, _ out: Int, _ inFeatures: Int?, scale: Float, type: GGMLType) throws {
            if let inFeatures {
                try w.addTensor(name: name, dimensions: [inFeatures, out], values: values(out * inFeatures, scale: scale), type: type)
            } else {
                try w.addTensor(name: name, dimensions: [out], values: values(out, scale: 0.2).map { 1 + $0 }, type: .f32)
            }
        }
        try add("token_embd.weight", vocab.count, hidden, scale: 1, type: .f32)
        for i in 0..<layers {
            let p = "blk.\(i)."
            try add(p + "attn_norm.weight", hidden, nil, scale: 0, type: .f32)
            try add(p + "attn_q.weight", heads * headDim, hidden, scale: 0.5, type: weightType)
            try add(p + "attn_k.weight", kvHeads * headDim, hidden, scale: 0.5, type: weightType)
            try add(p + "attn_v.weight", kvHeads * headDim, hidden, scale: 0.5, type: weightType)
            try add(p + "attn_output.weight", hidden, heads * headDim, scale: 0.3, type: weightType)
            try add(p + "ffn_norm.weight", hidden, nil, scale: 0, type: .f32)
            try add(p + "ffn_gate.weight", intermediate, hidden, scale: 0.3, type: weightType)
            try add(p + "ffn_up.weight", intermediate, hidden, scale: 0.3, type: weightType)
            try add(p + "ffn_down.weight", hidden, intermediate, scale: 0.3, type: weightType)
        }
        try add("output_norm.weight", hidden, nil, scale: 0, type: .f32)
        try w.write(to: url)
        return vocab.count
    }
}

/// A temporary folder holding a freshly written tiny model, for tests; `remove()` in tearDown.
public final class TinyModelFolder {
    public let folder: URL
    public let modelPath: String

    public init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        modelPath = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: modelPath))
    }

    public func file(_ name: String) -> URL { folder.appendingPathComponent(name) }
    public func remove() { try? FileManager.default.removeItem(at: folder) }
}

/// A test case with a tiny model written and loaded before each test, and removed after it.
open class TinyModelTestCase: XCTestCase {
    public var tiny: TinyModelFolder!
    public var lm: LanguageModel!

    open override func setUpWithError() throws {
        tiny = try TinyModelFolder()
        lm = try LanguageModel.load(tiny.modelPath)
    }

    open override func tearDownWithError() throws { tiny.remove() }
}
