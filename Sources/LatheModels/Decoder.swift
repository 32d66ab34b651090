import Foundation
import LatheFormats
import LatheTensors

/// One transformer block: pre-norm grouped-query attention and a pre-norm SwiGLU MLP, each with a residual. The
/// configuration's recipe picks the optional stages: q/k/v as three linears or one fused (`queryKeyValue`), per-head
/// q/k norms, gate/up as two linears or one fused (`gateUp`).
public final class DecoderBlock: @unchecked Sendable {
    public let attentionNorm: Parameter
    /// Separate q, k, v projections (nil with `fusedQKV`).
    public let query, key, value: Linear?
    /// q, k and v as one linear, [q + 2·kv, hidden] (with `fusedQKV`).
    public let queryKeyValue: Linear?
    /// RMSNorm weights over each head of q and of k, [head_dim] (with `qkNorm`).
    public let queryNorm, keyNorm: Parameter?
    public let output: Linear
    public let mlpNorm: Parameter
    /// Separate gate and up projections (nil with `fusedGateUp`).
    public let gate, up: Linear?
    /// gate and up as one linear, [2·intermediate, hidden], gate rows first (with `fusedGateUp`).
    public let gateUp: Linear?
    public let down: Linear
    /// The width of k and of v (kv heads · head_dim): where a fused qkv_proj's output splits.
    let kvWidth: Int
    /// Every linear in block order, with its PEFT name.
    private let named: [(name: String, linear: Linear)]
    /// With `sandwichNorms`: the norms of the attention output and of the MLP output, before their residual adds.
    public let postAttentionNorm, postFeedforwardNorm: Parameter?

    init(index i: Int, config c: DecoderConfiguration, allocatesLinears: Bool) {
        let p = "model.layers.\(i)."
        named = c.blockLinears.map { l in
            (l.name, Linear(name: p + l.path, inFeatures: l.inFeatures, outFeatures: l.outFeatures, bias: l.bias,
                            allocatesWeight: allocatesLinears))
        }
        let byName = Dictionary(uniqueKeysWithValues: named)
        attentionNorm = Parameter(name: p + "input_layernorm.weight", shape: [c.hiddenSize])
        query = byName["q_proj"]; key = byName["k_proj"]; value = byName["v_proj"]; queryKeyValue = byName["qkv_proj"]
        queryNorm = c.qkNorm ? Parameter(name: p + "self_attn.q_norm.weight", shape: [c.headDim]) : nil
        keyNorm = c.qkNorm ? Parameter(name: p + "self_attn.k_norm.weight", shape: [c.headDim]) : nil
        output = byName["o_proj"]!
        // Gemma's names: post_attention_layernorm is the attention output's norm, the MLP's input norm is
        // pre_feedforward_layernorm; llama's MLP input norm is post_attention_layernorm.
        mlpNorm = Parameter(name: p + (c.sandwichNorms ? "pre_feedforward_layernorm" : "post_attention_layernorm") + ".weight",
                            shape: [c.hiddenSize])
        postAttentionNorm = c.sandwichNorms ? Parameter(name: p + "post_attention_layernorm.weight", shape: [c.hiddenSize]) : nil
        postFeedforwardNorm = c.sandwichNorms ? Parameter(name: p + "post_feedforward_layernorm.weight", shape: [c.hiddenSize]) : nil
        gate = byName["gate_proj"]; up = byName["up_proj"]; gateUp = byName["gate_up_proj"]
        down = byName["down_proj"]!
        kvWidth = c.kvHeadCount * c.headDim
    }

    public var linears: [Linear] { named.map(\.linear) }

    /// The block's linear by its PEFT module name (`q_proj`, `qkv_proj`); nil for a name this block lacks.
    func linear(named module: String) -> Linear? { named.first { $0.name == module }?.linear }

    /// In checkpoint order: the attention's norm, q/k norms and linears, then the MLP's norm and linears.
    public var parameters: [Parameter] {
        let attention = named.prefix { $0.name != "o_proj" }.map(\.linear) + [output]
        let mlp = named.drop { $0.name != "o_proj" }.dropFirst().map(\.linear)
        return [attentionNorm] + [queryNorm, keyNorm].compactMap { $0 } + attention.flatMap(\.parameters)
            + [postAttentionNorm].compactMap { $0 } + [mlpNorm] + mlp.flatMap(\.parameters) + [postFeedforwardNorm].compactMap { $0 }
    }
}

