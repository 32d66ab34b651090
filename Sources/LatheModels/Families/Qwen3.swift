import Foundation
import LatheFormats

/// Qwen3 (model_type "qwen3"): the plain block with an RMSNorm over each head of q and k (`q_norm`, `k_norm`,
/// [head_dim]) after the projections and before RoPE, no q/k/v biases, and its own head_dim (128 in every size, not
/// hidden / heads). llama.cpp stores it without permuting Q/K (NEOX RoPE), the norms as `attn_q_norm`, `attn_k_norm`.
public struct Qwen3Family: ModelFamily {
    public init() {}

    public let modelTypes = ["qwen3"]
    public let ggufArchitectures = ["qwen3": "qwen3"]
    public func ggufArchitecture(of config: DecoderConfiguration) -> String { "qwen3" }
    public func huggingFaceArchitecture(of config: DecoderConfiguration) -> String { "Qwen3ForCausalLM" }

    public func completeConfiguration(_ config: inout DecoderConfiguration, huggingFace fields: JSONFields) throws {
        // Sliding windows (off in every released Qwen3) would change which keys a query sees.
        if try fields.optionalBool("use_sliding_window") == true {
            throw fields.error("use_sliding_window", "is true; sliding-window attention is not supported")
        }
        config.attentionBias = try fields.optionalBool("attention_bias") ?? false
        config.qkNorm = true
    }

    public func completeConfiguration(_ config: inout DecoderConfiguration, gguf file: GGUFFile) throws {
        config.attentionBias = file.tensor(named: "blk.0.attn_q.bias") != nil
        config.qkNorm = true
    }

    public func huggingFaceFields(of config: DecoderConfiguration) -> [String: JSONValue] {
        ["attention_bias": .bool(config.attentionBias), "use_sliding_window": .bool(false)]
    }

    public let ggufLayerNames = DecoderConfiguration.plainGGUFLayerNames.merging([
        "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"]) { plain, _ in plain }

    public func permutedHeads(of name: String, config: DecoderConfiguration) -> Int? { nil }

    public let linearNames = DecoderConfiguration.plainLinearNames
    public let defaultLoRATargets = LoRAConfiguration.defaultTargets
}
