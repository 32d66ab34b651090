import ArgumentParser
import Foundation
import LatheData
import LatheModels
import LatheTensors
import LatheTraining

/// The flags `lathe dpo|orpo|simpo|kto` share (each overrides its key of the YAML configuration).
public struct PreferenceRunOptions: ParsableArguments {
    @Argument(help: "A YAML run configuration (optional).") public var config: String?
    @Option(help: "Model: a .gguf file, a Hugging Face folder or a known name.") public var model: String?
    @Option(help: "A PEFT adapter to start from (an SFT adapter): trained further, a frozen copy is the reference.")
    public var adapter: String?
    @OptionGroup public var training: TrainingRunOptions
    @Option(help: "DPO/KTO: distance from the reference; ORPO: weight of the odds-ratio term; SimPO: reward scale.")
    public var beta: Double?
    @Option(name: .customLong("loss-type"), help: "DPO: sigmoid, ipo, hinge, robust, or several with commas (sigmoid,sft is RPO).")
    public var lossType: String?
    @Option(name: .customLong("label-smoothing"), help: "DPO robust, SimPO: the assumed rate of flipped labels.")
    public var labelSmoothing: Double?
    @Option(name: .customLong("grad-accum"), help: "Micro-batches per optimizer step.") public var gradientAccumulation: Int?
    @OptionGroup public var lora: LoRAFlags
    @Option(name: .customLong("max-length"), help: "Longest prompt + completion in tokens (longer ones are cut, prompts that fill it dropped).")
    public var maxLength: Int?
    @Option(name: .customLong("eval-every"), help: "Held-out metrics every N steps.") public var evalEvery: Int?
    @Flag(name: .customLong("precompute-ref-log-probs"), help: "Compute the reference log-probabilities once before training.")
    public var precomputeReference = false
    @Flag(help: "Train every weight instead of a LoRA adapter (the reference is then precomputed).") public var full = false
    @Flag(name: .customLong("gradient-checkpointing"), help: "Recompute activations in the backward pass: less memory, more compute.")
    public var gradientCheckpointing = false
    public init() {}

    /// Defaults, then the YAML file, then the flags.
    func resolved(method: PreferenceMethod, adjust: (inout TrainingConfiguration) -> Void) throws -> TrainingConfiguration {
        var c = try config.map { try TrainingConfiguration.load(yaml: URL(fileURLWithPath: $0)) } ?? TrainingConfiguration()
        c.objective = method
        if let model { c.model = model }
        if let adapter { c.adapter = adapter }
        training.apply(to: &c)
        if let beta { c.preference.beta = beta }
        if let lossType {
            c.preference.lossType = try lossType.split(separator: ",").map { name in
                guard let type = DPOLossType(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                    throw TrainingError("--loss-type: unknown loss '\(name)'; one of " + DPOLossType.allCases.map(\.rawValue).joined(separator: ", "))
                }
                return type
            }
        }
        if let labelSmoothing { c.preference.labelSmoothing = labelSmoothing }
        if let gradientAccumulation { c.gradientAccumulation = gradientAccumulation }
        lora.apply(to: &c.lora)
        if let maxLength { c.preference.maxLength = maxLength }
        if let evalEvery { c.evalEvery = evalEvery }
        if precomputeReference { c.preference.precomputeReferenceLogProbabilities = true }
        if full { c.method = .full }
        if gradientCheckpointing { c.gradientCheckpointing = true }
        adjust(&c)
        try c.validate()
        return c
    }

    func run(_ c: TrainingConfiguration) throws {
        let lm = try loadTrainingModel(c)
        let trainer = try Trainer(config: c, languageModel: lm)
        // The first held-out prompt, answered before and after (greedy): what the tuning changed.
        let prompt = try c.valid.flatMap {
            try PreferenceDataset.loadPairs(URL(fileURLWithPath: $0), renderer: PreferenceRenderer(model: lm, maxLength: c.preference.maxLength))
                .examples.first?.prompt
        }
        func answer(_ prompt: [Int]) throws -> String { try greedyAnswer(lm, to: prompt) }
        let before = c.method == .lora && !training.resume ? try prompt.map(answer) : nil
        try runReportingHeldOut(trainer, resume: training.resume, keys: ["eval_loss", "eval_rewards/accuracies", "eval_rewards/margins"])
        if let prompt {
            print("prompt: \(lm.tokenizer.decode(prompt))")
            if let before { print("before: \(before)") }
            print("after:  \(try answer(prompt))")
        }
    }
}

