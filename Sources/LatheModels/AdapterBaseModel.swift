import Foundation
import LatheFormats

/// What converting an adapter needs to know of its base model, read from the model's configuration alone (no
/// weights): llama.cpp's architecture name, the head counts its converter permutes Q/K rows by, and every linear's shape.
public struct AdapterBaseModel: Sendable {
    /// `general.architecture` as llama.cpp names it (llama, qwen2).
    public let architecture: String
    public let config: DecoderConfiguration
    /// The file or folder the configuration came from, for messages.
    public let source: String

    public init(architecture: String, config: DecoderConfiguration, source: String) {
        self.architecture = architecture; self.config = config; self.source = source
    }

    /// Opens `reference` (a .gguf file, a Hugging Face folder or a known model's name) and reads its configuration.
    public init(model reference: String) throws {
        let files = try ModelFiles.open(try ModelLocator.resolve(reference))
        let config = try files.configuration()
        switch files {
        case .gguf(let file): architecture = try file.requiredString("general.architecture")
        case .huggingFace: architecture = config.family.ggufArchitecture(of: config)
        }
        self.config = config
        source = files.url.path
    }

    /// The heads whose rows llama.cpp's converter interleaves for ggml's RoPE in this linear's output; nil for a
    /// linear it leaves alone (everything but Q and K, and every linear of qwen2).
    func permutedHeads(of module: String) -> Int? { config.family.permutedHeads(of: module, config: config) }

    /// [out, in] of a block's linear by its short name.
    func shape(of shortName: String) -> (outFeatures: Int, inFeatures: Int)? {
        config.blockLinears.first { $0.name == shortName }.map { ($0.outFeatures, $0.inFeatures) }
    }

    /// Checks that every pair of `adapter` (read from `source`) fits a linear of this base.
    func check(_ adapter: LoRAWeights, source adapterSource: String) throws {
        for module in adapter.moduleNames {
            let pair = adapter.pairs[module]!
            let layer = LoRAWeights.layer(of: module) ?? -1
            guard layer < config.layerCount, let shape = shape(of: LoRAWeights.shortName(of: module)) else {
                throw ModelError.invalidConfiguration(file: adapterSource, message:
                    "'\(module)' is not a linear of the base \(source) (\(config.layerCount) layers); is --model the adapter's base?")
            }
            guard shape == (pair.outFeatures, pair.inFeatures) else {
                throw ModelError.wrongShape(file: adapterSource, name: module + ".weight (B·A)",
                                            expected: [shape.outFeatures, shape.inFeatures], found: [pair.outFeatures, pair.inFeatures])
            }
        }
    }
}
