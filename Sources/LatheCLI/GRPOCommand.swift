import ArgumentParser
import Foundation
#if os(Linux)
import Glibc
#endif
import LatheData
import LatheEval
import LatheModels
import LatheTensors
import LatheTraining

/// `lathe grpo`: Group Relative Policy Optimization with rule rewards (and reward models or external scorers).
public struct GRPOCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "grpo",
        abstract: "Tune a model (or an SFT adapter) with GRPO: sample groups of completions, reward them, reinforce the better ones, as TRL's GRPOTrainer.",
        discussion: """
            Rows: {"prompt": text or messages} or {"messages": [...]} (an SFT row: its last assistant turn becomes the \
            reference), plus any fields the rewards read ("reference"). Rewards: exact_match, json_match, json_valid, \
            json_keys, regex, length, reward_model, command, http; settings (pattern, target, command, url, …) go in \
            the YAML's grpo.rewards. --batch-size counts completions, as TRL's per_device_train_batch_size.
            """)
    @Argument(help: "A YAML run configuration (optional).") public var config: String?
    @Option(help: "Model: a .gguf file, a Hugging Face folder or a known name.") public var model: String?
    @Option(help: "A PEFT adapter to start from (an SFT adapter): trained further, a frozen copy is the reference.")
    public var adapter: String?
    @OptionGroup public var training: TrainingRunOptions
    @Option(name: .customLong("reward"), help: ArgumentHelp("A reward and its weight (repeatable); replaces the YAML's list, keeping the settings of the rewards it names.", valueName: "NAME[=WEIGHT]"))
    public var rewards: [String] = []
    @Option(name: .customLong("num-generations"), help: "Completions per prompt (the group).") public var numGenerations: Int?
    @Option(name: .customLong("max-completion-length"), help: "The most tokens per completion.") public var maxCompletionLength: Int?
    @Option(help: "Sampling temperature of the rollouts.") public var temperature: Float?
    @Option(help: "Weight of the KL to the reference (0: none, TRL's default).") public var beta: Double?
    @Option(name: .customLong("loss-type"), help: "grpo, bnpo, dr_grpo or dapo (the default).") public var lossType: String?
    @Option(name: .customLong("grad-accum"), help: "Micro-batches per optimizer step.") public var gradientAccumulation: Int?
    @OptionGroup public var lora: LoRAFlags
    @Option(name: .customLong("eval-every"), help: "Held-out rewards every N steps.") public var evalEvery: Int?
    public init() {}

    /// Defaults, then the YAML file, then the flags.
    public func resolvedConfiguration() throws -> TrainingConfiguration {
        var c = try config.map { try TrainingConfiguration.load(yaml: URL(fileURLWithPath: $0)) } ?? TrainingConfiguration()
        c.rl = .grpo
        if let model { c.model = model }
        if let adapter { c.adapter = adapter }
        training.apply(to: &c)
        if !rewards.isEmpty { c.grpo.rewards = try rewards.map { try Self.reward($0, configured: c.grpo.rewards) } }
        if let numGenerations { c.grpo.numGenerations = numGenerations }
        if let maxCompletionLength { c.grpo.maxCompletionLength = maxCompletionLength }
        if let temperature { c.grpo.temperature = temperature }
        if let beta { c.grpo.beta = beta }
        if let lossType {
            guard let type = GRPOLossType(rawValue: lossType) else {
                throw TrainingError("--loss-type: unknown loss '\(lossType)'; one of " + GRPOLossType.allCases.map(\.rawValue).joined(separator: ", "))
            }
            c.grpo.lossType = type
        }
        if let gradientAccumulation { c.gradientAccumulation = gradientAccumulation }
        lora.apply(to: &c.lora)
        if let evalEvery { c.evalEvery = evalEvery }
        try c.validate()
        return c
    }

    /// `NAME[=WEIGHT]`: the configured reward of that name (or label) with the weight, else a new one.
    static func reward(_ flag: String, configured: [RewardSpec]) throws -> RewardSpec {
        let parts = flag.split(separator: "=", maxSplits: 1).map(String.init)
        let name = parts[0].trimmingCharacters(in: .whitespaces)
        var spec: RewardSpec
        if let known = configured.first(where: { $0.metricsLabel == name }) {
            spec = known
        } else if let kind = RewardSpec.Kind(rawValue: name) {
            spec = RewardSpec(name: kind)
        } else {
            throw TrainingError("--reward \(flag): unknown reward '\(name)'; one of "
                                + RewardSpec.Kind.allCases.map(\.rawValue).joined(separator: ", "))
        }
        if parts.count == 2 {
            guard let weight = Double(parts[1]), weight.isFinite else { throw TrainingError("--reward \(flag): the weight '\(parts[1])' is not a number") }
            spec.weight = weight
        }
        return spec
    }

    public func validate() throws {
        do { _ = try resolvedConfiguration() } catch { throw ValidationError("\(error)") }
    }

    public func run() throws {
        let c = try resolvedConfiguration()
        returnFreedTensorsToTheSystem()
        let trainer = try Trainer(config: c, languageModel: try loadTrainingModel(c))
        try runReportingHeldOut(trainer, resume: training.resume, keys: ["eval_reward"]
            + c.grpo.rewards.map { "eval_rewards/\($0.metricsLabel)/mean" } + ["eval_completions/mean_length"])
    }
}

/// RL stages only: tensors over 128 KiB get pages of their own, returned when they are freed. glibc's default raises
/// that threshold (up to 32 MiB) after the first such free, and then the passes of many shapes between updates leave
/// freed workspaces in the heap: PPO on SmolLM2 (batch 8, 63 + 48 tokens) peaked at 1554 MiB resident, 1391 MiB with
/// this, as planned. mallopt(M_MMAP_THRESHOLD, …) is in malloc.h, which the Glibc module does not export.
func returnFreedTensorsToTheSystem() {
    #if os(Linux)
    if let symbol = dlsym(nil, "mallopt") {
        let mallopt = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
        let mmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD
        _ = mallopt(mmapThreshold, 128 << 10)
    }
    #endif
}
