import Foundation
import LatheFormats

/// Phi-3 (model_type "phi3", Phi-3-mini-4k's shape): q, k and v as one linear (`qkv_proj`, [q + 2·kv, hidden]) and
/// gate and up as one (`gate_up_proj`, [2·intermediate, hidden], gate rows first), split by the block after the
/// product, so that a LoRA on either is one A and one B over the fused output, as PEFT and mlx-lm make it. llama.cpp
/// stores them as `attn_qkv` and `ffn_up` (no `ffn_gate`), without permuting rows (NEOX RoPE). Default RoPE only:
/// longrope / su scaling (the 128k models) and partial rotary embeddings (Phi-4-mini) are refused.
public struct Phi3Family: ModelFamily {
    public init() {}

    public let modelTypes = ["phi3"]
    public let ggufArchitectures = ["phi3": "phi3"]
    public func ggufArchitecture(of config: DecoderConfiguration) -> String { "phi3" }
    public func huggingFaceArchitecture(of config: DecoderConfiguration) -> String { "Phi3ForCausalLM" }

    public func completeConfiguration(_ config: inout DecoderConfiguration, huggingFace fields: JSONFields) throws {
        // rope_scaling longrope / su is refused with the shared rope fields (only default and llama3 are read).
        for (object, key) in [(fields, "partial_rotary_factor"), (fields.fields(of: "rope_parameters"), "partial_rotary_factor")] {
            if let factor = try object.optionalDouble(key), factor < 1 {
                throw object.error(key, "is \(factor); partial rotary embeddings (Phi-4-mini) are not supported")
            }
        }
        config.fusedQKV = true
        config.fusedGateUp = true
        // Phi-3-mini-4k attends within a sliding window of 2047 keys: up to that length it is full attention, which
        // is what the shared block computes, so the context is limited to the window.
        if let window = try fields.optionalInt("sliding_window"), window < config.maxPositions {
            config.maxPositions = window
        }
    }

    public func completeConfiguration(_ config: inout DecoderConfiguration, gguf file: GGUFFile) throws {
        let dimensions = try file.metadata["phi3.rope.dimension_count"].map { _ in try file.requiredInt("phi3.rope.dimension_count") }
        if let dimensions, dimensions != config.headDim {
            throw ModelError.invalidConfiguration(file: file.url.path, message: "phi3.rope.dimension_count is \(dimensions), "
                + "head dimension \(config.headDim): partial rotary embeddings are not supported")
        }
        if file.tensor(named: "rope_factors_long.weight") != nil {
            throw ModelError.invalidConfiguration(file: file.url.path, message:
                "rope_factors_long.weight: longrope scaling (Phi-3 128k) is not supported")
        }
        config.fusedQKV = true
        config.fusedGateUp = true
    }

    public func huggingFaceFields(of config: DecoderConfiguration) -> [String: JSONValue] {
        ["original_max_position_embeddings": .number(Double(config.maxPositions)), "partial_rotary_factor": .number(1)]
    }

    public let ggufLayerNames: [String: String] = [
        "attn_norm": "input_layernorm", "attn_qkv": "self_attn.qkv_proj", "attn_output": "self_attn.o_proj",
        "ffn_norm": "post_attention_layernorm", "ffn_up": "mlp.gate_up_proj", "ffn_down": "mlp.down_proj",
    ]

    public func permutedHeads(of name: String, config: DecoderConfiguration) -> Int? { nil }

    public let linearNames = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    public let defaultLoRATargets = ["qkv_proj", "o_proj"]
}
