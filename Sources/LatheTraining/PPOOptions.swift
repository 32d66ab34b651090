import Foundation
import LatheModels

/// The `ppo:` section of a run configuration: PPO's hyper-parameters with the names and defaults of TRL 0.29.1's
/// PPOConfig (trl/experimental/ppo/ppo_config.py), except `stop_token`, which is `eos` here (TRL: none).
public struct PPOOptions: Codable, Equatable, Sendable {
    /// PPO epochs over each rollout batch.
    public var numPPOEpochs = 4
    /// Minibatches each rollout batch is split into; one optimizer step each.
    public var numMiniBatches = 1
    /// Weight of the per-token KL penalty in the reward.
    public var klCoef = 0.05
    public var klEstimator = KLEstimator.k1
    /// Clip range of the probability ratio.
    public var cliprange = 0.2
    /// Weight of the value loss.
    public var vfCoef = 0.1
    /// Clip range of the new values around the rollout's.
    public var cliprangeValue = 0.2
    /// GAE's discount and λ.
    public var gamma = 1.0
    public var lam = 0.95
    public var whitenRewards = false
    /// Subtracted from the score of a response without EOS (nil: none).
    public var missingEOSPenalty: Double?
    /// Tokens sampled per response at most.
    public var responseLength = 53
    public var temperature = 0.7
    /// `eos` (the tokenizer's EOS ends a response) or nil (only `stop_token_id`, if given). Lathe defaults to eos:
    /// TRL's default (none) samples every response to `response_length`.
    public var stopToken: String? = "eos"
    public var stopTokenID: Int?
    /// Rows per forward pass when the rollout is scored (policy, reference, value, reward).
    public var localRolloutForwardBatchSize = 64
    /// The reward model's adapter folder (the `--reward-model` flag).
    public var rewardModelPath: String?

