import Foundation
import LatheData

/// The methods that train on preferences, by command name.
public enum PreferenceMethod: String, Codable, Sendable, CaseIterable {
    case dpo, orpo, simpo, kto

    /// Whether the loss compares against a reference model (the base with the adapter off, or a frozen adapter).
    public var needsReference: Bool { self == .dpo || self == .kto }
    /// KTO trains on unpaired rows.
    public var isUnpaired: Bool { self == .kto }
    /// Sequences per item in a batch: a pair's two completions, or one row (KTO's mismatched rows are scored
    /// without gradient, apart).
    public var sequencesPerItem: Int { isUnpaired ? 1 : 2 }
}

/// DPO's loss types, as TRL's `DPOConfig.loss_type` names them (a list: the losses are added with `loss_weights`).
public enum DPOLossType: String, Codable, Sendable, CaseIterable {
    case sigmoid, ipo, hinge, robust, sft
}

/// What an objective is a function of for one micro-batch: the policy's log-probability of each target of the
/// batch's sequences, and the reference's summed log-probabilities per row.
public struct ObjectiveInput {
    public let batch: PreferenceBatch
    /// log p(target) per position of `batch.sequences` (values where there is no target are never read).
    public let logProbabilities: [Float]
    /// The reference's completion log-probabilities, one per row (nil for reference-free objectives).
    public let reference: [Double]?
    /// KTO: the policy's and the reference's summed log-probabilities of the mismatched rows (no gradient flows).
    public let mismatchedPolicy: [Double]?
    public let mismatchedReference: [Double]?

    public init(batch: PreferenceBatch, logProbabilities: [Float], reference: [Double]?, mismatchedPolicy: [Double]? = nil,
                mismatchedReference: [Double]? = nil) {
        self.batch = batch; self.logProbabilities = logProbabilities; self.reference = reference
        self.mismatchedPolicy = mismatchedPolicy; self.mismatchedReference = mismatchedReference
    }

    /// Per row: the summed completion log-probability and the number of completion tokens.
    func completionSums() -> (sums: [Double], counts: [Int]) {
        let s = batch.sequences
        var sums = [Double](repeating: 0, count: s.batchSize), counts = [Int](repeating: 0, count: s.batchSize)
        for row in 0..<s.batchSize {
            for i in row * s.length..<(row + 1) * s.length where batch.kinds[i] == .completion {
                sums[row] += Double(logProbabilities[i]); counts[row] += 1
            }
        }
        return (sums, counts)
    }
}

/// An objective's value on a micro-batch, its gradient with respect to each input log-probability, and the
/// metrics TRL logs (its names).
public struct ObjectiveResult {
    public var loss: Double
    public var gradient: [Float]
    public var metrics: [String: Double]
}

/// The preference objectives, as pure functions of log-probabilities with TRL 1.16.0's definitions:
/// DPO (trl/trainer/dpo_trainer.py `_compute_loss`), ORPO (trl/experimental/orpo/orpo_trainer.py
/// `odds_ratio_loss`, `concatenated_forward`), SimPO (trl/experimental/cpo/cpo_trainer.py `cpo_loss` with
/// loss_type "simpo") and KTO (trl/trainer/kto_trainer.py `_compute_loss`).
public struct PreferenceObjective: Equatable, Sendable {
    public var method: PreferenceMethod
    public var options: PreferenceOptions

    public init(method: PreferenceMethod, options: PreferenceOptions) {
        self.method = method
        self.options = options
    }

    /// ORPO's NLL covers the chosen rows' prompts as well.
    public var scoresPrompt: Bool { method == .orpo }

    public func evaluate(_ input: ObjectiveInput) throws -> ObjectiveResult {
        switch method {
        case .dpo: return try dpo(input)
        case .orpo: return orpo(input)
        case .simpo: return simpo(input)
        case .kto: return try kto(input)
        }
    }

    // MARK: DPO

