import ArgumentParser
import Foundation
import LatheModels
import LatheTensors
import LatheTraining

/// `lathe ppo`: PPO against a reward model adapter, the policy an SFT adapter, as TRL 0.29.1's PPOTrainer computes it.
public struct PPOCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ppo", abstract: "Tune an SFT adapter with PPO against a reward model (TRL's PPOTrainer), all on one base.",
        discussion: """
            The policy is --adapter trained further, the reference its frozen copy (no --adapter: a new LoRA, the base is \
            the reference), the value function a head on the policy's hidden states started from the reward model's \
            score head, the reward model --reward-model's adapter on the same base. Prompts: JSONL rows {"prompt"} or \
            {"messages"}. Each step is one minibatch update; metrics.jsonl has TRL's names (objective/kl, \
            objective/scores, policy/approxkl_avg, …). Flags override the YAML file's keys (its `ppo:` section).
            """)
    @Argument(help: "A YAML run configuration (optional).") public var config: String?
    @Option(help: "Model: a .gguf file, a Hugging Face folder or a known name.") public var model: String?
    @Option(help: "The SFT adapter to start from: the policy, and frozen, the reference.") public var adapter: String?
    @Option(name: .customLong("reward-model"), help: "The reward model's adapter folder (lathe reward's output).")
    public var rewardModel: String?
    @OptionGroup public var training: TrainingRunOptions
    @Option(name: .customLong("num-ppo-epochs"), help: "PPO epochs over each rollout batch.") public var numPPOEpochs: Int?
    @Option(name: .customLong("num-mini-batches"), help: "Minibatches per rollout batch (one step each).") public var numMiniBatches: Int?
    @Option(name: .customLong("kl-coef"), help: "Weight of the per-token KL penalty.") public var klCoef: Double?
    @Option(name: .customLong("response-length"), help: "Most tokens per sampled response.") public var responseLength: Int?
    @Option(help: "Sampling temperature of the rollouts.") public var temperature: Double?
    @Option(name: .customLong("missing-eos-penalty"), help: "Subtracted from the score of a response without EOS.")
    public var missingEOSPenalty: Double?
    public init() {}

    /// Defaults, then the YAML file, then the flags.
    func resolved() throws -> TrainingConfiguration {
        var c = try config.map { try TrainingConfiguration.load(yaml: URL(fileURLWithPath: $0)) } ?? TrainingConfiguration()
        c.rl = .ppo
        if let model { c.model = model }
        if let adapter { c.adapter = adapter }
        training.apply(to: &c)
        if let rewardModel { c.ppo.rewardModelPath = rewardModel }
        if let numPPOEpochs { c.ppo.numPPOEpochs = numPPOEpochs }
        if let numMiniBatches { c.ppo.numMiniBatches = numMiniBatches }
        if let klCoef { c.ppo.klCoef = klCoef }
        if let responseLength { c.ppo.responseLength = responseLength }
        if let temperature { c.ppo.temperature = temperature }
        if let missingEOSPenalty { c.ppo.missingEOSPenalty = missingEOSPenalty }
        try c.validate()
        guard c.ppo.rewardModelPath != nil else {
            throw ValidationError("ppo needs a reward model: give --reward-model DIR or ppo.reward_model_path")
        }
        return c
    }

    public func run() throws {
        let c = try resolved()
        returnFreedTensorsToTheSystem()
        let trainer = try Trainer(config: c, languageModel: try loadTrainingModel(c))
        try runReportingHeldOut(trainer, resume: training.resume, keys: [
            "eval_objective/scores", "eval_objective/kl", "eval_objective/rlhf_reward", "eval_completions/mean_length"])
    }
}