/// A decoder-only causal language model with float32 weights: the block every family shares, its optional stages
/// switched by the configuration (`DecoderConfiguration.family` says which).
public final class DecoderModel: @unchecked Sendable {
    public let config: DecoderConfiguration
    public let embedding: Parameter
    public let blocks: [DecoderBlock]
    public let finalNorm: Parameter
    /// nil when the LM head is tied to the embedding.
    public let lmHead: Linear?
    /// The embedding (and tied head) held in bf16 once `compressWeights(to: .bfloat16)` moved it there, or in the
    /// file's own blocks (`.stored`): for decoding, the head is a third of the bytes read per token.
    public internal(set) var compactEmbedding: (any CompactWeight)?
    /// The rotary embedding of the full-attention layers, and of the sliding ones unless they have their own base.
    public let rope: RotaryEmbedding
    /// The sliding layers' rotary embedding when their base differs (`localRopeTheta`).
    public let localRope: RotaryEmbedding?
    /// Reused between calls of the same batch shape (generation steps), so decoding allocates nothing per token.
    var cachedWorkspace: ForwardWorkspace?
    var cachedGradientWorkspace: GradientWorkspace?
    /// The chunked LM head's logits buffer, one for every loss and log-probability pass (training, reference and
    /// evaluation passes run one after another, so that they share it).
    public let headWorkspace = ChunkedLMHeadLoss.Workspace()
    /// The format `load(from:)` puts the weights in, as they are read.
    public let loadingFormat: WeightFormat

    /// A model with zero weights of the configured shapes; `load(from:)` fills them. The weights that loading will
    /// move to a compact `weightFormat` get no float32 values here: `load` gives each its values only while it
    /// reads and compresses it, so a QLoRA model never exists whole in float32.
    public init(config c: DecoderConfiguration, weightFormat: WeightFormat = .float32) {
        config = c
        loadingFormat = weightFormat
        let compactHead = weightFormat == .bfloat16 || weightFormat == .stored
        embedding = Parameter(name: "model.embed_tokens.weight", shape: [c.vocabularySize, c.hiddenSize], allocated: !compactHead)
        blocks = (0..<c.layerCount).map { DecoderBlock(index: $0, config: c, allocatesLinears: weightFormat == .float32) }
        finalNorm = Parameter(name: "model.norm.weight", shape: [c.hiddenSize])
        lmHead = c.tieWordEmbeddings ? nil : Linear(name: "lm_head", inFeatures: c.hiddenSize, outFeatures: c.vocabularySize,
                                                    bias: false, allocatesWeight: !compactHead)
        // Linear scaling divides every frequency by the factor, as transformers' "linear" rope type does.
        let linearFactors = c.ropeLinearFactor.map { factor in [Float](repeating: Float(factor), count: c.headDim / 2) }
        rope = RotaryEmbedding(headDim: c.headDim, base: c.ropeTheta, llama3: c.ropeLlama3Scaling,
                               frequencyFactors: c.ropeFrequencyFactors ?? linearFactors)
        localRope = c.localRopeTheta.map { RotaryEmbedding(headDim: c.headDim, base: $0) }
    }

    /// Seeded random weights as transformers initialises a new llama: linears and the embedding from
    /// N(0, std²), norms at one, biases at zero.
    public func initializeRandomly(seed: UInt64, standardDeviation: Float = 0.02) {
        var random = SeededGenerator(seed: seed)
        for p in parameters {
            if p.shape.count == 1 {
                p.tensor.fill(p.name.hasSuffix("norm.weight") ? 1 - config.normWeightOffset : 0)
                continue
            }
            var i = 0
            while i < p.tensor.count {
                // Box–Muller: two normal draws from two uniform ones.
                let u1 = max(Double(random.nextUnitFloat()), 1e-12), u2 = Double(random.nextUnitFloat())
                let radius = (-2 * Foundation.log(u1)).squareRoot()
                p.tensor[i] = Float(radius * Foundation.cos(2 * .pi * u2)) * standardDeviation
                if i + 1 < p.tensor.count { p.tensor[i + 1] = Float(radius * Foundation.sin(2 * .pi * u2)) * standardDeviation }
                i += 2
            }
        }
    }

    /// Every parameter, in checkpoint order: the model's registry of named weights.
    public var parameters: [Parameter] {
        [embedding] + blocks.flatMap(\.parameters) + [finalNorm] + (lmHead?.parameters ?? [])
    }

    /// Fills every parameter from `source` (Hugging Face names), failing on a missing key or a wrong shape,
    /// and on any key of the source that the model does not use.
    ///
    /// With a compact `loadingFormat` each weight it applies to is compressed as soon as it is read, so the whole
    /// model never sits in float32 at once; `.stored` takes the linears, the embedding and the LM head in the file's
    /// own blocks where it quantized them, and never expands them.
    public func load(from source: any WeightSource) throws {
        var unused = Set(source.tensorNames)
        for parameter in parameters {
            if loadingFormat == .stored, let stored = try storedWeight(parameter, from: source) {
                unused.remove(parameter.name)
                try useStored(stored, for: parameter)
                continue
            }
            if !parameter.hasValues { parameter.restoreValues(Tensor(zeros: parameter.shape)) }
            try source.read(parameter.name, shape: parameter.shape, into: parameter.tensor.buffer)
            unused.remove(parameter.name)
            if loadingFormat != .float32 { try compress(parameter, to: loadingFormat) }
        }
        // Rotary tables and tied heads that some exporters write are derived, not learned: they may be left over.
        unused = unused.filter { !$0.hasSuffix("rotary_emb.inv_freq") && !(config.tieWordEmbeddings && $0 == "lm_head.weight") }
        if let extra = unused.sorted().first {
            throw ModelError.unusedWeight(file: source.description, name: extra, count: unused.count)
        }
    }
}