    func dpo(_ input: ObjectiveInput) throws -> ObjectiveResult {
        let b = input.batch.items, beta = options.beta, epsilon = options.labelSmoothing
        guard let reference = input.reference else { throw TrainingError("DPO needs the reference log-probabilities") }
        let (sums, counts) = input.completionSums()
        // d(loss)/d(summed completion log-probability) per row; the sft term adds per token.
        var dSum = [Double](repeating: 0, count: 2 * b)
        var loss = 0.0
        var sftTokenWeight = 0.0
        let chosen = (0..<b).map { sums[$0] - reference[$0] }, rejected = (0..<b).map { sums[b + $0] - reference[b + $0] }
        let weights = options.lossWeights ?? options.lossType.map { _ in 1 }
        for (type, weight) in zip(options.lossType, weights) {
            for i in 0..<b {
                let delta = chosen[i] - rejected[i]
                var value = 0.0, dDelta = 0.0
                switch type {
                case .sigmoid:
                    value = -logSigmoid(beta * delta)
                    dDelta = -beta * sigmoid(-beta * delta)
                case .hinge:
                    value = max(0, 1 - beta * delta)
                    dDelta = 1 - beta * delta > 0 ? -beta : 0
                case .robust:
                    value = (-(1 - epsilon) * logSigmoid(beta * delta) + epsilon * logSigmoid(-beta * delta)) / (1 - 2 * epsilon)
                    dDelta = beta * (-(1 - epsilon) * sigmoid(-beta * delta) - epsilon * sigmoid(beta * delta)) / (1 - 2 * epsilon)
                case .ipo:
                    // Per-token means of the log-ratios (TRL divides by the completion lengths, clamped at 1).
                    let nc = Double(max(counts[i], 1)), nr = Double(max(counts[b + i], 1))
                    let d = chosen[i] / nc - rejected[i] / nr - 1 / (2 * beta)
                    value = d * d
                    dSum[i] += weight * 2 * d / nc / Double(b)
                    dSum[b + i] -= weight * 2 * d / nr / Double(b)
                case .sft:
                    continue
                }
                loss += weight * value / Double(b)
                if type != .ipo {
                    dSum[i] += weight * dDelta / Double(b)
                    dSum[b + i] -= weight * dDelta / Double(b)
                }
            }
            if type == .sft {
                // −mean log p over the chosen completions' tokens of the micro-batch.
                let tokens = counts[0..<b].reduce(0, +)
                if tokens > 0 {
                    loss += weight * -sums[0..<b].reduce(0, +) / Double(tokens)
                    sftTokenWeight = -weight / Double(tokens)
                }
            }
        }
        let gradient = perTokenGradient(input.batch, dSum: dSum, dTokenInFirstRows: sftTokenWeight, kinds: [.completion])
        let rewardsChosen = chosen.map { beta * $0 }, rewardsRejected = rejected.map { beta * $0 }
        var metrics = rewardMetrics(chosen: rewardsChosen, rejected: rewardsRejected)
        metrics["logps/chosen"] = mean(Array(sums[0..<b]))
        metrics["logps/rejected"] = mean(Array(sums[b...]))
        return ObjectiveResult(loss: loss, gradient: gradient, metrics: metrics)
    }

    // MARK: ORPO and SimPO

