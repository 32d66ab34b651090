import Foundation
import LatheFormats
import LatheTensors

/// Gemma 3's text model (model_type "gemma3_text", or "gemma3" with a `text_config`; GGUF architecture "gemma3"):
/// every RMSNorm scales by 1 + w, four norms per block (before and after attention and MLP), per-head q/k norms,
/// GeGLU, the embedding scaled by √hidden, sliding-window layers with their own RoPE base between full-attention
/// layers, attention scaled by query_pre_attn_scalar^−½, a tied head.
public struct Gemma3Family: ModelFamily {
    public init() {}

    public let modelTypes = ["gemma3_text", "gemma3"]
    public let ggufArchitectures = ["gemma3": "gemma3_text"]

    public func ggufArchitecture(of config: DecoderConfiguration) -> String { "gemma3" }
    public func huggingFaceArchitecture(of config: DecoderConfiguration) -> String { "Gemma3ForCausalLM" }

    /// transformers' default every sixth layer global (`sliding_window_pattern` 6), which llama.cpp assumes too.
    static let defaultSlidingPattern = 6
    /// The sliding layers' RoPE base when a file does not say (transformers' default; llama.cpp's fixed value).
    static let defaultLocalRopeTheta = 10000.0

    /// The block recipe every Gemma 3 shares.
    static func setRecipe(_ config: inout DecoderConfiguration) {
        config.normWeightOffset = 1
        config.sandwichNorms = true
        config.qkNorm = true
        config.gatedActivation = .geluTanh
        // transformers multiplies by torch.tensor(hidden_size ** 0.5) in the weights' dtype: √hidden in float32.
        config.embeddingScale = Float(config.hiddenSize).squareRoot()
    }

    static func slidingLayers(pattern: Int, layerCount: Int) -> [Int] {
        (0..<layerCount).filter { ($0 + 1) % pattern != 0 }
    }

    public func completeConfiguration(_ config: inout DecoderConfiguration, huggingFace fields: JSONFields) throws {
        Self.setRecipe(&config)
        config.modelType = "gemma3_text"
        config.tieWordEmbeddings = try fields.optionalBool("tie_word_embeddings") ?? true
        if try fields.optionalBool("attention_bias") == true { throw fields.error("attention_bias", "must be false for gemma3") }
        let activation = try fields.optionalString("hidden_activation") ?? fields.optionalString("hidden_act") ?? "gelu_pytorch_tanh"
        guard ["gelu_pytorch_tanh", "gelu_tanh"].contains(activation) else {
            throw fields.error("hidden_activation", "'\(activation)' is not supported for gemma3 (supported: gelu_pytorch_tanh)")
        }
        for field in ["final_logit_softcapping", "attn_logit_softcapping"] where try fields.optionalDouble(field) != nil {
            throw fields.error(field, "is not supported (Gemma 3 leaves it null)")
        }
        if try fields.optionalBool("use_bidirectional_attention") == true {
            throw fields.error("use_bidirectional_attention", "must be false (a causal language model)")
        }
        config.attentionScale = Float(1 / (try fields.optionalDouble("query_pre_attn_scalar") ?? 256).squareRoot())
        config.slidingWindow = try fields.optionalInt("sliding_window") ?? 4096
        if let types = fields.object["layer_types"] {
            guard case .array(let names) = types, names.count == config.layerCount else {
                throw fields.error("layer_types", "must list \(config.layerCount) layer types")
            }
            config.slidingLayers = try names.enumerated().compactMap { layer, name in
                switch name.string {
                case "sliding_attention": return layer
                case "full_attention": return nil
                default: throw fields.error("layer_types", "[\(layer)] must be sliding_attention or full_attention")
                }
            }
        } else {
            let pattern = try fields.optionalInt("sliding_window_pattern") ?? fields.optionalInt("_sliding_window_pattern")
                ?? Self.defaultSlidingPattern
            config.slidingLayers = Self.slidingLayers(pattern: pattern, layerCount: config.layerCount)
        }
        // RoPE: transformers 5's rope_parameters per layer type, or the older rope_theta, rope_local_base_freq and
        // rope_scaling (which applies to the full-attention layers only).
        if fields.object["rope_parameters"]?.object?["full_attention"] != nil {
            let global = fields.fields(of: "rope_parameters").fields(of: "full_attention")
            let local = fields.fields(of: "rope_parameters").fields(of: "sliding_attention")
            config.ropeTheta = try global.optionalDouble("rope_theta") ?? 1_000_000
            config.ropeLinearFactor = try Self.linearFactor(global)
            config.localRopeTheta = try local.optionalDouble("rope_theta") ?? Self.defaultLocalRopeTheta
            guard try Self.linearFactor(local) == nil else { throw local.error("rope_type", "must be default") }
        } else {
            // The shared fields read rope_scaling (linear) already.
            config.ropeTheta = try fields.optionalDouble("rope_theta") ?? 1_000_000
            config.localRopeTheta = try fields.optionalDouble("rope_local_base_freq") ?? Self.defaultLocalRopeTheta
        }
    }

    /// A multimodal `gemma3` config.json's `text_config`, as the `gemma3_text` it describes (the head is tied unless
    /// either level says otherwise).
    public func textConfiguration(_ object: [String: JSONValue]) -> [String: JSONValue] {
        guard object["model_type"]?.string == "gemma3", var text = object["text_config"]?.object else { return object }
        text["model_type"] = .string("gemma3_text")
        if text["tie_word_embeddings"] == nil, let tied = object["tie_word_embeddings"] { text["tie_word_embeddings"] = tied }
        return text
    }

