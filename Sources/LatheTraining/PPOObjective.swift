import Foundation

/// A PPO rollout batch as TRL 0.29.1's PPOTrainer.train() holds it between sampling and the updates: `rows`
/// responses padded to `width` columns (row-major), what the policy, reference, value and reward models said about
/// them, and the rewards, advantages and returns computed from that.
public struct PPOBatch: Codable, Equatable, Sendable {
    public var rows: Int
    public var width: Int
    /// The responses as sampled, padded with the pad token.
    public var responses: [Int]
    /// The responses cut after their first stop token (pad after it).
    public var postprocessedResponses: [Int]
    /// Per row: the last column that counts as response (one before the first pad; −1 when the row starts with it).
    public var sequenceLengths: [Int]
    public var containsEOS: [Bool]
    /// Old and reference log-probabilities, `PPOObjective.invalidLogProbability` beyond the sequence length.
    public var logProbabilities: [Double]
    public var referenceLogProbabilities: [Double]
    /// The value model's values, 0 beyond the sequence length + 1.
    public var values: [Double]
    /// The reward model's scores, after the missing-EOS penalty.
    public var scores: [Double]
    public var kl: [Double]
    public var nonScoreRewards: [Double]
    public var rewards: [Double]
    public var advantages: [Double]
    public var returns: [Double]

    /// TRL's `~padding_mask`: the columns whose log-probability, advantage and policy loss count.
    public func isResponse(row: Int, column: Int) -> Bool { column <= sequenceLengths[row] }
    /// TRL's `~padding_mask_p1`: the columns whose value and value loss count (one further).
    public func hasValue(row: Int, column: Int) -> Bool { column <= sequenceLengths[row] + 1 }
}

/// One minibatch update's loss, its gradient with respect to the new log-probability and the new value at every
/// (minibatch row, column), and TRL's statistics of it.
public struct PPOUpdate {
    public var loss: Double
    public var logProbabilityGradient: [Float]
    public var valueGradient: [Float]
    public var statistics: PPOUpdateStatistics
}

/// What TRL's train() records per update (its `*_stats` tensors), averaged over a rollout's updates in the metrics.
public struct PPOUpdateStatistics: Codable, Equatable, Sendable {
    public var policyLoss: Double
    public var valueLoss: Double
    public var policyClipFraction: Double
    public var valueClipFraction: Double
    public var approximateKL: Double
    public var ratioMean: Double
}

/// PPO as pure functions, exactly TRL 0.29.1's trl/experimental/ppo/ppo_trainer.py `PPOTrainer.train()`: the rollout
/// processing and advantages (lines 714–723, 751–794), one minibatch's clipped losses and their gradients (lines
/// 798–876 with gradient_accumulation_steps 1), and the logged metrics (lines 878–900). TRL's quirks are kept
/// where they change a number: masked log-probabilities are 1 (INVALID_LOGPROB), so padding adds −1 per column to
/// `objective/entropy` and 0 to the ratio's and approximate KL's plain means over every column; the score goes one
/// column past the last response token (onto the EOS when the pad token is EOS, else onto the first pad) unless
/// that is past the width.
public struct PPOObjective: Equatable, Sendable {
    public var options: PPOOptions
    public var padTokenID: Int
    public var eosTokenID: Int
    /// Where a response is cut (nil: nowhere).
    public var stopTokenID: Int?

    /// TRL's INVALID_LOGPROB: the log-probability written where a response has ended.
    public static let invalidLogProbability = 1.0

    public init(options: PPOOptions, padTokenID: Int, eosTokenID: Int, stopTokenID: Int?) {
        self.options = options
        self.padTokenID = padTokenID
        self.eosTokenID = eosTokenID
        self.stopTokenID = stopTokenID
    }

    /// truncate_response: pad after the first stop token of each row.
    public func truncated(_ responses: [Int], width: Int) -> [Int] {
        guard let stopTokenID else { return responses }
        var out = responses
        for row in 0..<(width == 0 ? 0 : responses.count / width) {
            let base = row * width
            guard let stop = (0..<width).first(where: { responses[base + $0] == stopTokenID }) else { continue }
            for column in stop + 1..<width { out[base + column] = padTokenID }
        }
        return out
    }

