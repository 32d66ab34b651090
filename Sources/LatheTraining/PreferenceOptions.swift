import Foundation
import LatheModels

/// The `preference:` section of a run configuration: the objectives' hyper-parameters with TRL's names and defaults
/// (DPOConfig, CPOConfig, ORPOConfig, KTOConfig of TRL 1.16.0).
public struct PreferenceOptions: Codable, Equatable, Sendable {
    /// DPO/KTO: how far from the reference; ORPO: the odds-ratio term's weight (λ); SimPO/CPO: the reward scale.
    public var beta = 0.1
    /// DPO: one or more losses added with `lossWeights` (["sigmoid", "sft"] with weights [1, α] is RPO).
    public var lossType: [DPOLossType] = [.sigmoid]
    public var lossWeights: [Double]?
    /// DPO robust and SimPO: the assumed rate of flipped labels.
    public var labelSmoothing = 0.0
    /// SimPO: the target reward margin (TRL's `simpo_gamma`).
    public var gamma = 0.5
    /// SimPO/CPO: weight of the NLL on the chosen completions (0: pure SimPO).
    public var cpoAlpha = 0.0
    /// KTO: weights of the desirable and undesirable rows' losses.
    public var desirableWeight = 1.0
    public var undesirableWeight = 1.0
    /// Compute the reference log-probabilities once before training and keep no reference weights.
    public var precomputeReferenceLogProbabilities = false
    /// prompt + completion longer than this are cut (the end of the completion goes); pairs whose prompt alone fills it are dropped.
    public var maxLength = 1024

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case beta, gamma
        case lossType = "loss_type", lossWeights = "loss_weights", labelSmoothing = "label_smoothing", cpoAlpha = "cpo_alpha"
        case desirableWeight = "desirable_weight", undesirableWeight = "undesirable_weight"
        case precomputeReferenceLogProbabilities = "precompute_ref_log_probs", maxLength = "max_length"
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = PreferenceOptions()
        beta = try c.decodeIfPresent(Double.self, forKey: .beta) ?? d.beta
        // A single name or a list, as TRL accepts; an unknown name is named with the known ones.
        if c.contains(.lossType) {
            let names = try (try? c.decode(String.self, forKey: .lossType)).map { [$0] } ?? c.decode([String].self, forKey: .lossType)
            lossType = try names.map { name in
                guard let type = DPOLossType(rawValue: name) else {
                    throw DecodingError.dataCorruptedError(forKey: .lossType, in: c, debugDescription:
                        "unknown loss '\(name)'; one of " + DPOLossType.allCases.map(\.rawValue).joined(separator: ", "))
                }
                return type
            }
        } else {
            lossType = d.lossType
        }
        lossWeights = try c.decodeIfPresent([Double].self, forKey: .lossWeights)
        labelSmoothing = try c.decodeIfPresent(Double.self, forKey: .labelSmoothing) ?? d.labelSmoothing
        gamma = try c.decodeIfPresent(Double.self, forKey: .gamma) ?? d.gamma
        cpoAlpha = try c.decodeIfPresent(Double.self, forKey: .cpoAlpha) ?? d.cpoAlpha
        desirableWeight = try c.decodeIfPresent(Double.self, forKey: .desirableWeight) ?? d.desirableWeight
        undesirableWeight = try c.decodeIfPresent(Double.self, forKey: .undesirableWeight) ?? d.undesirableWeight
        precomputeReferenceLogProbabilities = try c.decodeIfPresent(Bool.self, forKey: .precomputeReferenceLogProbabilities)
            ?? d.precomputeReferenceLogProbabilities
        maxLength = try c.decodeIfPresent(Int.self, forKey: .maxLength) ?? d.maxLength
    }

    /// Checks the values, naming the key.
    public func validate() throws {
        guard beta > 0 else { throw TrainingError("preference.beta must be positive, got \(beta)") }
        guard !lossType.isEmpty else { throw TrainingError("preference.loss_type must name at least one loss") }
        if let lossWeights, lossWeights.count != lossType.count {
            throw TrainingError("preference.loss_weights has \(lossWeights.count) weights for \(lossType.count) loss types")
        }
        guard labelSmoothing >= 0, labelSmoothing < 0.5 else {
            throw TrainingError("preference.label_smoothing must lie in [0, 0.5), got \(labelSmoothing)")
        }
        guard desirableWeight > 0, undesirableWeight > 0 else {
            throw TrainingError("preference.desirable_weight and undesirable_weight must be positive")
        }
        guard maxLength >= 2 else { throw TrainingError("preference.max_length must be at least 2, got \(maxLength)") }
    }
}
