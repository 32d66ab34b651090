import Foundation
import LatheModels

/// Which optimizer to train with and its hyper-parameters, as written in a trainer's YAML or JSON configuration.
///
/// Keys are the property names (`kind`, `weightDecay`, `beta1`, `beta2`, `epsilon`, `amsgrad`, `momentum`,
/// `dampening`, `nesterov`). Absent hyper-parameters take torch's defaults for the kind (AdamW: betas 0.9 and 0.999,
/// epsilon 1e-8, weightDecay 0.01, no amsgrad; SGD: momentum 0, dampening 0, no Nesterov, weightDecay 0).
/// `adamw8bit` (bitsandbytes' AdamW8bit) takes AdamW's keys and defaults; like bitsandbytes it has no amsgrad, so
/// `amsgrad: true` is an error (`false` is accepted). A field of another kind (e.g. `momentum` for AdamW), an
/// unknown key or an invalid value is an error naming the field.
/// The learning rate is not here: it comes from the `LearningRateSchedule` at every step.
public struct OptimizerConfiguration: Codable, Equatable, Sendable {
    public var kind: OptimizerKind
    public var weightDecay: Double?
    public var beta1: Double?
    public var beta2: Double?
    public var epsilon: Double?
    public var amsgrad: Bool?
    public var momentum: Double?
    public var dampening: Double?
    public var nesterov: Bool?

    public init(kind: OptimizerKind, weightDecay: Double? = nil, beta1: Double? = nil, beta2: Double? = nil,
                epsilon: Double? = nil, amsgrad: Bool? = nil, momentum: Double? = nil, dampening: Double? = nil,
                nesterov: Bool? = nil) {
        self.kind = kind
        self.weightDecay = weightDecay
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.amsgrad = amsgrad
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, weightDecay, beta1, beta2, epsilon, amsgrad, momentum, dampening, nesterov
    }

    /// Also reads the shorthand `optimizer: adamw8bit`: a bare kind, with that kind's defaults.
    public init(from decoder: Decoder) throws {
        if let single = try? decoder.singleValueContainer(), let name = try? single.decode(String.self) {
            guard let kind = OptimizerKind(rawValue: name) else {
                throw DecodingError.dataCorruptedError(in: single, debugDescription:
                    "unknown optimizer \"\(name)\" (known: \(OptimizerKind.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            self.init(kind: kind)
            return
        }
        try rejectUnknownKeys(in: decoder, known: CodingKeys.allCases.map(\.stringValue))
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(kind: try container.decode(OptimizerKind.self, forKey: .kind),
                  weightDecay: try container.decodeIfPresent(Double.self, forKey: .weightDecay),
                  beta1: try container.decodeIfPresent(Double.self, forKey: .beta1),
                  beta2: try container.decodeIfPresent(Double.self, forKey: .beta2),
                  epsilon: try container.decodeIfPresent(Double.self, forKey: .epsilon),
                  amsgrad: try container.decodeIfPresent(Bool.self, forKey: .amsgrad),
                  momentum: try container.decodeIfPresent(Double.self, forKey: .momentum),
                  dampening: try container.decodeIfPresent(Double.self, forKey: .dampening),
                  nesterov: try container.decodeIfPresent(Bool.self, forKey: .nesterov))
        do { _ = try make() } catch let error as OptimizerError { throw error.decodingError(in: decoder) }
    }

    /// A fresh optimizer with these hyper-parameters; throws `OptimizerError` naming the field that is invalid or
    /// belongs to the other kind.
    public func make() throws -> any Optimizer {
        let sgdFields = [("momentum", momentum != nil), ("dampening", dampening != nil), ("nesterov", nesterov != nil)]
        let adamFields = [("beta1", beta1 != nil), ("beta2", beta2 != nil), ("epsilon", epsilon != nil), ("amsgrad", amsgrad != nil)]
        switch kind {
        case .adamw:
            try rejectFields(sgdFields, of: "sgd")
            return try AdamW(beta1: beta1 ?? 0.9, beta2: beta2 ?? 0.999, epsilon: epsilon ?? 1e-8,
                             weightDecay: weightDecay ?? 0.01, amsgrad: amsgrad ?? false)
        case .adamw8bit:
            try rejectFields(sgdFields, of: "sgd")
            if amsgrad == true {
                throw OptimizerError(subject: "amsgrad", problem: "adamw8bit has no amsgrad variant (nor has bitsandbytes' AdamW8bit)",
                                     fix: "remove amsgrad, or use kind adamw")
            }
            return try AdamW8bit(beta1: beta1 ?? 0.9, beta2: beta2 ?? 0.999, epsilon: epsilon ?? 1e-8,
                                 weightDecay: weightDecay ?? 0.01)
        case .sgd:
            try rejectFields(adamFields, of: "adamw and adamw8bit")
            return try SGD(momentum: momentum ?? 0, dampening: dampening ?? 0, nesterov: nesterov ?? false,
                           weightDecay: weightDecay ?? 0)
        }
    }

    /// Throws, naming the first field given, when any of `fields` (name, given) is set: they belong to `owners`.
    private func rejectFields(_ fields: [(String, Bool)], of owners: String) throws {
        if let field = fields.first(where: { $0.1 })?.0 {
            throw OptimizerError(subject: field, problem: "applies to \(owners) only, but kind is \(kind.rawValue)")
        }
    }
}