/// The model a training run starts from, in the format the configuration says; an adapter trained on a quantized
/// base (QLoRA) goes on training on that base.
func loadTrainingModel(_ c: TrainingConfiguration) throws -> LanguageModel {
    MatMul.setThreads(c.threads)
    log("compute threads: \(c.threads.resolvedDescription)")
    let trained = try c.adapter.map { try PEFTAdapter.trainedBase(URL(fileURLWithPath: $0)) } ?? nil
    let format = try WeightFormat.base(underAdapterTrainedOn: trained, dtype: c.dtype, quantize: c.quantize) ?? c.loadingFormat()
    let lm = try LanguageModel.load(c.model, weightFormat: format)
    print("products: \(format) weights (dtype \(c.dtype); this CPU's bf16 products: \(BF16Products.current))")
    return lm
}

/// Runs the trainer with its progress on stderr, then prints the held-out metrics `keys` before and after.
func runReportingHeldOut(_ trainer: Trainer, resume: Bool, keys: [String]) throws {
    var first: [String: Double]?, last: [String: Double]?
    try trainer.run(resume: resume) { event in
        if case .validation(_, let metrics) = event {
            if first == nil { first = metrics }
            last = metrics
        }
        logProgress(event, result: trainer.config.method == .lora ? "adapter" : "model")
    }
    guard let first, let last else { return }
    for key in keys {
        guard let before = first[key], let after = last[key] else { continue }
        print(String(format: "held-out %@: %.4f before, %.4f after", String(key.dropFirst(5)), before, after))
    }
}

/// `lathe dpo`: Direct Preference Optimization on prompt/chosen/rejected pairs.
public struct DPOCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "dpo", abstract: "Tune a model (or an SFT adapter) on preference pairs with DPO, as TRL's DPOTrainer computes it.",
        discussion: "The reference is the base with the adapter off, or the --adapter it starts from, frozen. Flags override the YAML file.")
    @OptionGroup public var options: PreferenceRunOptions
    public init() {}
    public func run() throws { try options.run(try options.resolved(method: .dpo) { _ in }) }
}

/// `lathe orpo`: odds-ratio preference optimisation, SFT and preference in one stage, no reference.
public struct ORPOCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "orpo", abstract: "Tune a model on preference pairs with ORPO (NLL on chosen + odds ratio, no reference), as TRL's ORPOTrainer.")
    @OptionGroup public var options: PreferenceRunOptions
    public init() {}
    public func run() throws { try options.run(try options.resolved(method: .orpo) { _ in }) }
}

/// `lathe simpo`: SimPO (length-normalised rewards with a target margin, no reference).
public struct SimPOCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "simpo", abstract: "Tune a model on preference pairs with SimPO, as TRL's CPOTrainer with loss_type simpo.")
    @OptionGroup public var options: PreferenceRunOptions
    @Option(help: "The target reward margin (TRL's simpo_gamma).") public var gamma: Double?
    @Option(name: .customLong("cpo-alpha"), help: "Weight of the NLL on the chosen completions (0: pure SimPO).") public var cpoAlpha: Double?
    public init() {}
    public func run() throws {
        try options.run(try options.resolved(method: .simpo) { c in
            if let gamma { c.preference.gamma = gamma }
            if let cpoAlpha { c.preference.cpoAlpha = cpoAlpha }
        })
    }
}

/// `lathe kto`: Kahneman-Tversky Optimization on completions labelled desirable or not.
public struct KTOCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "kto", abstract: "Tune a model on unpaired rows (prompt, completion, label) with KTO, as TRL's KTOTrainer.",
        discussion: "Pairs are accepted too: each gives a desirable and an undesirable row.")
    @OptionGroup public var options: PreferenceRunOptions
    @Option(name: .customLong("desirable-weight")) public var desirableWeight: Double?
    @Option(name: .customLong("undesirable-weight")) public var undesirableWeight: Double?
    public init() {}
    public func run() throws {
        try options.run(try options.resolved(method: .kto) { c in
            if let desirableWeight { c.preference.desirableWeight = desirableWeight }
            if let undesirableWeight { c.preference.undesirableWeight = undesirableWeight }
        })
    }
}
