import ArgumentParser
import Foundation
import LatheFormats
import LatheModels
import LatheTensors

/// `--model`, `--threads`, `--dtype` and `--quantize`: the base model of every command that loads one.
public struct BaseModelOptions: ParsableArguments {
    @Option(name: .long, help: "A .gguf file, a Hugging Face model folder, or a known model name (smollm2-135m).")
    public var model: String = ModelLocator.defaultModelName

    @Option(name: .long, help: ArgumentHelp("Compute threads for products, row kernels, attention and the optimizer: auto (every core, unless a short measurement at start finds them slower than one thread) or a count.",
                                            valueName: "auto|N"))
    public var threads = ThreadSetting.auto

    @Option(name: .long, help: "Weights: auto (to score and generate, as the file stores them: a GGUF's quantized blocks multiplied in place; to train, bf16 where bf16 products beat float32, else float32), f32 or bf16 (expanded).")
    public var dtype = "auto"

    @Option(name: .long, help: "Quantize the block weights on loading: nf4.")
    public var quantize: String?

    @Option(name: .long, help: ArgumentHelp("What a GGUF's quantized blocks are multiplied with when decoding: f32 (the activations as they are) or int8 (rounded to int8 per 32 values, as llama.cpp does: faster, slightly less exact; needs AVX512-VNNI).",
                                            valueName: "f32|int8"))
    public var activations = ActivationFormat.float32

    public init() {}

    public func validate() throws {
        do { _ = try weightFormat(for: .inference) } catch { throw ValidationError("\(error)") }
    }

    /// The format `--dtype` and `--quantize` choose for `use`.
    public func weightFormat(for use: WeightUse) throws -> WeightFormat {
        try WeightFormat.choose(dtype: dtype, quantize: quantize, use: use)
    }

    /// Loads the model named by `--model` with its weights in `format`, after setting the thread count.
    public func load(_ format: WeightFormat) throws -> LanguageModel {
        MatMul.setThreads(threads)
        let lm = try LanguageModel.load(model, weightFormat: format)
        if activations != .float32, let note = lm.model.setActivations(activations) { log(note) }
        return lm
    }
}

/// The base model's options and one `--adapter`, shared by every command that loads a model.
public struct ModelOptions: ParsableArguments {
    @OptionGroup public var base: BaseModelOptions

    @Option(name: .long, help: "A LoRA adapter folder in PEFT's format (adapter_config.json, adapter_model.safetensors).")
    public var adapter: String?

    public init() {}

    public var model: String { base.model }
    public var threads: ThreadSetting { base.threads }
    public var dtype: String { base.dtype }
    public var quantize: String? { base.quantize }

    /// The format `--dtype` and `--quantize` choose for `use`.
    public func weightFormat(for use: WeightUse) throws -> WeightFormat { try base.weightFormat(for: use) }

    /// The quantized base `--adapter` was trained on (QLoRA's NF4) when `--dtype` (auto) and `--quantize` (not
    /// given) leave the choice to it; nil for a plain LoRA adapter, no adapter, or an explicit choice.
    public func adapterBase() throws -> WeightFormat? {
        guard let adapter else { return nil }
        return WeightFormat.base(underAdapterTrainedOn: try PEFTAdapter.trainedBase(URL(fileURLWithPath: adapter)),
                                 dtype: dtype, quantize: quantize)
    }

    /// Loads the model named by `--model` with the `--adapter` on it, after setting the thread count. The base is in
    /// the format `--dtype` and `--quantize` choose or, when they leave it open, the quantized base the adapter was
    /// trained on (said on stderr): a QLoRA adapter runs on the NF4 base it learned on. Master weights (full
    /// fine-tuning) load in float32 whatever `--dtype` says.
    public func load(for use: WeightUse = .inference) throws -> LanguageModel {
        let format = try weightFormat(for: use)
        if use != .masterWeights, let base = try adapterBase() {
            log("adapter \(adapter ?? "") was trained on an \(base.rawValue.uppercased()) base: loading the base as "
                + "\(base.rawValue.uppercased()) (--quantize none for the \(format == .float32 ? "float32" : format.rawValue) base)")
            return try load(base: base)
        }
        return try load(base: use == .masterWeights ? .float32 : format)
    }

    /// Loads the model with its base weights in `base` and the `--adapter` on it, after setting the thread count.
    public func load(base format: WeightFormat) throws -> LanguageModel {
        let lm = try base.load(format)
        if let adapter { try PEFTAdapter.load(URL(fileURLWithPath: adapter), into: lm.model) }
        return lm
    }
}

extension ActivationFormat: ExpressibleByArgument {}

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