extension DecoderModel {
    /// Moves the frozen weights of the blocks' linear layers to `format`; bf16 also takes the embedding and the
    /// LM head (frozen in LoRA training, half the bytes decoding reads). NF4 leaves the embedding, the norms and an
    /// untied head in float32, as bitsandbytes does: they are a small share of the multiplications.
    public func compressWeights(to format: WeightFormat) throws {
        for parameter in parameters { try compress(parameter, to: format) }
    }

    /// Full fine-tuning in `format` (bf16): every linear layer multiplies by a compact copy of its float32 master
    /// weight; call again after each optimizer step to re-round the copies. The embedding and a tied head stay
    /// float32.
    public func keepCompactCopies(_ format: WeightFormat) throws {
        for linear in compressibleLinears { try linear.keepCompactCopy(format) }
    }

    /// The linear layer whose weight `parameter` is, among the blocks' and an untied head.
    private func linear(of parameter: Parameter) -> Linear? {
        compressibleLinears.first { $0.weight === parameter }
    }

    /// The file's own blocks of `parameter` when it is a frozen linear weight, the embedding or the head and the file
    /// quantized it; nil otherwise.
    private func storedWeight(_ parameter: Parameter, from source: any WeightSource) throws -> (any CompactWeight)? {
        guard !parameter.trainable, parameter === embedding || linear(of: parameter) != nil else { return nil }
        return try source.storedWeight(parameter.name, shape: parameter.shape)
    }

    private func useStored(_ stored: any CompactWeight, for parameter: Parameter) throws {
        if let linear = linear(of: parameter) { return try linear.useStoredWeight(stored) }
        compactEmbedding = stored
        if embedding.hasValues { embedding.releaseValues() }
    }

    /// Compresses `parameter` if it is a weight `format` applies to (`load` calls it as each weight arrives).
    func compress(_ parameter: Parameter, to format: WeightFormat) throws {
        guard format != .stored else { return }  // a tensor the file stores as floats stays float32
        if let linear = blocks.lazy.flatMap(\.linears).first(where: { $0.weight === parameter }) {
            try linear.compressWeight(to: format)
        } else if format == .bfloat16, let lmHead, lmHead.weight === parameter {
            try lmHead.compressWeight(to: format)
        } else if format == .bfloat16, parameter === embedding, compactEmbedding == nil, !embedding.trainable {
            compactEmbedding = try format.compress(embedding.tensor, rows: config.vocabularySize, columns: config.hiddenSize)
            embedding.releaseValues()
        }
    }

    /// Every linear layer whose weight may be compact: the blocks' and an untied head.
    var compressibleLinears: [Linear] { blocks.flatMap(\.linears) + (lmHead.map { [$0] } ?? []) }

    /// Brings every compact weight back to float32 (merging adapters and export need plain values).
    public func expandWeights() {
        for linear in compressibleLinears { linear.expandWeight() }
        if let compactEmbedding {
            embedding.restoreValues(expanding: compactEmbedding)
            self.compactEmbedding = nil
        }
    }

    /// The compact formats in use (joined by "+", the one holding most parameters first: "Q4_1+Q8_0" for a GGUF
    /// loaded as stored) and the parameters and bytes they hold, for `lathe inspect` and the planner.
    public var compactWeightSummary: (format: String, parameters: Int, bytes: Int)? {
        let compact = compactWeights
        guard !compact.isEmpty else { return nil }
        var parametersPerFormat: [String: Int] = [:]
        for weight in compact { parametersPerFormat[weight.formatName, default: 0] += weight.rows * weight.columns }
        let formats = parametersPerFormat.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map(\.key)
        return (formats.joined(separator: "+"), compact.reduce(0) { $0 + $1.rows * $1.columns },
                compact.reduce(0) { $0 + $1.byteCount })
    }

    /// Sets what the GGUF block weights' decoding products multiply with (`ActivationFormat`); a note when the
    /// setting cannot take effect (no block weights, or int8 without AVX512-VNNI), nil when it does.
    public func setActivations(_ format: ActivationFormat) -> String? {
        let blocks = compactWeights.compactMap { $0 as? GGMLBlockWeight }
        for weight in blocks { weight.activations = format }
        if format == .int8 && !ActivationFormat.int8Available {
            return "--activations int8 needs AVX512-VNNI, which this CPU lacks: decoding with float32 activations"
        }
        return blocks.isEmpty ? "--activations \(format) applies to a GGUF's quantized blocks (--dtype auto); this model has none" : nil
    }

    /// Every compact weight: the linears' and the embedding's (with a tied head, the head's).
    public var compactWeights: [any CompactWeight] {
        compressibleLinears.compactMap(\.compactWeight) + (compactEmbedding.map { [$0] } ?? [])
    }
}
