import LatheTensors

/// A mean with its bootstrap confidence interval.
public struct ConfidenceInterval: Sendable, Equatable, Codable {
    public let estimate: Double
    public let lower: Double
    public let upper: Double
    /// The coverage asked for, e.g. 0.95.
    public let level: Double
}

/// Percentile-bootstrap confidence intervals for means of per-example scores, seeded so that a run repeats.
public struct Bootstrap: Sendable {
    public var resamples: Int
    public var level: Double
    public var seed: UInt64

    public init(resamples: Int = 1000, level: Double = 0.95, seed: UInt64 = 0) {
        self.resamples = resamples; self.level = level; self.seed = seed
    }

    /// The interval of the mean of `scores`: resample the examples with replacement `resamples` times and take the
    /// (1 ± level)/2 percentiles of the resampled means (linear interpolation between order statistics).
    public func mean(_ scores: [Double]) -> ConfidenceInterval {
        interval(estimate: Self.average(scores), count: scores.count) { indices in
            indices.reduce(0.0) { $0 + scores[$1] } / Double(indices.count)
        }
    }

    /// The interval of mean(a) − mean(b) for two systems scored on the same examples: both are resampled with the
    /// same indices, so the pairing is kept.
    public func pairedDifference(_ a: [Double], _ b: [Double]) throws -> ConfidenceInterval {
        guard a.count == b.count else {
            throw EvalError.invalidInput("paired scores must have one score per example on both sides, got \(a.count) and \(b.count)")
        }
        let differences = zip(a, b).map { $0 - $1 }
        return mean(differences)
    }

    /// The interval of any statistic of `count` examples that is not a plain mean — corpus BLEU of the resampled
    /// segments, or its difference between two systems — computed from the example indices of each resample
    /// (with repeats).
    public func interval(estimate: Double, count: Int, statistic: ([Int]) -> Double) -> ConfidenceInterval {
        guard count > 0, resamples > 0 else { return ConfidenceInterval(estimate: estimate, lower: estimate, upper: estimate, level: level) }
        var random = SeededGenerator(seed: seed)
        var indices = [Int](repeating: 0, count: count)
        var statistics: [Double] = []
        statistics.reserveCapacity(resamples)
        for _ in 0..<resamples {
            // A uniform index from the high word of a 64×64-bit product (no modulo bias worth mentioning).
            for i in 0..<count { indices[i] = Int(UInt64(count).multipliedFullWidth(by: random.next()).high) }
            statistics.append(statistic(indices))
        }
        statistics.sort()
        return ConfidenceInterval(estimate: estimate, lower: Self.percentile(statistics, (1 - level) / 2),
                                  upper: Self.percentile(statistics, (1 + level) / 2), level: level)
    }

    /// numpy's default (linear) percentile of sorted values, q in [0, 1].
    static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        let position = q * Double(sorted.count - 1)
        let below = Int(position.rounded(.down)), above = min(below + 1, sorted.count - 1)
        return sorted[below] + (sorted[above] - sorted[below]) * (position - Double(below))
    }

    static func average(_ values: [Double]) -> Double { values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count) }
}