    func orpo(_ input: ObjectiveInput) -> ObjectiveResult {
        let b = input.batch.items, beta = options.beta
        let (sums, counts) = input.completionSums()
        let averages = zip(sums, counts).map { $0 / Double(max($1, 1)) }
        var dAverage = [Double](repeating: 0, count: 2 * b)
        var oddsLoss = 0.0, ratios: [Double] = [], logOdds: [Double] = []
        for i in 0..<b {
            let c = averages[i], r = averages[b + i]
            let odds = (c - r) - (log1mexp(c) - log1mexp(r))
            let ratio = logSigmoid(odds)
            ratios.append(ratio); logOdds.append(odds)
            oddsLoss -= beta * ratio / Double(b)
            // d log1mexp(x)/dx = −eˣ/(1 − eˣ), so d(odds)/dc = 1/(1 − eᶜ) and d(odds)/dr = −1/(1 − eʳ).
            let dOdds = -beta * sigmoid(-odds) / Double(b)
            dAverage[i] = dOdds / -expm1(c)
            dAverage[b + i] = -dOdds / -expm1(r)
        }
        // The NLL is over every target of the chosen rows, prompt included (TRL's ORPO labels are the input ids).
        let (nll, nllTokens) = firstRowsSum(input, kinds: [.prompt, .completion])
        let nllLoss = nllTokens > 0 ? -nll / Double(nllTokens) : 0
        let dSum = zip(dAverage, counts).map { $0 / Double(max($1, 1)) }
        let gradient = perTokenGradient(input.batch, dSum: dSum, dTokenInFirstRows: nllTokens > 0 ? -1 / Double(nllTokens) : 0,
                                        kinds: [.prompt, .completion])
        var metrics = rewardMetrics(chosen: averages[0..<b].map { beta * $0 }, rejected: averages[b...].map { beta * $0 })
        metrics["logps/chosen"] = mean(Array(averages[0..<b]))
        metrics["logps/rejected"] = mean(Array(averages[b...]))
        metrics["nll_loss"] = nllLoss
        metrics["log_odds_ratio"] = mean(ratios)
        metrics["log_odds_chosen"] = mean(logOdds)
        return ObjectiveResult(loss: nllLoss + oddsLoss, gradient: gradient, metrics: metrics)
    }

    func simpo(_ input: ObjectiveInput) -> ObjectiveResult {
        let b = input.batch.items, beta = options.beta, epsilon = options.labelSmoothing
        let (sums, counts) = input.completionSums()
        let averages = zip(sums, counts).map { $0 / Double(max($1, 1)) }
        var dSum = [Double](repeating: 0, count: 2 * b)
        var loss = 0.0
        for i in 0..<b {
            let logits = averages[i] - averages[b + i] - options.gamma / beta
            loss += (-(1 - epsilon) * logSigmoid(beta * logits) - epsilon * logSigmoid(-beta * logits)) / Double(b)
            let dLogits = beta * (-(1 - epsilon) * sigmoid(-beta * logits) + epsilon * sigmoid(beta * logits)) / Double(b)
            dSum[i] = dLogits / Double(max(counts[i], 1))
            dSum[b + i] = -dLogits / Double(max(counts[b + i], 1))
        }
        // CPO's behaviour-cloning NLL over the chosen completions, weighted by cpo_alpha (0 for SimPO by default).
        var tokenWeight = 0.0
        var metrics = rewardMetrics(chosen: averages[0..<b].map { beta * $0 }, rejected: averages[b...].map { beta * $0 })
        metrics["nll_loss"] = 0  // TRL logs 0 when cpo_alpha is 0
        if options.cpoAlpha != 0 {
            let tokens = counts[0..<b].reduce(0, +)
            let nll = tokens > 0 ? -sums[0..<b].reduce(0, +) / Double(tokens) : 0
            loss += options.cpoAlpha * nll
            tokenWeight = tokens > 0 ? -options.cpoAlpha / Double(tokens) : 0
            metrics["nll_loss"] = nll
        }
        metrics["logps/chosen"] = mean(Array(averages[0..<b]))
        metrics["logps/rejected"] = mean(Array(averages[b...]))
        let gradient = perTokenGradient(input.batch, dSum: dSum, dTokenInFirstRows: tokenWeight, kinds: [.completion])
        return ObjectiveResult(loss: loss, gradient: gradient, metrics: metrics)
    }

    // MARK: KTO

