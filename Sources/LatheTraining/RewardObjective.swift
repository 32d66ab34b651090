import Foundation

/// A reward model's loss on a micro-batch of pairs, its gradient with respect to each score, and the metrics TRL logs.
public struct RewardResult: Equatable {
    public var loss: Double
    public var chosenGradient: [Float]
    public var rejectedGradient: [Float]
    /// TRL's names: `accuracy`, `margin`, `min_reward`, `mean_reward`, `max_reward`.
    public var metrics: [String: Double]
}

/// TRL 1.16.0's reward-model objective (trl/trainer/reward_trainer.py `RewardTrainer.compute_loss`), a pure function
/// of the scores: mean(−log σ(r_c − r_r − margin)) + center_rewards_coefficient · mean((r_c + r_r)²).
public struct RewardObjective: Equatable, Sendable {
    public var centerRewardsCoefficient: Double?

    public init(centerRewardsCoefficient: Double? = nil) {
        self.centerRewardsCoefficient = centerRewardsCoefficient
    }

    /// - Parameter margins: one per pair (the data's `margin` column), nil when the data has none.
    public func evaluate(chosen: [Float], rejected: [Float], margins: [Double]?) -> RewardResult {
        precondition(chosen.count == rejected.count && !chosen.isEmpty, "RewardObjective: one rejected score per chosen one")
        precondition(margins == nil || margins?.count == chosen.count, "RewardObjective: one margin per pair")
        let b = Double(chosen.count)
        var loss = 0.0
        var dChosen = [Float](repeating: 0, count: chosen.count), dRejected = dChosen
        for i in chosen.indices {
            let c = Double(chosen[i]), r = Double(rejected[i])
            let delta = c - r - (margins?[i] ?? 0)
            loss -= logSigmoid(delta) / b
            var dc = -sigmoid(-delta) / b, dr = sigmoid(-delta) / b
            if let k = centerRewardsCoefficient {
                loss += k * (c + r) * (c + r) / b
                dc += 2 * k * (c + r) / b
                dr += 2 * k * (c + r) / b
            }
            dChosen[i] = Float(dc)
            dRejected[i] = Float(dr)
        }
        let all = (chosen + rejected).map(Double.init)
        let metrics: [String: Double] = [
            "accuracy": mean(zip(chosen, rejected).map { $0 > $1 ? 1 : 0 }),
            "margin": mean(zip(chosen, rejected).map { Double($0) - Double($1) }),
            "min_reward": all.min() ?? 0,
            "mean_reward": mean(all),
            "max_reward": all.max() ?? 0,
        ]
        return RewardResult(loss: loss, chosenGradient: dChosen, rejectedGradient: dRejected, metrics: metrics)
    }
}
