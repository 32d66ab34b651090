import Foundation
import LatheModels

/// The learning rate at each optimizer step: linear warmup from 0 to `peakRate` over `warmupSteps`, then constant,
/// linear decay to 0 at `totalSteps`, or half-cosine decay to 0 (or to `minimumRate`) at `totalSteps`.
///
/// Equal to transformers' `get_constant_schedule_with_warmup`, `get_linear_schedule_with_warmup` and
/// `get_cosine_schedule_with_warmup` (num_cycles 0.5) times the peak rate, evaluated in Double as Python does; with
/// `minimumRate` the cosine one is `get_cosine_with_min_lr_schedule_with_warmup(min_lr:)`. Step 0 is the first
/// optimizer step (rate 0 during warmup, as in transformers). Past `totalSteps` the formulas continue as
/// transformers' do (linear stays at 0; cosine rises again), so a trainer should stop at `totalSteps`.
///
/// Codable with the property names as keys (`kind`, `peakRate`, `warmupSteps`, `totalSteps`, `minimumRate`);
/// decoding rejects unknown keys and invalid values with an error naming the field.
public struct LearningRateSchedule: Codable, Equatable, Sendable {
    /// The shape of the decay after warmup.
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case constant, linear, cosine
    }

    public let kind: Kind
    public let peakRate: Double
    public let warmupSteps: Int
    public let totalSteps: Int
    /// The rate the cosine schedule decays to (0 when nil); only allowed with `.cosine`.
    public let minimumRate: Double?

    /// Throws `OptimizerError` naming the field on a non-positive total, warmup outside 0...total, a negative or
    /// non-finite peak, or a minimum rate outside 0...peak or with a kind other than cosine.
    public init(kind: Kind, peakRate: Double, warmupSteps: Int, totalSteps: Int, minimumRate: Double? = nil) throws {
        self.kind = kind
        self.peakRate = peakRate
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.minimumRate = minimumRate
        try validate()
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, peakRate, warmupSteps, totalSteps, minimumRate
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, known: CodingKeys.allCases.map(\.stringValue))
        let container = try decoder.container(keyedBy: CodingKeys.self)
        kind = try container.decode(Kind.self, forKey: .kind)
        peakRate = try container.decode(Double.self, forKey: .peakRate)
        warmupSteps = try container.decode(Int.self, forKey: .warmupSteps)
        totalSteps = try container.decode(Int.self, forKey: .totalSteps)
        minimumRate = try container.decodeIfPresent(Double.self, forKey: .minimumRate)
        do { try validate() } catch let error as OptimizerError { throw error.decodingError(in: decoder) }
    }

    private func validate() throws {
        guard totalSteps > 0 else {
            throw OptimizerError(subject: "totalSteps", problem: "must be positive, got \(totalSteps)")
        }
        guard warmupSteps >= 0, warmupSteps <= totalSteps else {
            throw OptimizerError(subject: "warmupSteps", problem: "must be in 0...totalSteps (\(totalSteps)), got \(warmupSteps)")
        }
        guard peakRate.isFinite, peakRate >= 0 else {
            throw OptimizerError(subject: "peakRate", problem: "must be finite and non-negative, got \(peakRate)")
        }
        if let minimumRate {
            guard kind == .cosine else {
                throw OptimizerError(subject: "minimumRate", problem: "applies to the cosine schedule only, not \(kind.rawValue)")
            }
            guard minimumRate >= 0, minimumRate <= peakRate else {
                throw OptimizerError(subject: "minimumRate", problem: "must be in 0...peakRate (\(peakRate)), got \(minimumRate)")
            }
        }
    }

    /// The rate for optimizer step `step` (0-based; negative steps count as 0).
    public func rate(at step: Int) -> Float {
        Float(peakRate * factor(at: max(step, 0)))
    }

    /// transformers' lr_lambda: the multiple of the peak rate.
    private func factor(at step: Int) -> Double {
        if step < warmupSteps { return Double(step) / Double(max(1, warmupSteps)) }
        switch kind {
        case .constant:
            return 1
        case .linear:
            return max(0, Double(totalSteps - step) / Double(max(1, totalSteps - warmupSteps)))
        case .cosine:
            let progress = Double(step - warmupSteps) / Double(max(1, totalSteps - warmupSteps))
            let cycles = 0.5
            var factor = 0.5 * (1 + cos(Double.pi * cycles * 2 * progress))
            let minimumFraction = minimumRate.map { peakRate > 0 ? $0 / peakRate : 0 } ?? 0
            factor = factor * (1 - minimumFraction) + minimumFraction
            return max(0, factor)
        }
    }
}

extension OptimizerError {
    /// This validation error as a decoding error at its field, so that a YAML or JSON loader reports the full path.
    func decodingError(in decoder: Decoder) -> DecodingError {
        .dataCorrupted(DecodingError.Context(codingPath: decoder.codingPath + [ConfigurationKey(stringValue: subject)],
                                             debugDescription: description, underlyingError: self))
    }
}
