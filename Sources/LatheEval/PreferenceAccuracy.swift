import Foundation
import LatheData
import LatheModels

/// How often a model prefers the chosen completion by DPO's implicit reward β·(log π(y|x) − log π_ref(y|x)), and
/// by how much, on held-out pairs; with bootstrap intervals over the pairs.
public struct PreferenceAccuracy: Codable, Sendable {
    public let pairs: Int
    public let beta: Double
    /// Share of pairs whose chosen reward is higher (TRL's `rewards/accuracies`).
    public let accuracy: ConfidenceInterval
    /// Mean chosen − rejected reward (`rewards/margins`).
    public let margin: ConfidenceInterval
    public let chosenReward: Double
    public let rejectedReward: Double

    enum CodingKeys: String, CodingKey {
        case pairs, beta, accuracy, margin
        case chosenReward = "chosen_reward", rejectedReward = "rejected_reward"
    }

    /// Scores `pairs` with the policy (the adapters `policy` picks switched on) and the reference (those `reference`
    /// picks; none: the base).
    public static func evaluate(_ pairs: [PreferenceExample], model: DecoderModel, beta: Double, batchSize: Int = 4,
                                policy: (LoRAAdapter) -> Bool, reference: (LoRAAdapter) -> Bool,
                                bootstrap: Bootstrap) throws -> PreferenceAccuracy {
        guard !pairs.isEmpty else { throw EvalError.invalidInput("there are no preference pairs to evaluate") }
        let builder = try PreferenceBatchBuilder(batchSize: batchSize, paddingID: 0)
        var chosen: [Double] = [], rejected: [Double] = []
        for batch in try builder.batches(pairs.map(PreferenceItem.init)) {
            let sums = { try summedLogProbabilities(model, batch: batch.sequences, kinds: batch.kinds) }
            let ratios = zip(try model.withAdapters(where: policy, sums), try model.withAdapters(where: reference, sums)).map { beta * ($0 - $1) }
            chosen += ratios[0..<batch.items]
            rejected += ratios[batch.items...]
        }
        let wins = zip(chosen, rejected).map { $0 > $1 ? 1.0 : 0.0 }
        let margins = zip(chosen, rejected).map { $0 - $1 }
        return PreferenceAccuracy(pairs: pairs.count, beta: beta, accuracy: bootstrap.mean(wins), margin: bootstrap.mean(margins),
                                  chosenReward: chosen.reduce(0, +) / Double(chosen.count),
                                  rejectedReward: rejected.reduce(0, +) / Double(rejected.count))
    }
}
