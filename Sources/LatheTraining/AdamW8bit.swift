import Foundation
import LatheModels
import LatheTensors

/// AdamW with both moments stored in 8 bits, computing what bitsandbytes 0.50.2's `AdamW8bit` computes on the CPU.
///
/// A parameter of at least `minimumQuantizedCount` (4096) elements keeps each moment as one byte per element plus
/// one float per block of 256 elements (bitsandbytes' blockwise dynamic quantization: `BlockwiseQuantization`,
/// first moment in the signed `DynamicQuantizationMap`, second in the unsigned one), about 2.03 bytes per
/// parameter instead of AdamW's 8. Each step, per block: dequantize m and v (code · absmax), update in float32,
/// update the parameter, requantize m and v with the block's new absmax. bitsandbytes' arithmetic there is
///
///     m ← m·β₁ + (1 − β₁)·g        v ← v·β₂ + (1 − β₂)·g·g
///     p ← p·(1 − lr·λ)             p ← p − (lr / (1 − β₁ᵗ))·m / (√v / √(1 − β₂ᵗ) + ε)
///
/// Smaller parameters (biases, norms) keep float32 moments and bitsandbytes' 32-bit update, which folds the bias
/// correction differently: p ← p − (lr·√(1 − β₂ᵗ) / (1 − β₁ᵗ))·m / (√v + ε·√(1 − β₂ᵗ)).
///
/// t counts per parameter (a parameter without gradient is skipped and does not count the step). Scalars are
/// computed in Double and rounded to Float as torch rounds them; element arithmetic is Float in torch's order
/// (its vectorised `add(alpha:)` and `addcmul` are fused multiply-adds). The moments, codes and absmax therefore
/// equal bitsandbytes' bit for bit; parameters agree to about an ulp, because torch 2.13's CPU `sqrt` of a large
/// float32 tensor is one ulp off the correctly rounded root for some elements (measured: 0.6%), while Swift's is
/// correctly rounded. bitsandbytes has no amsgrad here.
public final class AdamW8bit: Optimizer {
    /// Parameters with fewer elements keep float32 moments (bitsandbytes' `min_8bit_size`).
    public static let minimumQuantizedCount = 4096

    public let beta1: Double
    public let beta2: Double
    public let epsilon: Double
    public let weightDecay: Double
    public private(set) var stepCount = 0

    /// The 8-bit moments of one parameter: a code per element and an absmax per block, for m and for v.
    private final class QuantizedMoments {
        var firstCodes: [UInt8]
        var firstAbsmax: [Float]
        var secondCodes: [UInt8]
        var secondAbsmax: [Float]

        init(firstCodes: [UInt8], firstAbsmax: [Float], secondCodes: [UInt8], secondAbsmax: [Float]) {
            self.firstCodes = firstCodes
            self.firstAbsmax = firstAbsmax
            self.secondCodes = secondCodes
            self.secondAbsmax = secondAbsmax
        }

        /// The state bitsandbytes starts from: codes 0 and absmax 0, which dequantize to zeros.
        convenience init(count: Int) {
            let blocks = BlockwiseQuantization.blockCount(for: count)
            self.init(firstCodes: [UInt8](repeating: 0, count: count), firstAbsmax: [Float](repeating: 0, count: blocks),
                      secondCodes: [UInt8](repeating: 0, count: count), secondAbsmax: [Float](repeating: 0, count: blocks))
        }

        var byteCount: Int { firstCodes.count + secondCodes.count + (firstAbsmax.count + secondAbsmax.count) * 4 }
    }

    private enum Moments {
        case full(expAvg: Tensor, expAvgSq: Tensor)
        case quantized(QuantizedMoments)
    }

    private final class State {
        let shape: [Int]
        let moments: Moments
        var step: Int

        init(shape: [Int], moments: Moments, step: Int) {
            self.shape = shape
            self.moments = moments
            self.step = step
        }
    }