    /// The factor of a linear rope type, nil for the default; throws for any other type.
    static func linearFactor(_ rope: JSONFields) throws -> Double? {
        switch try rope.optionalString("rope_type") ?? rope.optionalString("type") ?? "default" {
        case "default": return nil
        case "linear": return try rope.double("factor")
        case let other: throw rope.error("rope_type", "'\(other)' is not supported for gemma3 (supported: default, linear)")
        }
    }

    public func completeConfiguration(_ config: inout DecoderConfiguration, gguf file: GGUFFile) throws {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file.url.path, message: message) }
        Self.setRecipe(&config)
        if file.metadata["gemma3.final_logit_softcapping"] != nil, try file.requiredDouble("gemma3.final_logit_softcapping") != 0 {
            throw fail("gemma3.final_logit_softcapping is not supported (Gemma 3 has none)")
        }
        // Not in the file: llama.cpp fixes the pattern (every sixth layer global) and the local base (10000); it
        // scales attention by 1/√head_dim except for the 62-layer 27B, whose query_pre_attn_scalar is hidden/heads.
        config.slidingWindow = try file.requiredInt("gemma3.attention.sliding_window")
        config.slidingLayers = Self.slidingLayers(pattern: Self.defaultSlidingPattern, layerCount: config.layerCount)
        config.localRopeTheta = Self.defaultLocalRopeTheta
        let scalar = config.layerCount == 62 ? config.hiddenSize / config.headCount : config.headDim
        config.attentionScale = Float(1 / Double(scalar).squareRoot())
        if file.metadata["gemma3.rope.scaling.type"] != nil {
            switch try file.requiredString("gemma3.rope.scaling.type") {
            case "none": break
            case "linear": config.ropeLinearFactor = try file.requiredDouble("gemma3.rope.scaling.factor")
            case let other: throw fail("gemma3.rope.scaling.type '\(other)' is not supported (supported: linear)")
            }
        }
    }

    public func huggingFaceFields(of config: DecoderConfiguration) -> [String: JSONValue] {
        let scalar = config.attentionScale.map { (1 / (Double($0) * Double($0))).rounded() } ?? Double(config.headDim)
        var fields: [String: JSONValue] = [
            "hidden_activation": .string("gelu_pytorch_tanh"), "hidden_act": .string("gelu_pytorch_tanh"),
            "query_pre_attn_scalar": .number(scalar), "sliding_window": .number(Double(config.slidingWindow ?? 4096)),
            "layer_types": .array((0..<config.layerCount).map {
                .string(config.window(ofLayer: $0) == nil ? "full_attention" : "sliding_attention") }),
            "rope_local_base_freq": .number(config.localRopeTheta ?? Self.defaultLocalRopeTheta),
            "attention_bias": .bool(false), "final_logit_softcapping": .null, "attn_logit_softcapping": .null,
        ]
        if let factor = config.ropeLinearFactor {
            fields["rope_scaling"] = .object(["rope_type": .string("linear"), "factor": .number(factor)])
        }
        return fields
    }

    public let ggufLayerNames: [String: String] = [
        "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
        "attn_k_norm": "self_attn.k_norm", "post_attention_norm": "post_attention_layernorm",
        "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
        "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    ]

    /// llama.cpp's converter keeps Gemma's Q and K rows as they are (its RoPE is the NeoX kind for gemma3).
    public func permutedHeads(of name: String, config: DecoderConfiguration) -> Int? { nil }

    /// llama.cpp's converter stores every norm weight plus one (its graph multiplies by the stored weight).
    public func ggufStoredOffset(of name: String) -> Float { name.hasSuffix("norm.weight") ? 1 : 0 }

    /// Gemma 3's chat template (google/gemma-3-*-it tokenizer_config.json; the base GGUFs carry none): the system
    /// message prefixes the first user turn, roles alternate, the assistant is "model"; turns end with
    /// <end_of_turn>.
    public static let chatTemplate = #"""
    {{ bos_token }}
    {%- if messages[0]['role'] == 'system' -%}
        {%- if messages[0]['content'] is string -%}
            {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
        {%- else -%}
            {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
        {%- endif -%}
        {%- set loop_messages = messages[1:] -%}
    {%- else -%}
        {%- set first_user_prefix = "" -%}
        {%- set loop_messages = messages -%}
    {%- endif -%}
    {%- for message in loop_messages -%}
        {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
            {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif -%}
        {%- if (message['role'] == 'assistant') -%}
            {%- set role = "model" -%}
        {%- else -%}
            {%- set role = message['role'] -%}
        {%- endif -%}
        {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
        {%- if message['content'] is string -%}
            {{ message['content'] | trim }}
        {%- elif message['content'] is iterable -%}
            {%- for item in message['content'] -%}
                {%- if item['type'] == 'image' -%}
                    {{ '<start_of_image>' }}
                {%- elif item['type'] == 'text' -%}
                    {{ item['text'] | trim }}
                {%- endif -%}
            {%- endfor -%}
        {%- else -%}
            {{ raise_exception("Invalid content type") }}
        {%- endif -%}
        {{ '<end_of_turn>\n' }}
    {%- endfor -%}
    {%- if add_generation_prompt -%}
        {{'<start_of_turn>model\n'}}
    {%- endif -%}
    """# + "\n"
    public var defaultChatTemplate: String? { Self.chatTemplate }
    public let endOfTurnTokens = ["<end_of_turn>"]

    public let linearNames = DecoderConfiguration.plainLinearNames
    /// The attention's linears, as for every family.
    public let defaultLoRATargets = LoRAConfiguration.defaultTargets
}
