import ArgumentParser
import Foundation
import LatheModels

/// `lathe adapter`: LoRA adapters in other tools' formats, and adapters combined into one.
public struct AdapterCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "adapter",
        abstract: "Convert LoRA adapters between PEFT, MLX-LM and llama.cpp GGUF, and merge adapters into one.",
        subcommands: [AdapterConvertCommand.self, AdapterMergeCommand.self])
    public init() {}
}

extension AdapterFormat: ExpressibleByArgument {}
extension LoRAMergeMethod: ExpressibleByArgument {}

/// `lathe adapter convert`: one adapter into another format, checked by reading the result back.
public struct AdapterConvertCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert an adapter (its format detected) to PEFT, MLX-LM or llama.cpp's GGUF LoRA.",
        discussion: """
            The input is a PEFT folder (adapter_config.json + adapter_model.safetensors), an MLX-LM folder \
            (adapter_config.json + adapters.safetensors) or a llama.cpp LoRA .gguf. A GGUF LoRA needs the base model \
            (--model; for a PEFT or MLX-LM input the adapter's recorded base is tried): its architecture, and the head \
            counts by which llama.cpp permutes Q and K. The written adapter is read back and every linear's update \
            B·A·scale compared with the input's; a difference above 1e-5 (relative) fails.
            """)
    @Option(help: "The adapter to convert: a PEFT or MLX-LM folder, or a GGUF LoRA file.") public var input: String
    @Option(help: "The format to write: peft, mlx or gguf.") public var to: AdapterFormat
    @Option(help: "The folder (peft, mlx) or file (gguf) to write.") public var output: String
    @Option(help: "The base model (a .gguf file, a Hugging Face folder or a known model's name), needed for GGUF.")
    public var model: String?
    public init() {}

    public func run() throws {
        let report = try AdapterConversion.convert(input: URL(fileURLWithPath: input), to: to,
                                                   output: URL(fileURLWithPath: output), model: model)
        if let base = report.base { log("base model: \(base)") }
        print("\(report.from.rawValue) → \(report.to.rawValue): \(report.modules) linears written to \(output); "
            + "updates read back agree within \(String(format: "%.1e", report.largestRelativeDifference)) (relative)")
    }
}

/// `lathe adapter merge`: several adapters of one base combined into one PEFT adapter.
public struct AdapterMergeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge adapters of one base into one PEFT adapter (cat, linear or svd, as PEFT's add_weighted_adapter).",
        discussion: """
            cat stacks the adapters (rank = the sum of ranks) and adds their updates exactly: Σ wᵢ·ΔWᵢ. linear adds \
            the A and B matrices themselves (equal ranks only), which also adds cross terms BᵢAⱼ. svd keeps the best \
            rank-R approximation of Σ wᵢ·ΔWᵢ (R: --rank, default the largest input rank). The result has scale 1 \
            (lora_alpha = r).
            """)
    @Argument(help: "The adapters (PEFT or MLX-LM folders, GGUF LoRA files with --model).") public var adapters: [String]
    @Option(parsing: .upToNextOption, help: ArgumentHelp(
        "One weight per adapter (default: 1 each), separated by spaces or commas; a negative one in a comma list (0.7,-0.4).",
        valueName: "w"))
    public var weights: [String] = []
    @Option(help: "cat, linear or svd.") public var method: LoRAMergeMethod
    @Option(help: "The rank of an svd merge (default: the largest input rank).") public var rank: Int?
    @Option(help: "The PEFT folder to write.") public var output: String
    @Option(help: "The base model, needed for GGUF LoRA inputs.") public var model: String?
    public init() {}

    /// The weights as numbers: each value may hold several, comma-separated (how a negative one gets past the parser,
    /// which takes `-0.4` for an option).
    var weightValues: [Float]? {
        let values = weights.flatMap { $0.split(separator: ",") }.map { Float($0.trimmingCharacters(in: .whitespaces)) }
        return values.contains(nil) ? nil : values.compactMap { $0 }
    }

    public func validate() throws {
        guard !adapters.isEmpty else { throw ValidationError("give the adapters to merge") }
        guard let values = weightValues else { throw ValidationError("--weights must be numbers, got \(weights.joined(separator: " "))") }
        guard values.isEmpty || values.count == adapters.count else {
            throw ValidationError("\(adapters.count) adapters but \(values.count) --weights: give one weight per adapter")
        }
    }

    public func run() throws {
        let result = try LoRAWeights.merge(files: adapters.map(URL.init(fileURLWithPath:)), model: model,
                                           weights: weights.isEmpty ? adapters.map { _ in 1 } : weightValues ?? [], method: method,
                                           rank: rank, output: URL(fileURLWithPath: output))
        print("\(method.rawValue) merge of \(adapters.count) adapters (rank \(result.config.rank)) written to \(output)")
    }
}
