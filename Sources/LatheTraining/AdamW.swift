import Foundation
import LatheModels
import LatheTensors

/// Adam with decoupled weight decay, computing what `torch.optim.AdamW` computes (its single-tensor path).
///
/// Per parameter, at its step t (counted per parameter, as torch does; a parameter without gradient is skipped and
/// does not count the step):
///
///     p ← p·(1 − lr·λ)                      decoupled weight decay, before the Adam update
///     m ← lerp(m, g, 1 − β₁)                v ← v·β₂ + (1 − β₂)·g·g      (v̂ ← max(v̂, v) with amsgrad)
///     p ← p − (lr / (1 − β₁ᵗ))·m / (√v / √(1 − β₂ᵗ) + ε)
///
/// Scalars (bias corrections, step size, 1 − lr·λ) are computed in Double and rounded to Float where torch rounds
/// them; element arithmetic is Float in torch's order, with ε added outside the square root.
public final class AdamW: Optimizer {
    public let beta1: Double
    public let beta2: Double
    public let epsilon: Double
    public let weightDecay: Double
    public let amsgrad: Bool
    public private(set) var stepCount = 0

    private final class State {
        let expAvg: Tensor
        let expAvgSq: Tensor
        let maxExpAvgSq: Tensor?
        var step: Int

        init(expAvg: Tensor, expAvgSq: Tensor, maxExpAvgSq: Tensor?, step: Int) {
            self.expAvg = expAvg
            self.expAvgSq = expAvgSq
            self.maxExpAvgSq = maxExpAvgSq
            self.step = step
        }
    }

    private var states: [String: State] = [:]

