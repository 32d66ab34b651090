import Foundation
import LatheFormats
import LatheTensors

/// Architecture hyper-parameters of a decoder model, decoded from Hugging Face's config.json or GGUF metadata: the
/// shared fields here, the family's own (`family`, the block's recipe) by its `ModelFamily`.
public struct DecoderConfiguration: Sendable, Equatable, Codable {
    public var modelType: String
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var rmsNormEpsilon: Float
    public var ropeTheta: Double
    public var ropeLlama3Scaling: RotaryEmbedding.Llama3Scaling?
    /// Per-frequency divisors as GGUF files store Llama 3's scaling (`rope_freqs.weight`).
    public var ropeFrequencyFactors: [Float]?
    public var tieWordEmbeddings: Bool
    public var maxPositions: Int
    /// config.json's `pad_token_id` (GGUF: `tokenizer.ggml.padding_token_id`, as transformers reads it): transformers
    /// builds `nn.Embedding(padding_idx:)` from it, whose row gets no gradient from the lookup, so full fine-tuning
    /// leaves it to the (tied) head alone here too. It can be a token of the text: SmolLM2's is `<|im_end|>`.
    public var paddingTokenID: Int?

    // The block's recipe: which optional stages the shared block runs, as the family decides.
    /// Biases on the q, k and v projections (qwen2).
    public var attentionBias: Bool
    /// RMSNorm over each head of q and k after the projection, before RoPE (qwen3: `q_norm`, `k_norm`, [head_dim]).
    public var qkNorm: Bool
    /// q, k and v as one linear (`qkv_proj`, [q + 2·kv, hidden]) whose output the block splits (phi3).
    public var fusedQKV: Bool
    /// gate and up as one linear (`gate_up_proj`, [2·intermediate, hidden], gate rows first) (phi3).
    public var fusedGateUp: Bool

    /// Added to every RMSNorm weight before it scales (Gemma stores w for a scale of 1 + w).
    public var normWeightOffset: Float = 0
    /// The MLP's gate activation.
    public var gatedActivation: GatedActivation = .silu
    /// Norms after attention and after the MLP too, before each residual add (Gemma's four norms per block).
    public var sandwichNorms = false
    /// Multiplies the embedding rows entering the first block (Gemma: √hidden); the tied head reads them unscaled.
    public var embeddingScale: Float?
    /// Multiplies q·k before the softmax; nil for 1/√head_dim (Gemma: query_pre_attn_scalar^−½).
    public var attentionScale: Float?
    /// The sliding window of the layers listed in `slidingLayers` (a query sees this many slots back, itself
    /// included).
    public var slidingWindow: Int?
    public var slidingLayers: [Int] = []
    /// The RoPE base of the sliding layers, when it differs from `ropeTheta` (Gemma 3's rope_local_base_freq).
    public var localRopeTheta: Double?
    /// Linear RoPE scaling of the full-attention layers (positions divided by this factor).
    public var ropeLinearFactor: Double?

    /// The sliding window of layer `layer`, nil for full attention.
    public func window(ofLayer layer: Int) -> Int? { slidingLayers.contains(layer) ? slidingWindow : nil }

    public init(modelType: String = "llama", vocabularySize: Int, hiddenSize: Int, intermediateSize: Int, layerCount: Int,
                headCount: Int, kvHeadCount: Int, headDim: Int? = nil, rmsNormEpsilon: Float = 1e-5,
                ropeTheta: Double = 10000, ropeLlama3Scaling: RotaryEmbedding.Llama3Scaling? = nil,
                tieWordEmbeddings: Bool = false, attentionBias: Bool = false, qkNorm: Bool = false, fusedQKV: Bool = false,
                fusedGateUp: Bool = false, maxPositions: Int = 2048) {
        self.modelType = modelType; self.vocabularySize = vocabularySize; self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize; self.layerCount = layerCount; self.headCount = headCount
        self.kvHeadCount = kvHeadCount; self.headDim = headDim ?? hiddenSize / headCount
        self.rmsNormEpsilon = rmsNormEpsilon; self.ropeTheta = ropeTheta; self.ropeLlama3Scaling = ropeLlama3Scaling
        self.tieWordEmbeddings = tieWordEmbeddings; self.attentionBias = attentionBias; self.qkNorm = qkNorm
        self.fusedQKV = fusedQKV; self.fusedGateUp = fusedGateUp; self.maxPositions = maxPositions
    }

