import Foundation
import LatheModels
import LatheTensors

/// Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and weight decay, computing
/// what `torch.optim.SGD` computes (its single-tensor path):
///
///     g ← g + λ·p                                   weight decay, added to the gradient
///     b ← g on the first step, else b·μ + (1 − τ)·g  momentum buffer (μ ≠ 0 only)
///     g ← g + μ·b with Nesterov, else g ← b
///     p ← p − lr·g
public final class SGD: Optimizer {
    public let momentum: Double
    public let dampening: Double
    public let nesterov: Bool
    public let weightDecay: Double
    public private(set) var stepCount = 0

    private var momentumBuffers: [String: Tensor] = [:]

    /// Defaults are torch's SGD defaults. Throws, naming the field, on negative values or Nesterov without
    /// momentum or with dampening (torch's rule).
    public init(momentum: Double = 0, dampening: Double = 0, nesterov: Bool = false, weightDecay: Double = 0) throws {
        for (field, value) in [("momentum", momentum), ("dampening", dampening), ("weightDecay", weightDecay)]
            where !(value >= 0 && value.isFinite) {
            throw OptimizerError(subject: field, problem: "must be finite and non-negative, got \(value)")
        }
        if nesterov, momentum <= 0 || dampening != 0 {
            throw OptimizerError(subject: "nesterov", problem: "Nesterov momentum needs momentum > 0 and dampening 0")
        }
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.weightDecay = weightDecay
    }

    public var configuration: OptimizerConfiguration {
        OptimizerConfiguration(kind: .sgd, weightDecay: weightDecay, momentum: momentum, dampening: dampening,
                               nesterov: nesterov)
    }

    public func step(_ parameters: [Parameter], learningRate: Float) throws {
        let updates = try parametersToUpdate(parameters, learningRate: learningRate)
        for (parameter, _) in updates where momentum != 0 {
            if let buffer = momentumBuffers[parameter.name] {
                _ = try stateTensor(buffer, for: parameter, role: "momentum_buffer")
            }
        }
        let coefficients = SGDCoefficients(learningRate: Double(learningRate), momentum: momentum,
                                           dampening: dampening, nesterov: nesterov, weightDecay: weightDecay)
        for (parameter, gradient) in updates {
            var buffer: Tensor?
            var firstStep = false
            if momentum != 0 {
                firstStep = momentumBuffers[parameter.name] == nil
                let kept = momentumBuffers[parameter.name] ?? Tensor(zeros: parameter.shape)
                momentumBuffers[parameter.name] = kept
                buffer = kept
            }
            SGDKernel.update(parameter: parameter.tensor.pointer, gradient: gradient.pointer,
                             momentumBuffer: buffer?.pointer, firstStep: firstStep, count: parameter.tensor.count,
                             coefficients: coefficients)
        }
        stepCount += 1
    }

    private var hyperparameters: [String: String] {
        ["momentum": stateString(momentum), "dampening": stateString(dampening), "nesterov": String(nesterov),
         "weight_decay": stateString(weightDecay)]
    }

    public func saveState(to url: URL) throws {
        var archive = OptimizerStateArchive(kind: .sgd, hyperparameters: hyperparameters, stepCount: stepCount)
        for (name, buffer) in momentumBuffers { try archive.add(buffer, parameter: name, role: "momentum_buffer") }
        try archive.write(to: url)
    }

    public func loadState(from url: URL, parameters: [Parameter]) throws {
        let contents = try OptimizerStateArchive.read(from: url, kind: .sgd, hyperparameters: hyperparameters,
                                                      roles: momentum != 0 ? ["momentum_buffer"] : [],
                                                      parameters: parameters)
        momentumBuffers = contents.tensors.compactMapValues { $0["momentum_buffer"] }
        stepCount = contents.stepCount
    }
}

/// The per-step scalars of an SGD update, rounded to Float where torch rounds them.
struct SGDCoefficients {
    let negativeLearningRate: Float
    let momentum: Float
    let oneMinusDampening: Float
    let nesterov: Bool
    let weightDecay: Float

    init(learningRate: Double, momentum: Double, dampening: Double, nesterov: Bool, weightDecay: Double) {
        negativeLearningRate = Float(-learningRate)
        self.momentum = Float(momentum)
        oneMinusDampening = Float(1 - dampening)
        self.nesterov = nesterov
        self.weightDecay = Float(weightDecay)
    }
}

/// The SGD element update: SIMD16 for training and a plain scalar reference; a test holds them together bit for
/// bit. torch's `add(x, alpha: a)` is a fused multiply-add, so both use `addingProduct`.
enum SGDKernel {
    private typealias Vector = OptimizerVector

    /// `momentumBuffer` is nil without momentum; `firstStep` copies the (decayed) gradient into it as torch does.
    /// A large tensor's vectors are shared among the compute threads (`forEachVectorPiece`).
    static func update(parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
                       momentumBuffer: UnsafeMutablePointer<Float>?, firstStep: Bool, count: Int,
                       coefficients c: SGDCoefficients) {
        forEachVectorPiece(count: count, floatsPerElement: momentumBuffer == nil ? 3 : 5) { start, count in
            updateVectors(parameter: parameter + start, gradient: gradient + start,
                          momentumBuffer: momentumBuffer.map { $0 + start }, firstStep: firstStep, count: count, coefficients: c)
        }
    }

    /// `update` on one thread.
    private static func updateVectors(parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
                                      momentumBuffer: UnsafeMutablePointer<Float>?, firstStep: Bool, count: Int,
                                      coefficients c: SGDCoefficients) {
        var index = 0
        while index < count {
            let lanes = min(Vector.scalarCount, count - index)
            var p = loadLanes(parameter + index, lanes)
            var g = loadLanes(gradient + index, lanes)
            if c.weightDecay != 0 { g = g.addingProduct(p, c.weightDecay) }
            if let momentumBuffer {
                var buffer = g
                if !firstStep {
                    buffer = loadLanes(momentumBuffer + index, lanes) * c.momentum
                    buffer = buffer.addingProduct(g, c.oneMinusDampening)
                }
                storeLanes(buffer, momentumBuffer + index, lanes)
                g = c.nesterov ? g.addingProduct(buffer, c.momentum) : buffer
            }
            p = p.addingProduct(g, c.negativeLearningRate)
            storeLanes(p, parameter + index, lanes)
            index += lanes
        }
    }

    /// The same update one element at a time, written as plainly as possible.
    static func referenceUpdate(parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
                                momentumBuffer: UnsafeMutablePointer<Float>?, firstStep: Bool, count: Int,
                                coefficients c: SGDCoefficients) {
        for i in 0..<count {
            var g = gradient[i]
            if c.weightDecay != 0 { g = g.addingProduct(parameter[i], c.weightDecay) }
            if let momentumBuffer {
                if firstStep {
                    momentumBuffer[i] = g
                } else {
                    momentumBuffer[i] = momentumBuffer[i] * c.momentum
                    momentumBuffer[i] = momentumBuffer[i].addingProduct(g, c.oneMinusDampening)
                }
                g = c.nesterov ? g.addingProduct(momentumBuffer[i], c.momentum) : momentumBuffer[i]
            }
            parameter[i] = parameter[i].addingProduct(g, c.negativeLearningRate)
        }
    }
}