    /// Rollout processing 1–6: the batch from the sampled responses ([rows × width]), the policy's and the
    /// reference's log-probabilities and the values at every column (garbage where a row has ended is fine), and
    /// the reward model's scores of the truncated responses.
    public func batch(responses: [Int], width: Int, logProbabilities: [Double], referenceLogProbabilities: [Double],
                      values: [Double], scores: [Double]) throws -> PPOBatch {
        let rows = scores.count
        guard width >= 1, responses.count == rows * width, logProbabilities.count == rows * width,
              referenceLogProbabilities.count == rows * width, values.count == rows * width else {
            throw TrainingError("PPO batch: \(rows) scores need \(rows) × \(width) responses, log-probabilities and values")
        }
        let postprocessed = truncated(responses, width: width)
        var b = PPOBatch(rows: rows, width: width, responses: responses, postprocessedResponses: postprocessed,
                         sequenceLengths: [], containsEOS: [], logProbabilities: logProbabilities,
                         referenceLogProbabilities: referenceLogProbabilities, values: values, scores: scores,
                         kl: [], nonScoreRewards: [], rewards: [], advantages: [], returns: [])
        for row in 0..<rows {
            let tokens = postprocessed[row * width..<(row + 1) * width]
            // first_true_indices(response == pad) − 1: the row's length when it has no pad.
            b.sequenceLengths.append((tokens.firstIndex(of: padTokenID).map { $0 - row * width } ?? width) - 1)
            b.containsEOS.append(tokens.contains(eosTokenID))
            if let penalty = options.missingEOSPenalty, !b.containsEOS[row] { b.scores[row] -= penalty }
        }
        for row in 0..<rows {
            for column in 0..<width {
                let i = row * width + column
                if !b.isResponse(row: row, column: column) {
                    b.logProbabilities[i] = Self.invalidLogProbability
                    b.referenceLogProbabilities[i] = Self.invalidLogProbability
                }
                if !b.hasValue(row: row, column: column) { b.values[i] = 0 }
            }
        }
        // Per-token rewards: −kl_coef · KL, the score added one past the last response token.
        b.kl = zip(b.logProbabilities, b.referenceLogProbabilities).map { logp, ref in
            let logr = ref - logp
            switch options.klEstimator {
            case .k1: return -logr
            case .k3: return (exp(logr) - 1) - logr
            }
        }
        b.nonScoreRewards = b.kl.map { -options.klCoef * $0 }
        b.rewards = b.nonScoreRewards
        for row in 0..<rows {
            let length = b.sequenceLengths[row]
            let end = length + 1 < width ? length + 1 : length
            b.rewards[row * width + end] += b.scores[row]
        }
        if options.whitenRewards {
            let mask = Self.mask(b, where: b.hasValue)
            b.rewards = try Self.whitened(b.rewards, mask: mask, shiftMean: false)
            for i in b.rewards.indices where !mask[i] { b.rewards[i] = 0 }
        }
        // GAE(γ, λ) from the last column back; returns are advantages + values, before whitening.
        b.advantages = Array(repeating: 0, count: rows * width)
        for row in 0..<rows {
            var lastGAE = 0.0
            for column in stride(from: width - 1, through: 0, by: -1) {
                let i = row * width + column
                let next = column < width - 1 ? b.values[i + 1] : 0
                let delta = b.rewards[i] + options.gamma * next - b.values[i]
                lastGAE = delta + options.gamma * options.lam * lastGAE
                b.advantages[i] = lastGAE
            }
        }
        b.returns = zip(b.advantages, b.values).map(+)
        let responseMask = Self.mask(b, where: b.isResponse)
        b.advantages = try Self.whitened(b.advantages, mask: responseMask, shiftMean: true)
        for i in b.advantages.indices where !responseMask[i] { b.advantages[i] = 0 }
        return b
    }

    /// One minibatch update on `rows` of the batch: the clipped surrogate plus `vf_coef` × the clipped value loss,
    /// from the policy's new log-probabilities and the value head's new values at every column of those rows
    /// ([rows.count × width], anything where a row has ended).
    public func update(_ b: PPOBatch, rows: [Int], logProbabilities newLogProbabilities: [Double],
                       values newValues: [Double]) throws -> PPOUpdate {
        let w = b.width, n = rows.count * w
        guard newLogProbabilities.count == n, newValues.count == n else {
            throw TrainingError("PPO update: \(rows.count) rows need \(rows.count) × \(w) log-probabilities and values")
        }
        var responseCount = 0, valueCount = 0
        for row in rows {
            responseCount += (0..<w).filter { b.isResponse(row: row, column: $0) }.count
            valueCount += (0..<w).filter { b.hasValue(row: row, column: $0) }.count
        }
        let low = 1 - options.cliprange, high = 1 + options.cliprange
        var policySum = 0.0, valueSum = 0.0, policyClipped = 0, valueClipped = 0, squaredDifferences = 0.0, ratioSum = 0.0
        var dLogProbability = [Float](repeating: 0, count: n), dValue = [Float](repeating: 0, count: n)
        for (k, row) in rows.enumerated() {
            for column in 0..<w {
                let i = row * w + column, j = k * w + column
                // Value loss: 0.5 · max((v − R)², (clip(v, v_old ± cliprange_value) − R)²), masked mean.
                if b.hasValue(row: row, column: column) {
                    let v = newValues[j], old = b.values[i], target = b.returns[i]
                    let lo = old - options.cliprangeValue, hi = old + options.cliprangeValue
                    let clipped = min(max(v, lo), hi)
                    let loss1 = (v - target) * (v - target), loss2 = (clipped - target) * (clipped - target)
                    valueSum += max(loss1, loss2)
                    if loss2 > loss1 { valueClipped += 1 }
                    let d1 = 2 * (v - target), d2 = (lo...hi).contains(v) ? 2 * (clipped - target) : 0
                    let dMax = Self.maximumGradient(loss1, loss2, d1, d2)
                    dValue[j] = Float(options.vfCoef * 0.5 * dMax / Double(valueCount))
                }
                // Policy loss: max(−A·ratio, −A·clip(ratio, 1 ± cliprange)), masked mean; ended columns compare
                // INVALID_LOGPROB with itself (ratio 1) and still enter the plain means.
                let isResponse = b.isResponse(row: row, column: column)
                let newLogProbability = isResponse ? newLogProbabilities[j] : Self.invalidLogProbability
                let difference = newLogProbability - b.logProbabilities[i]
                let ratio = exp(difference)
                squaredDifferences += difference * difference
                ratioSum += ratio
                guard isResponse else { continue }
                let advantage = b.advantages[i]
                let loss1 = -advantage * ratio, loss2 = -advantage * min(max(ratio, low), high)
                policySum += max(loss1, loss2)
                if loss2 > loss1 { policyClipped += 1 }
                let dMax = Self.maximumGradient(loss1, loss2, -advantage, (low...high).contains(ratio) ? -advantage : 0)
                dLogProbability[j] = Float(dMax * ratio / Double(responseCount))
            }
        }
        let policyLoss = policySum / Double(responseCount), valueLoss = 0.5 * valueSum / Double(valueCount)
        let statistics = PPOUpdateStatistics(
            policyLoss: policyLoss, valueLoss: valueLoss,
            policyClipFraction: Double(policyClipped) / Double(responseCount),
            valueClipFraction: Double(valueClipped) / Double(valueCount),
            approximateKL: 0.5 * squaredDifferences / Double(n), ratioMean: ratioSum / Double(n))
        return PPOUpdate(loss: policyLoss + options.vfCoef * valueLoss, logProbabilityGradient: dLogProbability,
                         valueGradient: dValue, statistics: statistics)
    }