    /// One linear of a block: its PEFT name (`q_proj`), its path in the block (`self_attn.q_proj`), its shape and bias.
    public struct BlockLinear: Sendable, Equatable {
        public let name: String, path: String
        public let inFeatures: Int, outFeatures: Int
        public let bias: Bool
    }

    /// The block's linears in block order, as the recipe makes them.
    public var blockLinears: [BlockLinear] {
        let q = headCount * headDim, kv = kvHeadCount * headDim, h = hiddenSize, ffn = intermediateSize
        func linear(_ name: String, _ module: String, _ i: Int, _ o: Int, bias: Bool = false) -> BlockLinear {
            BlockLinear(name: name, path: module + "." + name, inFeatures: i, outFeatures: o, bias: bias)
        }
        let attention = fusedQKV ? [linear("qkv_proj", "self_attn", h, q + 2 * kv, bias: attentionBias)]
            : [linear("q_proj", "self_attn", h, q, bias: attentionBias), linear("k_proj", "self_attn", h, kv, bias: attentionBias),
               linear("v_proj", "self_attn", h, kv, bias: attentionBias)]
        let mlp = fusedGateUp ? [linear("gate_up_proj", "mlp", h, 2 * ffn)]
            : [linear("gate_proj", "mlp", h, ffn), linear("up_proj", "mlp", h, ffn)]
        return attention + [linear("o_proj", "self_attn", q, h)] + mlp + [linear("down_proj", "mlp", ffn, h)]
    }

    /// The family `modelType` belongs to (`validate` refuses a model type no family reads; until then, llama's).
    public var family: any ModelFamily {
        ModelFamilies.all.first { $0.modelTypes.contains(modelType) } ?? LlamaFamily()
    }

