import Foundation

/// One completion of a GRPO micro-batch: its tokens' log-probabilities under the policy being trained, under the
/// policy that sampled it and under the reference, and its group-relative advantage.
public struct GRPOCompletion: Sendable, Equatable {
    /// log π_θ of each completion token (at the sampling temperature, as TRL scores them).
    public var logProbabilities: [Float]
    /// log π_old, nil when the completion was sampled by these very weights (TRL's num_iterations = 1: the ratio is
    /// 1 and only its gradient is used).
    public var oldLogProbabilities: [Float]?
    /// log π_ref, needed when beta > 0.
    public var referenceLogProbabilities: [Float]?
    public var advantage: Double
    /// False for a completion that counts for nothing (truncated, with mask_truncated_completions).
    public var counted: Bool

    public init(logProbabilities: [Float], oldLogProbabilities: [Float]? = nil, referenceLogProbabilities: [Float]? = nil,
                advantage: Double, counted: Bool = true) {
        self.logProbabilities = logProbabilities; self.oldLogProbabilities = oldLogProbabilities
        self.referenceLogProbabilities = referenceLogProbabilities; self.advantage = advantage; self.counted = counted
    }
}

/// A micro-batch's loss, d(loss)/d(log π_θ) per completion token, and TRL's per-micro-batch metrics.
public struct GRPOResult: Sendable {
    public var loss: Double
    public var gradients: [[Float]]
    public var metrics: [String: Double]
}

/// GRPO's clipped surrogate with an optional k3 KL, as TRL 1.16.0 `GRPOTrainer._compute_loss` computes it
/// (trl/trainer/grpo_trainer.py), with `steps_per_generation` equal to gradient accumulation.
public struct GRPOObjective: Sendable {
    public let options: GRPOOptions

    public init(options: GRPOOptions) { self.options = options }

    /// The mean, NaN for no values (TRL's nanmean of nothing, which its logs leave out).
    static func mean(_ values: [Double]) -> Double { values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count) }

    /// The unbiased standard deviation (torch.std, TRL's nanstd), NaN for fewer than two values.
    static func standardDeviation(_ values: [Double]) -> Double {
        guard values.count > 1 else { return .nan }
        let m = mean(values)
        return (values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(values.count - 1)).squareRoot()
    }

    /// Group-relative advantages (TRL's sum_then_normalize): the weighted rewards minus their group's mean, over
    /// the group's (or the batch's) unbiased standard deviation + 1e-4; nil rewards are left out of the means, and
    /// a completion no reward scored gets advantage 0. Groups are consecutive runs of `num_generations`.
    public static func advantages(rewards: [Double?], groupSize: Int, scaling: RewardScaling) -> [Double] {
        let batchStd = standardDeviation(rewards.compactMap { $0 })
        var result: [Double] = []
        for start in stride(from: 0, to: rewards.count, by: groupSize) {
            let group = Array(rewards[start..<min(start + groupSize, rewards.count)])
            let scored = group.compactMap { $0 }
            let m = mean(scored)
            let s = scaling == .batch ? batchStd : standardDeviation(scored)
            for reward in group {
                guard let reward else { result.append(0); continue }
                result.append(scaling == .none ? reward - m : (reward - m) / (s + 1e-4))
            }
        }
        return result.map { $0.isNaN ? 0 : $0 }
    }

    /// - Parameters:
    ///   - microBatches: the step's gradient accumulation (grpo, bnpo and dr_grpo divide each micro-batch by it).
    ///   - generationTokens: the counted completion tokens of the whole generation batch (dapo's normaliser).
    public func evaluate(_ rows: [GRPOCompletion], microBatches: Int, generationTokens: Int) -> GRPOResult {
        let low = 1 - options.epsilon, high = 1 + options.upperClip
        let counted = rows.reduce(0) { $0 + ($1.counted ? $1.logProbabilities.count : 0) }
        let accumulation = Double(microBatches)
        /// The weight of one counted token of `row` in the loss.
        func weight(_ row: GRPOCompletion) -> Double {
            switch options.lossType {
            case .grpo: return 1 / (Double(rows.count) * Double(max(1, row.logProbabilities.count)) * accumulation)
            case .bnpo: return 1 / (Double(max(1, counted)) * accumulation)
            case .drGRPO: return 1 / (Double(rows.count * options.maxCompletionLength) * accumulation)
            case .dapo: return 1 / Double(max(1, generationTokens))
            }
        }
        var loss = 0.0, kl = 0.0, lowClipped = 0.0, highClipped = 0.0
        var rowLow: [Double] = [], rowHigh: [Double] = []
        var gradients: [[Float]] = []
        for row in rows {
            let w = row.counted ? weight(row) : 0
            var gradient = [Float](repeating: 0, count: row.logProbabilities.count)
            var rowLowCount = 0.0, rowHighCount = 0.0
            let a = row.advantage
            for t in row.logProbabilities.indices {
                let logP = Double(row.logProbabilities[t])
                let ratio = exp(logP - Double(row.oldLogProbabilities?[t] ?? row.logProbabilities[t]))
                let clipped = min(max(ratio, low), high)
                let unclippedTerm = ratio * a, clippedTerm = clipped * a
                var tokenLoss = -min(unclippedTerm, clippedTerm)
                // d ratio/d log π = ratio; the clamp passes it only inside its range; torch.min splits a tie evenly.
                let passes = ratio >= low && ratio <= high ? 1.0 : 0.0
                var dLoss: Double
                if unclippedTerm < clippedTerm { dLoss = -a * ratio } else if clippedTerm < unclippedTerm { dLoss = -a * ratio * passes } else {
                    dLoss = -a * ratio * (1 + passes) / 2
                }
                if options.beta != 0, let reference = row.referenceLogProbabilities {
                    let d = Double(reference[t]) - logP
                    let tokenKL = exp(d) - d - 1
                    tokenLoss += options.beta * tokenKL
                    dLoss += options.beta * (1 - exp(d))
                    if row.counted { kl += tokenKL }
                }
                loss += w * tokenLoss
                gradient[t] = Float(w * dLoss)
                if row.counted {
                    if ratio < low && a < 0 { lowClipped += 1; rowLowCount += 1 }
                    if ratio > high && a > 0 { highClipped += 1; rowHighCount += 1 }
                }
            }
            gradients.append(gradient)
            if row.counted && !row.logProbabilities.isEmpty {
                rowLow.append(rowLowCount / Double(row.logProbabilities.count))
                rowHigh.append(rowHighCount / Double(row.logProbabilities.count))
            }
        }
        let tokens = Double(max(1, counted))
        var metrics: [String: Double] = [
            "clip_ratio/low_mean": lowClipped / tokens, "clip_ratio/high_mean": highClipped / tokens,
            "clip_ratio/region_mean": (lowClipped + highClipped) / tokens,
            // The region mean under the name TRL logged it by before 0.17, which scripts and the issue read.
            "clip_ratio": (lowClipped + highClipped) / tokens,
            "clip_ratio/low_min": rowLow.min() ?? .nan, "clip_ratio/high_max": rowHigh.max() ?? .nan,
        ]
        if options.beta != 0 { metrics["kl"] = kl / tokens }
        return GRPOResult(loss: loss, gradients: gradients, metrics: metrics)
    }
}