    func kto(_ input: ObjectiveInput) throws -> ObjectiveResult {
        let n = input.batch.items, beta = options.beta
        guard let reference = input.reference, let labels = input.batch.labels else {
            throw TrainingError("KTO needs labelled rows and the reference log-probabilities")
        }
        let (sums, _) = input.completionSums()
        // The KL estimate from mismatched pairs, without gradient, clamped at 0 (TRL: `.mean().clamp(min=0)`).
        var kl = 0.0
        if let policy = input.mismatchedPolicy, let ref = input.mismatchedReference, !policy.isEmpty {
            kl = max(0, zip(policy, ref).map { $0 - $1 }.reduce(0, +) / Double(policy.count))
        }
        var dSum = [Double](repeating: 0, count: n)
        var loss = 0.0
        var chosenRewards: [Double] = [], rejectedRewards: [Double] = [], chosenLogps: [Double] = [], rejectedLogps: [Double] = []
        for i in 0..<n {
            let ratio = sums[i] - reference[i]
            if labels[i] {
                let s = sigmoid(beta * (ratio - kl))
                loss += options.desirableWeight * (1 - s) / Double(n)
                dSum[i] = -options.desirableWeight * beta * s * (1 - s) / Double(n)
                chosenRewards.append(beta * ratio); chosenLogps.append(sums[i])
            } else {
                let s = sigmoid(beta * (kl - ratio))
                loss += options.undesirableWeight * (1 - s) / Double(n)
                dSum[i] = options.undesirableWeight * beta * s * (1 - s) / Double(n)
                rejectedRewards.append(beta * ratio); rejectedLogps.append(sums[i])
            }
        }
        var metrics: [String: Double] = ["kl": kl]
        if !chosenRewards.isEmpty {
            metrics["rewards/chosen"] = mean(chosenRewards)
            metrics["logps/chosen"] = mean(chosenLogps)
        }
        if !rejectedRewards.isEmpty {
            metrics["rewards/rejected"] = mean(rejectedRewards)
            metrics["logps/rejected"] = mean(rejectedLogps)
        }
        if let c = metrics["rewards/chosen"], let r = metrics["rewards/rejected"] { metrics["rewards/margins"] = c - r }
        let gradient = perTokenGradient(input.batch, dSum: dSum, dTokenInFirstRows: 0, kinds: [.completion])
        return ObjectiveResult(loss: loss, gradient: gradient, metrics: metrics)
    }

    // MARK: Pieces

    /// Spreads per-row gradients (of summed completion log-probabilities) over the rows' completion tokens, and adds
    /// `dTokenInFirstRows` to every target of `kinds` in the first completions' rows (the NLL terms).
    func perTokenGradient(_ batch: PreferenceBatch, dSum: [Double], dTokenInFirstRows: Double, kinds: Set<TargetKind>) -> [Float] {
        let s = batch.sequences
        var gradient = [Float](repeating: 0, count: batch.kinds.count)
        for row in 0..<s.batchSize {
            for i in row * s.length..<(row + 1) * s.length {
                var g = 0.0
                if batch.kinds[i] == .completion { g += dSum[row] }
                if row < batch.items, batch.kinds[i] != .none, kinds.contains(batch.kinds[i]) { g += dTokenInFirstRows }
                gradient[i] = Float(g)
            }
        }
        return gradient
    }

    func firstRowsSum(_ input: ObjectiveInput, kinds: Set<TargetKind>) -> (sum: Double, count: Int) {
        let s = input.batch.sequences
        var sum = 0.0, count = 0
        for i in 0..<(input.batch.items * s.length) where kinds.contains(input.batch.kinds[i]) {
            sum += Double(input.logProbabilities[i]); count += 1
        }
        return (sum, count)
    }

    func rewardMetrics(chosen: [Double], rejected: [Double]) -> [String: Double] {
        [
            "rewards/chosen": mean(chosen),
            "rewards/rejected": mean(rejected),
            "rewards/accuracies": mean(zip(chosen, rejected).map { $0 > $1 ? 1 : 0 }),
            "rewards/margins": mean(zip(chosen, rejected).map { $0 - $1 }),
        ]
    }
}

func mean(_ values: [Double]) -> Double { values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count) }

/// log σ(x) without overflow.
func logSigmoid(_ x: Double) -> Double { x < 0 ? x - log1p(exp(x)) : -log1p(exp(-x)) }

func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }

/// log(1 − eˣ) for x < 0, accurate near 0 and far from it (as torch's log1mexp in TRL).
func log1mexp(_ x: Double) -> Double { x > -0.693147 ? log(-expm1(x)) : log1p(-exp(x)) }