    private var states: [String: State] = [:]

    /// Defaults are bitsandbytes' AdamW8bit defaults. Throws, naming the field, on β outside [0, 1), negative ε
    /// or decay.
    public init(beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8, weightDecay: Double = 0.01) throws {
        try AdamW.validate(beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }

    public var configuration: OptimizerConfiguration {
        OptimizerConfiguration(kind: .adamw8bit, weightDecay: weightDecay, beta1: beta1, beta2: beta2, epsilon: epsilon)
    }

    /// Bytes held by the optimizer's state: per 8-bit parameter 2 bytes per element and 8 per block of 256, per
    /// float32 parameter 8 bytes per element.
    public var stateByteCount: Int {
        states.values.reduce(0) { total, state in
            switch state.moments {
            case .full(let expAvg, let expAvgSq): return total + (expAvg.count + expAvgSq.count) * 4
            case .quantized(let moments): return total + moments.byteCount
            }
        }
    }

    /// Whether a parameter's moments are 8-bit (else float32).
    static func isQuantized(_ parameter: Parameter) -> Bool { parameter.tensor.count >= minimumQuantizedCount }

    public func step(_ parameters: [Parameter], learningRate: Float) throws {
        let updates = try parametersToUpdate(parameters, learningRate: learningRate)
        // Resolve every state before touching any parameter, so that a shape error leaves all of them unchanged.
        var prepared: [(parameter: Parameter, gradient: Tensor, state: State)] = []
        for (parameter, gradient) in updates {
            if let existing = states[parameter.name] {
                guard existing.shape == parameter.shape else {
                    let role: String
                    switch existing.moments {
                    case .full: role = "exp_avg"
                    case .quantized: role = "state1"
                    }
                    throw OptimizerError(subject: "\(parameter.name).\(role)",
                                         problem: "optimizer state has shape \(existing.shape) but the parameter has shape \(parameter.shape)",
                                         fix: "a parameter's shape cannot change during training; start a fresh optimizer")
                }
                prepared.append((parameter, gradient, existing))
            } else {
                let moments: Moments = Self.isQuantized(parameter)
                    ? .quantized(QuantizedMoments(count: parameter.tensor.count))
                    : .full(expAvg: Tensor(zeros: parameter.shape), expAvgSq: Tensor(zeros: parameter.shape))
                prepared.append((parameter, gradient, State(shape: parameter.shape, moments: moments, step: 0)))
            }
        }
        let rate = Double(learningRate)
        for (parameter, gradient, state) in prepared {
            state.step += 1
            states[parameter.name] = state
            let coefficients = AdamW8bitCoefficients(learningRate: rate, beta1: beta1, beta2: beta2, epsilon: epsilon,
                                                     weightDecay: weightDecay, step: state.step)
            switch state.moments {
            case .full(let expAvg, let expAvgSq):
                AdamW8bitKernel.update(parameter: parameter.tensor.pointer, gradient: gradient.pointer,
                                       expAvg: expAvg.pointer, expAvgSq: expAvgSq.pointer,
                                       count: parameter.tensor.count, coefficients: coefficients, path: .full)
            case .quantized(let moments):
                Self.quantizedUpdate(parameter: parameter.tensor.pointer, gradient: gradient.pointer,
                                     count: parameter.tensor.count, moments: moments, coefficients: coefficients)
            }
        }
        stepCount += 1
    }

    /// One block at a time: dequantize both moments into float buffers, run the element update, requantize.
    /// Blocks are shared among the compute threads, each thread with its own buffers: a block's codes and absmax
    /// depend on that block alone, so they stay bitsandbytes' bit for bit on any thread count.
    private static func quantizedUpdate(parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
                                        count: Int, moments: QuantizedMoments, coefficients: AdamW8bitCoefficients) {
        let blockSize = BlockwiseQuantization.blockSize
        moments.firstCodes.withUnsafeMutableBufferPointer { firstCodes in
            moments.secondCodes.withUnsafeMutableBufferPointer { secondCodes in
                moments.firstAbsmax.withUnsafeMutableBufferPointer { firstAbsmax in
                    moments.secondAbsmax.withUnsafeMutableBufferPointer { secondAbsmax in
                        guard let first = firstCodes.baseAddress, let second = secondCodes.baseAddress,
                              let firstScale = firstAbsmax.baseAddress, let secondScale = secondAbsmax.baseAddress else { return }
                        // Per block: the parameter, its gradient and two moments read, three written (codes a byte each).
                        Parallel.forEach(count: BlockwiseQuantization.blockCount(for: count), floatsPerItem: 6 * blockSize) { blocks in
                            withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * blockSize) { buffers in
                                guard let expAvg = buffers.baseAddress else { return }
                                buffers.initialize(repeating: 0)
                                let expAvgSq = expAvg + blockSize
                                for block in blocks {
                                    let start = block * blockSize
                                    let length = min(blockSize, count - start)
                                    BlockwiseQuantization.dequantizeBlock(first + start, count: length, absmax: firstScale[block],
                                                                          map: .signed, into: expAvg)
                                    BlockwiseQuantization.dequantizeBlock(second + start, count: length, absmax: secondScale[block],
                                                                          map: .unsigned, into: expAvgSq)
                                    AdamW8bitKernel.update(parameter: parameter + start, gradient: gradient + start, expAvg: expAvg,
                                                           expAvgSq: expAvgSq, count: length, coefficients: coefficients,
                                                           path: .quantized)
                                    firstScale[block] = BlockwiseQuantization.quantizeBlock(expAvg, count: length, map: .signed,
                                                                                            codes: first + start)
                                    secondScale[block] = BlockwiseQuantization.quantizeBlock(expAvgSq, count: length,
                                                                                             map: .unsigned, codes: second + start)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // MARK: State files

    private var hyperparameters: [String: String] {
        ["beta1": stateString(beta1), "beta2": stateString(beta2), "epsilon": stateString(epsilon),
         "weight_decay": stateString(weightDecay), "block_size": String(BlockwiseQuantization.blockSize),
         "minimum_quantized_count": String(Self.minimumQuantizedCount)]
    }

    private static let quantizedRoles = ["state1", "absmax1", "state2", "absmax2"]
    private static let fullRoles = ["exp_avg", "exp_avg_sq"]

    /// The tensors a parameter's state is saved as. 8-bit parameters: `state1`/`state2`, the codes of m and v
    /// (bitsandbytes' names) with the parameter's shape, stored as U8, and `absmax1`/`absmax2`, one float per
    /// block; float32 parameters: `exp_avg` and `exp_avg_sq`.
    private static func layout(_ parameter: Parameter) -> [String: [Int]] {
        guard isQuantized(parameter) else { return ["exp_avg": parameter.shape, "exp_avg_sq": parameter.shape] }
        let blocks = [BlockwiseQuantization.blockCount(for: parameter.tensor.count)]
        return ["state1": parameter.shape, "absmax1": blocks, "state2": parameter.shape, "absmax2": blocks]
    }

    public func saveState(to url: URL) throws {
        var archive = OptimizerStateArchive(kind: .adamw8bit, hyperparameters: hyperparameters, stepCount: stepCount)
        for (name, state) in states {
            switch state.moments {
            case .full(let expAvg, let expAvgSq):
                try archive.add(expAvg, parameter: name, role: "exp_avg")
                try archive.add(expAvgSq, parameter: name, role: "exp_avg_sq")
            case .quantized(let moments):
                let blocks = [moments.firstAbsmax.count]
                try archive.add(codes: moments.firstCodes, shape: state.shape, parameter: name, role: "state1")
                try archive.add(Tensor(shape: blocks, values: moments.firstAbsmax), parameter: name, role: "absmax1")
                try archive.add(codes: moments.secondCodes, shape: state.shape, parameter: name, role: "state2")
                try archive.add(Tensor(shape: blocks, values: moments.secondAbsmax), parameter: name, role: "absmax2")
            }
            archive.setMetadata(String(state.step), forKey: "\(name).step")
        }
        try archive.write(to: url)
    }

    public func loadState(from url: URL, parameters: [Parameter]) throws {
        let contents = try OptimizerStateArchive.read(from: url, kind: .adamw8bit, hyperparameters: hyperparameters,
                                                      roles: Self.quantizedRoles + Self.fullRoles, parameters: parameters,
                                                      layout: Self.layout, codeRoles: ["state1", "state2"])
        let byName = Dictionary(parameters.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var loaded: [String: State] = [:]
        for (name, tensors) in contents.tensors {
            guard let parameter = byName[name] else { continue }  // read() accepts state for given parameters only
            func missing(_ role: String) -> OptimizerError {
                OptimizerError(subject: "\(url.path): \(name).\(role)", problem: "missing; the parameter's other state tensors are present")
            }
            func tensor(_ role: String) throws -> Tensor {
                guard let tensor = tensors[role] else { throw missing(role) }
                return tensor
            }
            func codes(_ role: String) throws -> [UInt8] {
                guard let codes = contents.codes[name]?[role] else { throw missing(role) }
                return codes
            }
            let moments: Moments
            if Self.isQuantized(parameter) {
                moments = .quantized(QuantizedMoments(
                    firstCodes: try codes("state1"),
                    firstAbsmax: try Self.scales(try tensor("absmax1"), key: "\(url.path): \(name).absmax1"),
                    secondCodes: try codes("state2"),
                    secondAbsmax: try Self.scales(try tensor("absmax2"), key: "\(url.path): \(name).absmax2")))
            } else {
                moments = .full(expAvg: try tensor("exp_avg"), expAvgSq: try tensor("exp_avg_sq"))
            }
            loaded[name] = State(shape: parameter.shape, moments: moments,
                                 step: try contents.integer("\(name).step", in: url))
        }
        states = loaded
        stepCount = contents.stepCount
    }


    /// Block scales; each must be finite and non-negative.
    private static func scales(_ tensor: Tensor, key: String) throws -> [Float] {
        let values = tensor.array
        if let index = values.firstIndex(where: { !($0 >= 0 && $0.isFinite) }) {
            throw OptimizerError(subject: key, problem: "block \(index) has absmax \(values[index]), expected a finite non-negative value")
        }
        return values
    }
}

/// The per-step scalars of one parameter's update, rounded to Float where torch rounds bitsandbytes' Python floats:
/// AdamW's, plus β₁ and the float32 path's folded constants.
struct AdamW8bitCoefficients {
    /// 1 − lr·λ, 1 − β₁, β₂, 1 − β₂, √(1 − β₂ᵗ), ε and −lr / (1 − β₁ᵗ), as AdamW computes them.
    let adam: AdamWCoefficients
    let beta1: Float
    /// Float32 path: ε·√(1 − β₂ᵗ) and −lr·√(1 − β₂ᵗ) / (1 − β₁ᵗ).
    let scaledEpsilon: Float
    let correctedNegativeStepSize: Float

    init(learningRate: Double, beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double, step: Int) {
        adam = AdamWCoefficients(learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon,
                                 weightDecay: weightDecay, step: step)
        self.beta1 = Float(beta1)
        let correction1 = 1 - pow(beta1, Double(step))
        let correction2 = (1 - pow(beta2, Double(step))).squareRoot()
        scaledEpsilon = Float(epsilon * correction2)
        correctedNegativeStepSize = Float(-learningRate * correction2 / correction1)
    }
}

/// The AdamW8bit element update on float moments (dequantized ones for 8-bit parameters): a SIMD16 version for
/// training and a plain scalar one that states the arithmetic; a test holds the two together bit for bit.
enum AdamW8bitKernel {
    private typealias Vector = OptimizerVector

    /// bitsandbytes' two formulas: `quantized` for blockwise 8-bit state, `full` for float32 state.
    enum Path {
        case quantized
        case full
    }

    /// Float32 moments share a large parameter's vectors among the compute threads (`forEachVectorPiece`); the
    /// 8-bit path shares whole blocks one level up and calls this per block (where it stays on its thread).
    static func update(parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
                       expAvg: UnsafeMutablePointer<Float>, expAvgSq: UnsafeMutablePointer<Float>, count: Int,
                       coefficients c: AdamW8bitCoefficients, path: Path) {
        forEachVectorPiece(count: count, floatsPerElement: 7) { start, count in
            updateVectors(parameter: parameter + start, gradient: gradient + start, expAvg: expAvg + start,
                          expAvgSq: expAvgSq + start, count: count, coefficients: c, path: path)
        }
    }

    /// `update` on one thread.
    private static func updateVectors(parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
                                      expAvg: UnsafeMutablePointer<Float>, expAvgSq: UnsafeMutablePointer<Float>, count: Int,
                                      coefficients c: AdamW8bitCoefficients, path: Path) {
        var index = 0
        while index < count {
            let lanes = min(Vector.scalarCount, count - index)
            var p = loadLanes(parameter + index, lanes)
            let g = loadLanes(gradient + index, lanes)
            var m = loadLanes(expAvg + index, lanes)
            var v = loadLanes(expAvgSq + index, lanes)
            // torch 2.13: m.mul_(β₁).add_(g, alpha: 1 − β₁) is fma(g, 1 − β₁, m·β₁) and
            // v.mul_(β₂).addcmul_(g, g, value: 1 − β₂) is fma((1 − β₂)·g, g, v·β₂).
            m = (m * c.beta1).addingProduct(g, c.adam.oneMinusBeta1)
            v = (v * c.adam.beta2).addingProduct(c.adam.oneMinusBeta2 * g, g)
            p = p * c.adam.decay
            switch path {
            case .quantized:
                let denominator = v.squareRoot() / c.adam.biasCorrection2Root + c.adam.epsilon
                p = p + (c.adam.negativeStepSize * m) / denominator
            case .full:
                let update = m / (v.squareRoot() + c.scaledEpsilon)
                p = p.addingProduct(update, c.correctedNegativeStepSize)
            }
            storeLanes(p, parameter + index, lanes)
            storeLanes(m, expAvg + index, lanes)
            storeLanes(v, expAvgSq + index, lanes)
            index += lanes
        }
    }

    /// The same update one element at a time, written as plainly as possible.
    static func referenceUpdate(parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
                                expAvg: UnsafeMutablePointer<Float>, expAvgSq: UnsafeMutablePointer<Float>, count: Int,
                                coefficients c: AdamW8bitCoefficients, path: Path) {
        for i in 0..<count {
            let g = gradient[i]
            expAvg[i] = (expAvg[i] * c.beta1).addingProduct(g, c.adam.oneMinusBeta1)
            expAvgSq[i] = (expAvgSq[i] * c.adam.beta2).addingProduct(c.adam.oneMinusBeta2 * g, g)
            parameter[i] = parameter[i] * c.adam.decay
            switch path {
            case .quantized:
                let denominator = expAvgSq[i].squareRoot() / c.adam.biasCorrection2Root + c.adam.epsilon
                parameter[i] = parameter[i] + (c.adam.negativeStepSize * expAvg[i]) / denominator
            case .full:
                let update = expAvg[i] / (expAvgSq[i].squareRoot() + c.scaledEpsilon)
                parameter[i] = parameter[i].addingProduct(update, c.correctedNegativeStepSize)
            }
        }
    }
}