    /// Defaults are torch's AdamW defaults. Throws, naming the field, on β outside [0, 1), negative ε or decay.
    public init(beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8, weightDecay: Double = 0.01,
                amsgrad: Bool = false) throws {
        try AdamW.validate(beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.amsgrad = amsgrad
    }

    /// Checks Adam's settings, naming the field: β in [0, 1), finite non-negative ε and decay.
    static func validate(beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double) throws {
        for (field, beta) in [("beta1", beta1), ("beta2", beta2)] where !(beta >= 0 && beta < 1) {
            throw OptimizerError(subject: field, problem: "must be in [0, 1), got \(beta)")
        }
        guard epsilon >= 0, epsilon.isFinite else {
            throw OptimizerError(subject: "epsilon", problem: "must be finite and non-negative, got \(epsilon)")
        }
        guard weightDecay >= 0, weightDecay.isFinite else {
            throw OptimizerError(subject: "weightDecay", problem: "must be finite and non-negative, got \(weightDecay)")
        }
    }

    public var configuration: OptimizerConfiguration {
        OptimizerConfiguration(kind: .adamw, weightDecay: weightDecay, beta1: beta1, beta2: beta2, epsilon: epsilon,
                               amsgrad: amsgrad)
    }

    public func step(_ parameters: [Parameter], learningRate: Float) throws {
        let updates = try parametersToUpdate(parameters, learningRate: learningRate)
        // Resolve every state before touching any parameter, so that a shape error leaves all of them unchanged.
        var prepared: [(parameter: Parameter, gradient: Tensor, state: State)] = []
        for (parameter, gradient) in updates {
            let existing = states[parameter.name]
            let state = State(
                expAvg: try stateTensor(existing?.expAvg, for: parameter, role: "exp_avg"),
                expAvgSq: try stateTensor(existing?.expAvgSq, for: parameter, role: "exp_avg_sq"),
                maxExpAvgSq: amsgrad ? try stateTensor(existing?.maxExpAvgSq, for: parameter, role: "max_exp_avg_sq") : nil,
                step: existing?.step ?? 0)
            prepared.append((parameter, gradient, state))
        }
        let rate = Double(learningRate)
        for (parameter, gradient, state) in prepared {
            state.step += 1
            states[parameter.name] = state
            let coefficients = AdamWCoefficients(learningRate: rate, beta1: beta1, beta2: beta2, epsilon: epsilon,
                                                 weightDecay: weightDecay, step: state.step)
            AdamWKernel.update(parameter: parameter.tensor.pointer, gradient: gradient.pointer,
                               expAvg: state.expAvg.pointer, expAvgSq: state.expAvgSq.pointer,
                               maxExpAvgSq: state.maxExpAvgSq?.pointer, count: parameter.tensor.count,
                               coefficients: coefficients)
        }
        stepCount += 1
    }

    private var hyperparameters: [String: String] {
        ["beta1": stateString(beta1), "beta2": stateString(beta2), "epsilon": stateString(epsilon),
         "weight_decay": stateString(weightDecay), "amsgrad": String(amsgrad)]
    }

    private var roles: [String] { amsgrad ? ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"] : ["exp_avg", "exp_avg_sq"] }

    public func saveState(to url: URL) throws {
        var archive = OptimizerStateArchive(kind: .adamw, hyperparameters: hyperparameters, stepCount: stepCount)
        for (name, state) in states {
            try archive.add(state.expAvg, parameter: name, role: "exp_avg")
            try archive.add(state.expAvgSq, parameter: name, role: "exp_avg_sq")
            if let maxExpAvgSq = state.maxExpAvgSq { try archive.add(maxExpAvgSq, parameter: name, role: "max_exp_avg_sq") }
            archive.setMetadata(String(state.step), forKey: "\(name).step")
        }
        try archive.write(to: url)
    }

    public func loadState(from url: URL, parameters: [Parameter]) throws {
        let contents = try OptimizerStateArchive.read(from: url, kind: .adamw, hyperparameters: hyperparameters,
                                                      roles: roles, parameters: parameters)
        var loaded: [String: State] = [:]
        for (name, tensors) in contents.tensors {
            guard let expAvg = tensors["exp_avg"], let expAvgSq = tensors["exp_avg_sq"] else {
                throw OptimizerError(subject: "\(url.path): \(name).exp_avg", problem: "exp_avg and exp_avg_sq must both be present")
            }
            let maxExpAvgSq = tensors["max_exp_avg_sq"]
            if amsgrad, maxExpAvgSq == nil {
                throw OptimizerError(subject: "\(url.path): \(name).max_exp_avg_sq", problem: "missing (amsgrad is on)")
            }
            loaded[name] = State(expAvg: expAvg, expAvgSq: expAvgSq, maxExpAvgSq: maxExpAvgSq,
                                 step: try contents.integer("\(name).step", in: url))
        }
        states = loaded
        stepCount = contents.stepCount
    }
}

/// The per-step scalars of one parameter's AdamW update, rounded to Float where torch rounds them.
struct AdamWCoefficients {
    /// 1 − lr·λ (torch: `param.mul_(1 - lr * weight_decay)`; 1 exactly without decay).
    let decay: Float
    /// The lerp weight 1 − β₁, and torch's lerp coefficient and base choice for it.
    let oneMinusBeta1: Float
    let beta2: Float
    let oneMinusBeta2: Float
    let biasCorrection2Root: Float
    let epsilon: Float
    /// −lr / (1 − β₁ᵗ).
    let negativeStepSize: Float

    init(learningRate: Double, beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double, step: Int) {
        decay = weightDecay == 0 ? 1 : Float(1 - learningRate * weightDecay)
        oneMinusBeta1 = Float(1 - beta1)
        self.beta2 = Float(beta2)
        oneMinusBeta2 = Float(1 - beta2)
        let biasCorrection1 = 1 - pow(beta1, Double(step))
        let biasCorrection2 = 1 - pow(beta2, Double(step))
        biasCorrection2Root = Float(biasCorrection2.squareRoot())
        self.epsilon = Float(epsilon)
        negativeStepSize = Float(-(learningRate / biasCorrection1))
    }
}

/// The AdamW element update: a SIMD16 version for training and a plain scalar one that states the arithmetic;
/// a test holds the two together bit for bit.
enum AdamWKernel {
    private typealias Vector = OptimizerVector

    /// Updates `count` elements in place, a large tensor's vectors shared among the compute threads
    /// (`forEachVectorPiece`).
    static func update(parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
                       expAvg: UnsafeMutablePointer<Float>, expAvgSq: UnsafeMutablePointer<Float>,
                       maxExpAvgSq: UnsafeMutablePointer<Float>?, count: Int, coefficients c: AdamWCoefficients) {
        forEachVectorPiece(count: count, floatsPerElement: maxExpAvgSq == nil ? 7 : 9) { start, count in
            updateVectors(parameter: parameter + start, gradient: gradient + start, expAvg: expAvg + start,
                          expAvgSq: expAvgSq + start, maxExpAvgSq: maxExpAvgSq.map { $0 + start }, count: count,
                          coefficients: c)
        }
    }

    /// `update` on one thread. The last partial vector goes through the same vector code on zero-padded copies,
    /// so every element sees identical arithmetic.
    private static func updateVectors(parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
                                      expAvg: UnsafeMutablePointer<Float>, expAvgSq: UnsafeMutablePointer<Float>,
                                      maxExpAvgSq: UnsafeMutablePointer<Float>?, count: Int, coefficients c: AdamWCoefficients) {
        var index = 0
        while index < count {
            let lanes = min(Vector.scalarCount, count - index)
            var p = loadLanes(parameter + index, lanes)
            let g = loadLanes(gradient + index, lanes)
            var m = loadLanes(expAvg + index, lanes)
            var v = loadLanes(expAvgSq + index, lanes)
            var vMax = maxExpAvgSq.map { loadLanes($0 + index, lanes) }
            lanesUpdate(&p, g, &m, &v, &vMax, c)
            storeLanes(p, parameter + index, lanes)
            storeLanes(m, expAvg + index, lanes)
            storeLanes(v, expAvgSq + index, lanes)
            if let vMax, let maxExpAvgSq { storeLanes(vMax, maxExpAvgSq + index, lanes) }
            index += lanes
        }
    }

    @inline(__always)
    private static func lanesUpdate(_ p: inout Vector, _ g: Vector, _ m: inout Vector, _ v: inout Vector,
                                    _ vMax: inout Vector?, _ c: AdamWCoefficients) {
        p = p * c.decay
        // torch's vectorised lerp: fma(w, end − start, start) for w < 0.5, else fma(w − 1, end − start, end).
        let difference = g - m
        m = c.oneMinusBeta1 < 0.5 ? m.addingProduct(difference, c.oneMinusBeta1)
                                  : g.addingProduct(difference, c.oneMinusBeta1 - 1)
        v = v * c.beta2
        v = v + (c.oneMinusBeta2 * g) * g
        var second = v
        if let previousMax = vMax {
            second = previousMax.replacing(with: v, where: v .> previousMax)
            vMax = second
        }
        let denominator = second.squareRoot() / c.biasCorrection2Root + c.epsilon
        p = p + (c.negativeStepSize * m) / denominator
    }

    /// The same update one element at a time, written as plainly as possible.
    static func referenceUpdate(parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
                                expAvg: UnsafeMutablePointer<Float>, expAvgSq: UnsafeMutablePointer<Float>,
                                maxExpAvgSq: UnsafeMutablePointer<Float>?, count: Int, coefficients c: AdamWCoefficients) {
        for i in 0..<count {
            let g = gradient[i]
            parameter[i] = parameter[i] * c.decay
            let difference = g - expAvg[i]
            expAvg[i] = c.oneMinusBeta1 < 0.5 ? expAvg[i].addingProduct(difference, c.oneMinusBeta1)
                                              : g.addingProduct(difference, c.oneMinusBeta1 - 1)
            expAvgSq[i] = expAvgSq[i] * c.beta2
            expAvgSq[i] = expAvgSq[i] + (c.oneMinusBeta2 * g) * g
            var second = expAvgSq[i]
            if let maxExpAvgSq {
                if second > maxExpAvgSq[i] { maxExpAvgSq[i] = second }
                second = maxExpAvgSq[i]
            }
            let denominator = second.squareRoot() / c.biasCorrection2Root + c.epsilon
            parameter[i] = parameter[i] + (c.negativeStepSize * expAvg[i]) / denominator
        }
    }
}
