import Foundation
import LatheFormats

/// The llama family (model_type "llama", "mistral", "qwen2"): the plain decoder block. Qwen2 is llama with biases
/// on q/k/v; Mistral without sliding windows is llama, and llama.cpp writes it as the llama architecture.
public struct LlamaFamily: ModelFamily {
    public init() {}

    public let modelTypes = ["llama", "mistral", "qwen2"]
    public let ggufArchitectures = ["llama": "llama", "mistral": "llama", "qwen2": "qwen2"]

    public func ggufArchitecture(of config: DecoderConfiguration) -> String {
        config.modelType == "qwen2" ? "qwen2" : "llama"
    }

    public func huggingFaceArchitecture(of config: DecoderConfiguration) -> String {
        config.modelType == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"
    }

    public func completeConfiguration(_ config: inout DecoderConfiguration, huggingFace fields: JSONFields) throws {
        config.attentionBias = try fields.optionalBool("attention_bias") ?? (config.modelType == "qwen2")
    }

    public func completeConfiguration(_ config: inout DecoderConfiguration, gguf file: GGUFFile) throws {
        config.attentionBias = file.tensor(named: "blk.0.attn_q.bias") != nil
    }

    public func huggingFaceFields(of config: DecoderConfiguration) -> [String: JSONValue] {
        config.modelType == "llama" ? ["attention_bias": .bool(config.attentionBias), "mlp_bias": .bool(false)] : [:]
    }

    public let ggufLayerNames = DecoderConfiguration.plainGGUFLayerNames

    /// Q's and K's heads in llama and mistral (their converter's `LlamaModel.permute`); qwen2 is stored as it is.
    public func permutedHeads(of name: String, config: DecoderConfiguration) -> Int? {
        guard config.modelType != "qwen2" else { return nil }
        var linear = Substring(name)
        for suffix in [".weight", ".bias"] where linear.hasSuffix(suffix) { linear = linear.dropLast(suffix.count) }
        if linear.hasSuffix("self_attn.q_proj") { return config.headCount }
        if linear.hasSuffix("self_attn.k_proj") { return config.kvHeadCount }
        return nil
    }

    public let linearNames = DecoderConfiguration.plainLinearNames
    public let defaultLoRATargets = LoRAConfiguration.defaultTargets
}
