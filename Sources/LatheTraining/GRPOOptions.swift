import Foundation
import LatheEval
import LatheModels

/// How GRPO normalises the summed per-token losses (TRL 1.16.0 `GRPOConfig.loss_type`).
public enum GRPOLossType: String, Codable, Sendable, CaseIterable {
    /// Each completion's mean, averaged over completions (the paper's; favours short completions).
    case grpo
    /// The micro-batch's token mean.
    case bnpo
    /// Divided by completions × max_completion_length (Dr. GRPO: no length bias).
    case drGRPO = "dr_grpo"
    /// The token mean over the whole generation batch (DAPO; TRL's default).
    case dapo
}

/// Where the advantages' scale comes from (TRL's `scale_rewards`).
public enum RewardScaling: String, Codable, Sendable, CaseIterable { case group, batch, none }

/// The `grpo:` section of a run configuration: TRL 1.16.0 GRPOConfig's names and defaults, except where a CPU
/// run needs smaller ones (said per key). `batch_size` counts completions, as TRL's per_device_train_batch_size.
public struct GRPOOptions: Codable, Equatable, Sendable {
    /// Completions per prompt (the group); the generation batch (batch_size × gradient_accumulation) is a multiple.
    public var numGenerations = 8
    /// TRL: 256; here 64, what the bundled tasks need.
    public var maxCompletionLength = 64
    public var temperature: Float = 1
    public var topP: Float = 1
    public var topK = 0
    public var lossType = GRPOLossType.dapo
    /// The clip range of the ratio: [1 − epsilon, 1 + epsilon_high] (epsilon_high defaults to epsilon).
    public var epsilon = 0.2
    public var epsilonHigh: Double?
    /// The weight of the k3 KL to the reference (0: no reference pass).
    public var beta = 0.0
    public var scaleRewards = RewardScaling.group
    /// Completions that did not end on a stop token count for nothing (TRL's mask_truncated_completions).
    public var maskTruncatedCompletions = false
    /// The rewards, summed with their weights (TRL's reward_funcs and reward_weights).
    public var rewards: [RewardSpec] = []

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case temperature, epsilon, beta, rewards
        case numGenerations = "num_generations", maxCompletionLength = "max_completion_length", topP = "top_p", topK = "top_k"
        case lossType = "loss_type", epsilonHigh = "epsilon_high", scaleRewards = "scale_rewards"
        case maskTruncatedCompletions = "mask_truncated_completions"
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = GRPOOptions()
        numGenerations = try c.decodeIfPresent(Int.self, forKey: .numGenerations) ?? d.numGenerations
        maxCompletionLength = try c.decodeIfPresent(Int.self, forKey: .maxCompletionLength) ?? d.maxCompletionLength
        temperature = try c.decodeIfPresent(Float.self, forKey: .temperature) ?? d.temperature
        topP = try c.decodeIfPresent(Float.self, forKey: .topP) ?? d.topP
        topK = try c.decodeIfPresent(Int.self, forKey: .topK) ?? d.topK
        lossType = try Self.decodeNamed(GRPOLossType.self, c, .lossType) ?? d.lossType
        epsilon = try c.decodeIfPresent(Double.self, forKey: .epsilon) ?? d.epsilon
        epsilonHigh = try c.decodeIfPresent(Double.self, forKey: .epsilonHigh)
        beta = try c.decodeIfPresent(Double.self, forKey: .beta) ?? d.beta
        scaleRewards = try Self.decodeNamed(RewardScaling.self, c, .scaleRewards) ?? d.scaleRewards
        maskTruncatedCompletions = try c.decodeIfPresent(Bool.self, forKey: .maskTruncatedCompletions) ?? d.maskTruncatedCompletions
        rewards = try c.decodeIfPresent([RewardSpec].self, forKey: .rewards) ?? d.rewards
    }

    /// An enum by its name; an unknown name is named with the known ones.
    static func decodeNamed<T: RawRepresentable & CaseIterable>(_ type: T.Type, _ c: KeyedDecodingContainer<CodingKeys>,
                                                                 _ key: CodingKeys) throws -> T? where T.RawValue == String {
        guard let name = try c.decodeIfPresent(String.self, forKey: key) else { return nil }
        guard let value = T(rawValue: name) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription:
                "unknown value '\(name)'; one of " + T.allCases.map(\.rawValue).joined(separator: ", "))
        }
        return value
    }

    public var upperClip: Double { epsilonHigh ?? epsilon }

    /// Prompts sampled per step: batch_size × gradient_accumulation completions' worth, and at least one prompt (its
    /// group then runs in micro-batches of batch_size: a smaller batch than the group still trains).
    public func promptsPerStep(generationBatch: Int) -> Int { max(1, generationBatch / numGenerations) }

    /// Checks the values, naming the key; `generationBatch` is batch_size × gradient_accumulation completions.
    public func validate(generationBatch: Int) throws {
        guard numGenerations >= 2 else { throw TrainingError("grpo.num_generations must be at least 2 (a group), got \(numGenerations)") }
        guard generationBatch % numGenerations == 0 || generationBatch < numGenerations else {
            throw TrainingError("batch_size × gradient_accumulation (\(generationBatch) completions) must be a multiple of "
                                + "grpo.num_generations (\(numGenerations))")
        }
        guard maxCompletionLength >= 1 else { throw TrainingError("grpo.max_completion_length must be at least 1, got \(maxCompletionLength)") }
        guard temperature > 0 else { throw TrainingError("grpo.temperature must be positive (rollouts are sampled), got \(temperature)") }
        do { try SamplingOptions(temperature: temperature, topK: topK, topP: topP).validate() } catch {
            throw TrainingError("grpo: \(error)")
        }
        guard epsilon > 0, upperClip > 0 else { throw TrainingError("grpo.epsilon and epsilon_high must be positive") }
        guard beta >= 0 else { throw TrainingError("grpo.beta must not be negative, got \(beta)") }
        guard !rewards.isEmpty else {
            throw TrainingError("grpo: no rewards; give --reward NAME[=WEIGHT] or grpo.rewards in the configuration")
        }
        let labels = rewards.map(\.metricsLabel)
        if let twice = labels.first(where: { label in labels.filter { $0 == label }.count > 1 }) {
            throw TrainingError("grpo.rewards: two rewards are called '\(twice)'; give each its own `label`")
        }
    }
}