    /// What TRL logs for a rollout batch after the given updates of it, with its names (`policy/entropy_avg` needs
    /// the whole distribution and is left out).
    public func metrics(_ b: PPOBatch, updates: [PPOUpdateStatistics]) -> [String: Double] {
        // TRL's x.sum(1).mean(): the row sums' mean.
        func rowSumMean(_ values: [Double]) -> Double { values.reduce(0, +) / Double(b.rows) }
        let scores = b.scores.reduce(0, +) / Double(b.rows)
        let nonScore = rowSumMean(b.nonScoreRewards)
        var m: [String: Double] = [
            "objective/kl": rowSumMean(b.kl),
            "objective/entropy": rowSumMean(b.logProbabilities.map { -$0 }),
            "objective/non_score_reward": nonScore,
            "objective/rlhf_reward": nonScore + scores,
            "objective/scores": scores,
            "val/num_eos_tokens": Double(b.responses.filter { $0 == eosTokenID }.count),
        ]
        guard !updates.isEmpty else { return m }
        func mean(_ key: KeyPath<PPOUpdateStatistics, Double>) -> Double {
            updates.map { $0[keyPath: key] }.reduce(0, +) / Double(updates.count)
        }
        m["policy/approxkl_avg"] = mean(\.approximateKL)
        m["policy/clipfrac_avg"] = mean(\.policyClipFraction)
        m["loss/policy_avg"] = mean(\.policyLoss)
        m["loss/value_avg"] = mean(\.valueLoss)
        m["val/clipfrac_avg"] = mean(\.valueClipFraction)
        let ratio = mean(\.ratioMean)
        m["val/ratio"] = ratio
        // torch's .var(): unbiased, undefined for one update.
        if updates.count > 1 {
            m["val/ratio_var"] = updates.map { ($0.ratioMean - ratio) * ($0.ratioMean - ratio) }.reduce(0, +)
                / Double(updates.count - 1)
        }
        return m
    }

    /// torch.maximum's backward: the larger side's gradient, half of each on a tie.
    static func maximumGradient(_ a: Double, _ b: Double, _ da: Double, _ db: Double) -> Double {
        a > b ? da : (b > a ? db : 0.5 * (da + db))
    }

    static func mask(_ b: PPOBatch, where counts: (Int, Int) -> Bool) -> [Bool] {
        (0..<b.rows * b.width).map { counts($0 / b.width, $0 % b.width) }
    }

    /// masked_whiten: (x − mean) / sqrt(var + 1e-8) over the masked entries, var with Bessel's correction; the mean
    /// added back when `shiftMean` is false.
    static func whitened(_ values: [Double], mask: [Bool], shiftMean: Bool) throws -> [Double] {
        let count = Double(mask.filter { $0 }.count)
        guard count > 0 else {
            throw TrainingError("PPO: nothing to whiten (every response is empty); use a larger batch_size")
        }
        let mean = zip(values, mask).reduce(0) { $0 + ($1.1 ? $1.0 : 0) } / count
        let variance = zip(values, mask).reduce(0) { $0 + ($1.1 ? ($1.0 - mean) * ($1.0 - mean) : 0) } / count
            * count / (count - 1)
        let scale = 1 / (variance + 1e-8).squareRoot()
        return values.map { ($0 - mean) * scale + (shiftMean ? 0 : mean) }
    }
}
