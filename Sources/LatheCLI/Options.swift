import ArgumentParser
import Foundation
import LatheModels
import LatheTensors

/// `--model` and `--threads`, shared by every command that loads a model.
public struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "A .gguf file, a Hugging Face model folder, or a known model name (smollm2-135m).")
    public var model: String = ModelLocator.defaultModelName

    @Option(name: .long, help: ArgumentHelp("Compute threads for products, row kernels, attention and the optimizer: auto (one thread or every core, whichever a short measurement at start finds faster) or a count.",
                                            valueName: "auto|N"))
    public var threads = ThreadSetting.auto

    @Option(name: .long, help: "A LoRA adapter folder in PEFT's format (adapter_config.json, adapter_model.safetensors).")
    public var adapter: String?

    @Option(name: .long, help: "Block weights: auto (bf16 where the CPU has AMX or AVX512-BF16), f32 or bf16.")
    public var dtype = "auto"

    @Option(name: .long, help: "Quantize the block weights on loading: nf4.")
    public var quantize: String?

    public init() {}

    public func validate() throws {
        do { _ = try weightFormat(trainsBase: false) } catch { throw ValidationError("\(error)") }
    }

    /// The format `--dtype` and `--quantize` choose.
    public func weightFormat(trainsBase: Bool) throws -> WeightFormat {
        try WeightFormat.choose(dtype: dtype, quantize: quantize, trainsBase: trainsBase)
    }

    /// Loads the model named by `--model` with the `--adapter` on it, after setting the thread count. With
    /// `trainsBase` (full fine-tuning, merging) the weights load in float32 whatever `--dtype` says: they are
    /// the master values.
    public func load(trainsBase: Bool = false) throws -> LanguageModel {
        MatMul.setThreads(threads)
        let format = try weightFormat(trainsBase: trainsBase)
        let lm = try LanguageModel.load(model, weightFormat: trainsBase ? .float32 : format)
        if let adapter { try PEFTAdapter.load(URL(fileURLWithPath: adapter), into: lm.model) }
        return lm
    }
}

extension ThreadSetting: ExpressibleByArgument {
    /// What the setting resolved to, and for auto what the start-up measurement found (it measures if not yet done).
    var resolvedDescription: String {
        self == .auto ? "auto: \(AutoThreads.measurement)" : description
    }
}

/// The sampling flags of every command that generates text.
public struct SamplingFlags: ParsableArguments {
    @Option(help: "Sampling temperature; 0 picks the most likely token (greedy).")
    public var temperature: Float = 0
    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens (0: all).")
    public var topK: Int = 0
    @Option(name: .customLong("top-p"), help: "Sample among the most likely tokens whose probabilities add up to p.")
    public var topP: Float = 1
    @Option(name: .customLong("repetition-penalty"), help: "Divide the logits of tokens already seen by this (1: off).")
    public var repetitionPenalty: Float = 1
    @Option(help: "Random seed: the same seed gives the same text.")
    public var seed: UInt64 = 0
    @Option(name: .customLong("max-tokens"), help: "The most tokens to generate per answer.")
    public var maxTokens: Int = 256
    @Option(name: .customLong("stop"), help: "Stop when the text contains this string (repeatable).")
    public var stopStrings: [String] = []

    public init() {}

    public var options: SamplingOptions {
        SamplingOptions(temperature: temperature, topK: topK, topP: topP, repetitionPenalty: repetitionPenalty, seed: seed)
    }

    public func validate() throws {
        do { try options.validate() } catch { throw ValidationError("\(error)") }
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1, got \(maxTokens)") }
    }
}

/// Writes one line to standard output at once (JSON Lines output must not interleave with streaming).
func printLine(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

/// Encodes a value as one line of JSON, without escaping slashes or non-ASCII text.
func jsonLine<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