    /// TRL's two KL estimators (http://joschu.net/blog/kl-approx.html): k1 = log π − log π_ref,
    /// k3 = (r − 1) − log r with r = π_ref / π.
    public enum KLEstimator: String, Codable, Sendable, CaseIterable { case k1, k3 }

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case gamma, lam, cliprange, temperature
        case numPPOEpochs = "num_ppo_epochs", numMiniBatches = "num_mini_batches", klCoef = "kl_coef"
        case klEstimator = "kl_estimator", vfCoef = "vf_coef", cliprangeValue = "cliprange_value"
        case whitenRewards = "whiten_rewards", missingEOSPenalty = "missing_eos_penalty", responseLength = "response_length"
        case stopToken = "stop_token", stopTokenID = "stop_token_id"
        case localRolloutForwardBatchSize = "local_rollout_forward_batch_size", rewardModelPath = "reward_model_path"
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = PPOOptions()
        numPPOEpochs = try c.decodeIfPresent(Int.self, forKey: .numPPOEpochs) ?? d.numPPOEpochs
        numMiniBatches = try c.decodeIfPresent(Int.self, forKey: .numMiniBatches) ?? d.numMiniBatches
        klCoef = try c.decodeIfPresent(Double.self, forKey: .klCoef) ?? d.klCoef
        if let name = try c.decodeIfPresent(String.self, forKey: .klEstimator) {
            guard let estimator = KLEstimator(rawValue: name) else {
                throw DecodingError.dataCorruptedError(forKey: .klEstimator, in: c, debugDescription:
                    "unknown estimator '\(name)'; one of " + KLEstimator.allCases.map(\.rawValue).joined(separator: ", "))
            }
            klEstimator = estimator
        }
        cliprange = try c.decodeIfPresent(Double.self, forKey: .cliprange) ?? d.cliprange
        vfCoef = try c.decodeIfPresent(Double.self, forKey: .vfCoef) ?? d.vfCoef
        cliprangeValue = try c.decodeIfPresent(Double.self, forKey: .cliprangeValue) ?? d.cliprangeValue
        gamma = try c.decodeIfPresent(Double.self, forKey: .gamma) ?? d.gamma
        lam = try c.decodeIfPresent(Double.self, forKey: .lam) ?? d.lam
        whitenRewards = try c.decodeIfPresent(Bool.self, forKey: .whitenRewards) ?? d.whitenRewards
        missingEOSPenalty = try c.decodeIfPresent(Double.self, forKey: .missingEOSPenalty)
        responseLength = try c.decodeIfPresent(Int.self, forKey: .responseLength) ?? d.responseLength
        temperature = try c.decodeIfPresent(Double.self, forKey: .temperature) ?? d.temperature
        // `stop_token: null` is kept as no stop token, not replaced by the default.
        stopToken = c.contains(.stopToken) ? try c.decodeIfPresent(String.self, forKey: .stopToken) : d.stopToken
        stopTokenID = try c.decodeIfPresent(Int.self, forKey: .stopTokenID)
        localRolloutForwardBatchSize = try c.decodeIfPresent(Int.self, forKey: .localRolloutForwardBatchSize)
            ?? d.localRolloutForwardBatchSize
        rewardModelPath = try c.decodeIfPresent(String.self, forKey: .rewardModelPath)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(numPPOEpochs, forKey: .numPPOEpochs)
        try c.encode(numMiniBatches, forKey: .numMiniBatches)
        try c.encode(klCoef, forKey: .klCoef)
        try c.encode(klEstimator, forKey: .klEstimator)
        try c.encode(cliprange, forKey: .cliprange)
        try c.encode(vfCoef, forKey: .vfCoef)
        try c.encode(cliprangeValue, forKey: .cliprangeValue)
        try c.encode(gamma, forKey: .gamma)
        try c.encode(lam, forKey: .lam)
        try c.encode(whitenRewards, forKey: .whitenRewards)
        try c.encodeIfPresent(missingEOSPenalty, forKey: .missingEOSPenalty)
        try c.encode(responseLength, forKey: .responseLength)
        try c.encode(temperature, forKey: .temperature)
        // Written even when null: an absent key reads back as the default, eos.
        try c.encode(stopToken, forKey: .stopToken)
        try c.encodeIfPresent(stopTokenID, forKey: .stopTokenID)
        try c.encode(localRolloutForwardBatchSize, forKey: .localRolloutForwardBatchSize)
        try c.encodeIfPresent(rewardModelPath, forKey: .rewardModelPath)
    }

    /// Checks the values, naming the key.
    public func validate() throws {
        guard numPPOEpochs >= 1 else { throw TrainingError("ppo.num_ppo_epochs must be at least 1, got \(numPPOEpochs)") }
        guard numMiniBatches >= 1 else { throw TrainingError("ppo.num_mini_batches must be at least 1, got \(numMiniBatches)") }
        guard klCoef >= 0 else { throw TrainingError("ppo.kl_coef must not be negative, got \(klCoef)") }
        guard cliprange > 0 else { throw TrainingError("ppo.cliprange must be positive, got \(cliprange)") }
        guard vfCoef >= 0 else { throw TrainingError("ppo.vf_coef must not be negative, got \(vfCoef)") }
        guard cliprangeValue > 0 else { throw TrainingError("ppo.cliprange_value must be positive, got \(cliprangeValue)") }
        guard (0...1).contains(gamma) else { throw TrainingError("ppo.gamma must lie in [0, 1], got \(gamma)") }
        guard (0...1).contains(lam) else { throw TrainingError("ppo.lam must lie in [0, 1], got \(lam)") }
        if let missingEOSPenalty, !(missingEOSPenalty > 0) {
            throw TrainingError("ppo.missing_eos_penalty must be positive, got \(missingEOSPenalty)")
        }
        guard responseLength >= 1 else { throw TrainingError("ppo.response_length must be at least 1, got \(responseLength)") }
        guard temperature > 0 else { throw TrainingError("ppo.temperature must be positive, got \(temperature)") }
        if let stopToken, stopToken != "eos" {
            throw TrainingError("ppo.stop_token must be eos or null, got '\(stopToken)'")
        }
        if stopToken != nil, stopTokenID != nil {
            throw TrainingError("ppo.stop_token and ppo.stop_token_id cannot both be set (set stop_token: null to use the id)")
        }
        guard localRolloutForwardBatchSize >= 1 else {
            throw TrainingError("ppo.local_rollout_forward_batch_size must be at least 1, got \(localRolloutForwardBatchSize)")
        }
    }
}
