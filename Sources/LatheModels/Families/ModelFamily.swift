import Foundation
import LatheFormats

/// What a model family decides on top of the shared decoder (`DecoderModel`): which Hugging Face `model_type`s and
/// GGUF `general.architecture`s it reads, its own configuration fields (the block's recipe), the config.json it
/// writes, its GGUF tensor names and value transforms, and its LoRA target names. One file per family in
/// `Families/`; `ModelFamilies.all` lists them.
public protocol ModelFamily: Sendable {
    /// The Hugging Face `model_type`s this family reads (config.json), the first being its canonical one.
    var modelTypes: [String] { get }
    /// GGUF `general.architecture` → the `model_type` a file of that architecture loads as.
    var ggufArchitectures: [String: String] { get }
    /// The architecture llama.cpp's converter writes for a model of this configuration.
    func ggufArchitecture(of config: DecoderConfiguration) -> String
    /// The transformers class config.json's `architectures` names.
    func huggingFaceArchitecture(of config: DecoderConfiguration) -> String

    /// Sets the family's own fields (the block's recipe) of a configuration whose shared fields `fields`
    /// (config.json) gave; throws naming the field it refuses.
    func completeConfiguration(_ config: inout DecoderConfiguration, huggingFace fields: JSONFields) throws
    /// The same from a GGUF file's `{architecture}.*` metadata and tensor names.
    func completeConfiguration(_ config: inout DecoderConfiguration, gguf file: GGUFFile) throws
    /// The family's own keys of the config.json Lathe writes (beside the shared ones).
    func huggingFaceFields(of config: DecoderConfiguration) -> [String: JSONValue]
    /// The family's own `{architecture}.*` GGUF keys (without the prefix) that llama.cpp's converter writes beside
    /// the shared ones (`ModelExport.huggingFaceMetadata`).
    func ggufFields(of config: DecoderConfiguration) -> [(String, GGUFValue)]

    /// llama.cpp's names of a block's tensors (`attn_q`) → the Hugging Face module path within the block
    /// (`self_attn.q_proj`).
    var ggufLayerNames: [String: String] { get }
    /// The heads whose rows llama.cpp's converter interleaves for ggml's RoPE in this tensor (Hugging Face name,
    /// with or without `.weight` / `.bias`), nil for a tensor it stores as Hugging Face does.
    func permutedHeads(of name: String, config: DecoderConfiguration) -> Int?

    /// The block's linears as PEFT names them (`q_proj`), in block order: the LoRA targets and `all-linear`.
    var linearNames: [String] { get }
    /// The LoRA targets when none are given (`LoRAConfiguration.defaultTargets`): the attention's linears.
    var defaultLoRATargets: [String] { get }

    func textConfiguration(_ object: [String: JSONValue]) -> [String: JSONValue]
    func ggufStoredOffset(of name: String) -> Float
    var defaultChatTemplate: String? { get }
    var endOfTurnTokens: [String] { get }
}

extension ModelFamily {
    public var name: String { modelTypes[0] }
    public func ggufFields(of config: DecoderConfiguration) -> [(String, GGUFValue)] { [] }

    /// The object of a config.json that holds the text model's fields: the file's own top level, or (Gemma 3's
    /// multimodal config) its `text_config`.
    public func textConfiguration(_ object: [String: JSONValue]) -> [String: JSONValue] { object }

    /// What llama.cpp's converter adds to this tensor's values (Hugging Face name) before storing it: Gemma's
    /// norms are stored as 1 + w. Reading subtracts it, writing adds it.
    public func ggufStoredOffset(of name: String) -> Float { 0 }

    /// The chat template of a file of this family that has none (Gemma 3's base GGUF); nil: no default.
    public var defaultChatTemplate: String? { nil }
    /// Tokens that end an answer in the family's chat format, beyond what the file lists as stops.
    public var endOfTurnTokens: [String] { [] }
}

/// The families Lathe runs: the one place that dispatches on `model_type` and `general.architecture`.
public enum ModelFamilies {
    public static let all: [any ModelFamily] = [LlamaFamily(), Qwen3Family(), Phi3Family(), Gemma3Family()]

    /// Every `model_type` Lathe reads.
    public static var modelTypes: [String] { all.flatMap(\.modelTypes) }
    /// Every GGUF `general.architecture` Lathe reads.
    public static var ggufArchitectures: [String] { all.flatMap { $0.ggufArchitectures.keys.sorted() } }
    /// Every block linear of every family, in block order (for an adapter read without its model).
    public static var linearNames: [String] {
        var names: [String] = []
        for family in all { for name in family.linearNames where !names.contains(name) { names.append(name) } }
        return names
    }

    /// The family of `modelType`; `source` (the file) and `field` name what refused it.
    public static func family(modelType: String, source: String, field: String = "model_type") throws -> any ModelFamily {
        guard let family = all.first(where: { $0.modelTypes.contains(modelType) }) else {
            throw ModelError.invalidConfiguration(file: source, message:
                "\(field) '\(modelType)' is not supported (supported: \(modelTypes.joined(separator: ", ")))")
        }
        return family
    }

    /// The family and `model_type` of a GGUF file's `general.architecture`.
    static func family(ggufArchitecture architecture: String, source: String) throws -> (family: any ModelFamily, modelType: String) {
        for family in all { if let modelType = family.ggufArchitectures[architecture] { return (family, modelType) } }
        throw ModelError.invalidConfiguration(file: source, message:
            "general.architecture '\(architecture)' is not supported (supported: \(ggufArchitectures.joined(separator: ", ")))")
    }
}
