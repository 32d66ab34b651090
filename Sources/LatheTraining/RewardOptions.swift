import Foundation
import LatheModels

/// The `reward:` section of a run configuration: TRL 1.16.0's `RewardConfig` names and defaults where they apply.
/// A `margin` column in the data is used when present, as TRL's collator does (no key switches it).
public struct RewardOptions: Codable, Equatable, Sendable {
    /// Pairs whose chosen or rejected sequence is longer than this are dropped (TRL filters them; nothing is cut).
    public var maxLength = 1024
    /// Weight of mean((r_chosen + r_rejected)²), which pulls the rewards towards zero mean (nil: no such term).
    public var centerRewardsCoefficient: Double?

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case maxLength = "max_length", centerRewardsCoefficient = "center_rewards_coefficient"
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        maxLength = try c.decodeIfPresent(Int.self, forKey: .maxLength) ?? RewardOptions().maxLength
        centerRewardsCoefficient = try c.decodeIfPresent(Double.self, forKey: .centerRewardsCoefficient)
    }

    /// Checks the values, naming the key.
    public func validate() throws {
        guard maxLength >= 2 else { throw TrainingError("reward.max_length must be at least 2, got \(maxLength)") }
        if let centerRewardsCoefficient, !(centerRewardsCoefficient >= 0) {
            throw TrainingError("reward.center_rewards_coefficient must not be negative, got \(centerRewardsCoefficient)")
        }
    }
}