    /// The linears of the plain llama block, as PEFT names them, in block order.
    public static let plainLinearNames = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    /// llama.cpp's names of the plain llama block's tensors → their Hugging Face module paths.
    public static let plainGGUFLayerNames: [String: String] = [
        "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
        "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    ]

    /// Checks the relations the layers rely on; the message names the field.
    public func validate(source: String) throws {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: source, message: message) }
        _ = try ModelFamilies.family(modelType: modelType, source: source)
        for (name, value) in [("vocab_size", vocabularySize), ("hidden_size", hiddenSize),
                              ("intermediate_size", intermediateSize), ("num_hidden_layers", layerCount),
                              ("num_attention_heads", headCount), ("num_key_value_heads", kvHeadCount),
                              ("head_dim", headDim)] where value <= 0 {
            throw fail("\(name) must be positive, got \(value)")
        }
        guard headCount % kvHeadCount == 0 else {
            throw fail("num_attention_heads (\(headCount)) must be a multiple of num_key_value_heads (\(kvHeadCount))")
        }
        guard headDim % 2 == 0 else { throw fail("head_dim must be even for rotary embeddings, got \(headDim)") }
        if let slidingWindow, slidingWindow < 1 { throw fail("sliding_window must be at least 1, got \(slidingWindow)") }
        if !slidingLayers.isEmpty, slidingWindow == nil { throw fail("sliding layers are listed but sliding_window is not set") }
        if let bad = slidingLayers.first(where: { !(0..<layerCount).contains($0) }) {
            throw fail("layer_types names layer \(bad) of \(layerCount)")
        }
    }

    /// Reads a Hugging Face config.json (both `rope_theta`/`rope_scaling` and transformers 5's `rope_parameters`).
    public static func decode(huggingFaceJSON data: Data, source: String) throws -> DecoderConfiguration {
        let parsed: JSONValue
        do { parsed = try JSONValue.parse(data) } catch {
            throw ModelError.invalidConfiguration(file: source, message: "not valid JSON (\(error))")
        }
        guard let object = parsed.object else {
            throw ModelError.invalidConfiguration(file: source, message: "the top level is not a JSON object")
        }
        let family = try ModelFamilies.family(modelType: try JSONFields(object: object, source: source).string("model_type"),
                                              source: source)
        let text = family.textConfiguration(object)
        let fields = JSONFields(object: text, source: source)
        let modelType = try fields.string("model_type")
        let hidden = try fields.int("hidden_size")
        let heads = try fields.int("num_attention_heads")
        let rope = text["rope_parameters"]?.object ?? text["rope_scaling"]?.object
        let ropeFields = JSONFields(object: rope ?? [:], source: source, prefix: text["rope_parameters"] != nil ? "rope_parameters." : "rope_scaling.")
        var llama3: RotaryEmbedding.Llama3Scaling?
        var linearFactor: Double?
        let ropeType = try ropeFields.optionalString("rope_type") ?? ropeFields.optionalString("type") ?? "default"
        switch ropeType {
        case "default": break
        case "linear": linearFactor = try ropeFields.double("factor")
        case "llama3":
            llama3 = .init(factor: try ropeFields.double("factor"),
                           lowFrequencyFactor: try ropeFields.double("low_freq_factor"),
                           highFrequencyFactor: try ropeFields.double("high_freq_factor"),
                           originalMaxPositions: try ropeFields.int("original_max_position_embeddings"))
        default:
            let field = (object["rope_parameters"] != nil ? "rope_parameters." : "rope_scaling.") + "rope_type"
            throw ModelError.invalidConfiguration(file: source, message: "field '\(field)' is '\(ropeType)', which is not supported (supported: default, linear, llama3)")
        }
        let theta = try fields.optionalDouble("rope_theta") ?? ropeFields.optionalDouble("rope_theta") ?? 10000
        var config = DecoderConfiguration(
            modelType: modelType,
            vocabularySize: try fields.int("vocab_size"),
            hiddenSize: hidden,
            intermediateSize: try fields.int("intermediate_size"),
            layerCount: try fields.int("num_hidden_layers"),
            headCount: heads,
            kvHeadCount: try fields.optionalInt("num_key_value_heads") ?? heads,
            headDim: try fields.optionalInt("head_dim") ?? hidden / max(heads, 1),
            rmsNormEpsilon: Float(try fields.optionalDouble("rms_norm_eps") ?? 1e-6),
            ropeTheta: theta,
            ropeLlama3Scaling: llama3,
            tieWordEmbeddings: try fields.optionalBool("tie_word_embeddings") ?? false,
            maxPositions: try fields.optionalInt("max_position_embeddings") ?? 2048)
        config.paddingTokenID = try fields.optionalInt("pad_token_id")
        if let pad = config.paddingTokenID, !(0..<config.vocabularySize).contains(pad) {
            throw fields.error("pad_token_id", "is \(pad), outside the vocabulary (vocab_size \(config.vocabularySize))")
        }
        config.ropeLinearFactor = linearFactor
        try family.completeConfiguration(&config, huggingFace: fields)
        try config.validate(source: source)
        return config
    }

    /// Reads the `{architecture}.*` metadata of a GGUF file (llama.cpp's names for the same hyper-parameters).
    public static func decode(gguf file: GGUFFile) throws -> DecoderConfiguration {
        let architecture = try file.requiredString("general.architecture")
        let (family, modelType) = try ModelFamilies.family(ggufArchitecture: architecture, source: file.url.path)
        let a = architecture + "."
        func optionalInt(_ key: String) throws -> Int? { file.metadata[key] == nil ? nil : try file.requiredInt(key) }
        let hidden = try file.requiredInt(a + "embedding_length")
        let heads = try file.requiredInt(a + "attention.head_count")
        guard let embedding = file.tensor(named: "token_embd.weight"), embedding.dimensions.count == 2 else {
            throw ModelError.missingWeight(file: file.url.path, name: "token_embd.weight")
        }
        var factors: [Float]?
        if let tensor = file.tensor(named: "rope_freqs.weight") { factors = try file.floats(of: tensor) }
        var config = DecoderConfiguration(
            modelType: modelType,
            vocabularySize: try optionalInt(a + "vocab_size") ?? embedding.dimensions[1],
            hiddenSize: hidden,
            intermediateSize: try file.requiredInt(a + "feed_forward_length"),
            layerCount: try file.requiredInt(a + "block_count"),
            headCount: heads,
            kvHeadCount: try optionalInt(a + "attention.head_count_kv") ?? heads,
            headDim: try optionalInt(a + "attention.key_length") ?? hidden / max(heads, 1),
            rmsNormEpsilon: Float(try file.requiredDouble(a + "attention.layer_norm_rms_epsilon")),
            ropeTheta: file.metadata[a + "rope.freq_base"] == nil ? 10000 : try file.requiredDouble(a + "rope.freq_base"),
            tieWordEmbeddings: file.tensor(named: "output.weight") == nil,
            maxPositions: try optionalInt(a + "context_length") ?? 2048)
        config.ropeFrequencyFactors = factors
        // llama.cpp does not use it; out of the vocabulary it pads nothing.
        config.paddingTokenID = try optionalInt("tokenizer.ggml.padding_token_id").flatMap { (0..<config.vocabularySize).contains($0) ? $0 : nil }
        try family.completeConfiguration(&config, gguf: file)
        try config.validate(source: file.url.path)
        if let factors, factors.count != config.headDim / 2 {
            throw ModelError.invalidConfiguration(file: file.url.path, message:
                "rope_freqs.weight has \(factors.count) factors, head dimension \(config.headDim) needs \(config.headDim / 2)")
        }
        return config
    }

    /// The Hugging Face config.json of this architecture, which transformers and Lathe both load.
    public func huggingFaceJSON(bosTokenID: Int?, eosTokenID: Int?) throws -> Data {
        var object: [String: JSONValue] = [
            "architectures": .array([.string(family.huggingFaceArchitecture(of: self))]),
            "model_type": .string(modelType), "vocab_size": .number(Double(vocabularySize)),
            "hidden_size": .number(Double(hiddenSize)), "intermediate_size": .number(Double(intermediateSize)),
            "num_hidden_layers": .number(Double(layerCount)), "num_attention_heads": .number(Double(headCount)),
            "num_key_value_heads": .number(Double(kvHeadCount)), "head_dim": .number(Double(headDim)),
            "rms_norm_eps": .number(Double(rmsNormEpsilon)), "rope_theta": .number(ropeTheta),
            "tie_word_embeddings": .bool(tieWordEmbeddings), "max_position_embeddings": .number(Double(maxPositions)),
            "hidden_act": .string("silu"), "torch_dtype": .string("float32"), "initializer_range": .number(0.02),
        ]
        object.merge(family.huggingFaceFields(of: self)) { _, own in own }
        if let bosTokenID { object["bos_token_id"] = .number(Double(bosTokenID)) }
        if let eosTokenID { object["eos_token_id"] = .number(Double(eosTokenID)) }
        if let paddingTokenID { object["pad_token_id"] = .number(Double(paddingTokenID)) }
        if let s = ropeLlama3Scaling {
            object["rope_scaling"] = .object(["rope_type": .string("llama3"), "factor": .number(s.factor),
                                              "low_freq_factor": .number(s.lowFrequencyFactor),
                                              "high_freq_factor": .number(s.highFrequencyFactor),
                                              "original_max_position_embeddings": .number(Double(s.originalMaxPositions))])
        }
        return try JSONValue.object(object).formatted()
    }

    /// The widest fused linear's output (the block's buffer for splitting it); nil without a fused linear.
    var fusedWidth: Int? {
        let widths = [fusedQKV ? (headCount + 2 * kvHeadCount) * headDim : 0, fusedGateUp ? 2 * intermediateSize : 0]
        return widths.max().flatMap { $0 > 0 ? $0 : nil }
    }

    /// Parameters of the model, counted from the shapes.
    public var parameterCount: Int {
        var perLayer = blockLinears.reduce(0) { $0 + $1.outFeatures * ($1.inFeatures + ($1.bias ? 1 : 0)) } + 2 * hiddenSize
        if qkNorm { perLayer += 2 * headDim }
        return vocabularySize * hiddenSize * (tieWordEmbeddings ? 1 : 2) + layerCount * perLayer + hiddenSize
    }
}
