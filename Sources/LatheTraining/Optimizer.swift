import Foundation
import LatheModels
import LatheTensors

/// Updates trainable parameters from their gradients, one training step at a time, and checkpoints its own state.
///
/// Optimizers are classes (`AnyObject`): they hold per-parameter state (moments, momentum buffers) keyed by
/// parameter name that lives across steps, and the trainer keeps one instance for the whole run. A training step
/// is: zero gradients → forward/backward (adds into gradients) → optional `clipGradientNorm` →
/// `step(parameters, learningRate: schedule.rate(at: step))`.
public protocol Optimizer: AnyObject {
    /// The configuration that builds an identical fresh optimizer (written beside checkpoints).
    var configuration: OptimizerConfiguration { get }

    /// How many times `step` has run (restored by `loadState`).
    var stepCount: Int { get }

    /// Updates every trainable parameter that has a gradient; non-trainable parameters are left untouched.
    /// Throws on a negative or non-finite rate, a parameter name given twice, or state whose shape no longer
    /// matches its parameter.
    func step(_ parameters: [Parameter], learningRate: Float) throws

    /// Writes the whole state (per-parameter tensors, step counts, hyper-parameters) to one safetensors file,
    /// atomically.
    func saveState(to url: URL) throws

    /// Replaces the state with the one saved in `url`. The file must come from the same kind of optimizer with the
    /// same hyper-parameters, and hold state for exactly the trainable parameters given, with their shapes.
    func loadState(from url: URL, parameters: [Parameter]) throws
}

/// The optimizers Lathe implements; the raw value is the name used in configurations and state files.
public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
    case adamw
    /// AdamW with both moments stored blockwise in 8 bits, as bitsandbytes' `AdamW8bit`.
    case adamw8bit
    case sgd
}

/// A problem with an optimizer, its configuration, a learning-rate schedule or a saved optimizer state.
/// `subject` names the field, parameter, state key or file concerned.
public struct OptimizerError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let subject: String
    public let problem: String
    public let fix: String?

    public init(subject: String, problem: String, fix: String? = nil) {
        self.subject = subject
        self.problem = problem
        self.fix = fix
    }

    public var description: String {
        "\(subject): \(problem)" + (fix.map { " (\($0))" } ?? "")
    }

    public var errorDescription: String? { description }
}

/// Checks shared by every optimizer's `step` (a usable learning rate, unique parameter names) and the parameters
/// it updates: trainable ones that have a gradient.
func parametersToUpdate(_ parameters: [Parameter], learningRate: Float) throws -> [(parameter: Parameter, gradient: Tensor)] {
    guard learningRate.isFinite, learningRate >= 0 else {
        throw OptimizerError(subject: "learningRate", problem: "must be finite and non-negative, got \(learningRate)")
    }
    var seen = Set<String>()
    var result: [(parameter: Parameter, gradient: Tensor)] = []
    for parameter in parameters {
        guard seen.insert(parameter.name).inserted else {
            throw OptimizerError(subject: parameter.name, problem: "parameter given twice to the optimizer",
                                 fix: "optimizer state is keyed by parameter name; names must be unique")
        }
        if parameter.trainable, let gradient = parameter.gradient {
            result.append((parameter, gradient))
        }
    }
    return result
}

/// The state tensor kept for `parameter`, created zeroed on first use; throws if a kept one has another shape.
func stateTensor(_ existing: Tensor?, for parameter: Parameter, role: String) throws -> Tensor {
    guard let existing else { return Tensor(zeros: parameter.shape) }
    guard existing.shape == parameter.shape else {
        throw OptimizerError(subject: "\(parameter.name).\(role)",
                             problem: "optimizer state has shape \(existing.shape) but the parameter has shape \(parameter.shape)",
                             fix: "a parameter's shape cannot change during training; start a fresh optimizer")
    }
    return existing
}
