import Foundation
import LatheModels
import LatheTensors
import XCTest
@testable import LatheTraining

/// Which parameters an optimizer touches, per-parameter step counts, kernels against their plain references, and
/// errors from `step`.
final class OptimizerBehaviourTests: XCTestCase {
    func testNonTrainableParametersAreLeftUntouched() throws {
        for configuration in [OptimizerConfiguration(kind: .adamw, weightDecay: 0.1),
                              OptimizerConfiguration(kind: .sgd, weightDecay: 0.1, momentum: 0.9)] {
            let parameters = randomParameters([("a", [4, 3]), ("b", [5])], seed: 11)
            parameters[1].trainable = false
            XCTAssertNil(parameters[1].gradient, "a frozen parameter has no gradient")
            let frozenBefore = parameters[1].tensor.array
            let trainedBefore = parameters[0].tensor.array
            var generator = SeededGenerator(seed: 12)
            fillGradients(parameters, generator: &generator)
            let optimizer = try configuration.make()
            try optimizer.step(parameters, learningRate: 0.1)
            assertBitIdentical(parameters[1].tensor.array, frozenBefore, "\(configuration.kind) frozen parameter")
            XCTAssertNotEqual(parameters[0].tensor.array, trainedBefore, "\(configuration.kind) trainable parameter moves")
        }
    }

    /// A parameter unfrozen after a few steps starts its own AdamW step count at 1, as in torch: its updates equal
    /// those of a fresh optimizer that only ever saw it.
    func testParameterJoiningLaterStartsItsOwnStepCount() throws {
        let parameters = randomParameters([("early", [6]), ("late", [2, 9])], seed: 13)
        let alone = randomParameters([("early", [6]), ("late", [2, 9])], seed: 13)[1]
        parameters[1].trainable = false
        let shared = try AdamW()
        let fresh = try AdamW()
        for step in 0..<6 {
            if step == 3 { parameters[1].trainable = true }
            var generator = SeededGenerator(seed: UInt64(step))
            fillGradients(parameters, generator: &generator)
            try shared.step(parameters, learningRate: 0.05)
            if step >= 3 {
                setValues(try XCTUnwrap(alone.gradient), try XCTUnwrap(parameters[1].gradient).array)
                try fresh.step([alone], learningRate: 0.05)
            }
        }
        assertBitIdentical(parameters[1].tensor.array, alone.tensor.array, "late parameter")
    }

    func testStepRejectsBadRatesAndDuplicateNames() throws {
        let parameters = randomParameters([("w", [3])], seed: 1)
        let optimizer = try AdamW()
        for rate in [-0.1, Float.nan, .infinity] {
            XCTAssertThrowsError(try optimizer.step(parameters, learningRate: rate)) { error in
                XCTAssertEqual((error as? OptimizerError)?.subject, "learningRate")
            }
        }
        XCTAssertThrowsError(try optimizer.step(parameters + parameters, learningRate: 0.1)) { error in
            XCTAssertEqual((error as? OptimizerError)?.subject, "w")
        }
        XCTAssertEqual(optimizer.stepCount, 0)
    }

    func testConstructorsRejectInvalidHyperparameters() {
        XCTAssertThrowsError(try AdamW(beta1: 1)) { XCTAssertEqual(($0 as? OptimizerError)?.subject, "beta1") }
        XCTAssertThrowsError(try AdamW(beta2: -0.1)) { XCTAssertEqual(($0 as? OptimizerError)?.subject, "beta2") }
        XCTAssertThrowsError(try AdamW(epsilon: -1)) { XCTAssertEqual(($0 as? OptimizerError)?.subject, "epsilon") }
        XCTAssertThrowsError(try SGD(weightDecay: -1)) { XCTAssertEqual(($0 as? OptimizerError)?.subject, "weightDecay") }
        XCTAssertThrowsError(try SGD(nesterov: true)) { XCTAssertEqual(($0 as? OptimizerError)?.subject, "nesterov") }
        XCTAssertThrowsError(try SGD(momentum: 0.9, dampening: 0.1, nesterov: true)) {
            XCTAssertEqual(($0 as? OptimizerError)?.subject, "nesterov")
        }
    }

    /// A tensor of `count` seeded random values in [-scale, scale), squared when `squared` (second moments).
    private func randomTensor(_ count: Int, _ generator: inout SeededGenerator, scale: Float = 1, squared: Bool = false) -> Tensor {
        let values = (0..<count).map { _ in (generator.nextUnitFloat() * 2 - 1) * scale }
        return Tensor(shape: [count], values: squared ? values.map { $0 * $0 } : values)
    }

    /// The SIMD16 AdamW kernel equals its scalar reference bit for bit, on full and partial vectors, with and
    /// without amsgrad, on both of torch's lerp branches (1 − β₁ below and above 0.5).
    func testAdamWKernelMatchesReferenceBitForBit() {
        var generator = SeededGenerator(seed: 21)
        for count in [1, 15, 16, 17, 100] {
            for amsgrad in [false, true] {
                for beta1 in [0.9, 0.3] {
                    let c = AdamWCoefficients(learningRate: 0.01, beta1: beta1, beta2: 0.999, epsilon: 1e-8,
                                              weightDecay: 0.1, step: 3)
                    let gradient = randomTensor(count, &generator)
                    let fast = [randomTensor(count, &generator), randomTensor(count, &generator, scale: 0.1),
                                randomTensor(count, &generator, squared: true), randomTensor(count, &generator, squared: true)]
                    let plain = fast.map { $0.copy() }
                    AdamWKernel.update(parameter: fast[0].pointer, gradient: gradient.pointer, expAvg: fast[1].pointer,
                                       expAvgSq: fast[2].pointer, maxExpAvgSq: amsgrad ? fast[3].pointer : nil,
                                       count: count, coefficients: c)
                    AdamWKernel.referenceUpdate(parameter: plain[0].pointer, gradient: gradient.pointer, expAvg: plain[1].pointer,
                                                expAvgSq: plain[2].pointer, maxExpAvgSq: amsgrad ? plain[3].pointer : nil,
                                                count: count, coefficients: c)
                    for (index, role) in ["parameter", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"].enumerated() {
                        assertBitIdentical(fast[index].array, plain[index].array, "count \(count) amsgrad \(amsgrad) beta1 \(beta1): \(role)")
                    }
                }
            }
        }
    }

    func testSGDKernelMatchesReferenceBitForBit() {
        var generator = SeededGenerator(seed: 22)
        for count in [1, 15, 16, 17, 100] {
            for (momentum, nesterov, firstStep) in [(0.0, false, false), (0.9, false, true), (0.9, false, false), (0.9, true, false)] {
                let c = SGDCoefficients(learningRate: 0.05, momentum: momentum, dampening: 0.2 * (nesterov ? 0 : 1),
                                        nesterov: nesterov, weightDecay: 0.01)
                let gradient = randomTensor(count, &generator)
                let fast = [randomTensor(count, &generator), randomTensor(count, &generator)]
                let plain = fast.map { $0.copy() }
                SGDKernel.update(parameter: fast[0].pointer, gradient: gradient.pointer,
                                 momentumBuffer: momentum == 0 ? nil : fast[1].pointer, firstStep: firstStep, count: count,
                                 coefficients: c)
                SGDKernel.referenceUpdate(parameter: plain[0].pointer, gradient: gradient.pointer,
                                          momentumBuffer: momentum == 0 ? nil : plain[1].pointer, firstStep: firstStep,
                                          count: count, coefficients: c)
                let context = "count \(count) momentum \(momentum) nesterov \(nesterov) first \(firstStep)"
                assertBitIdentical(fast[0].array, plain[0].array, context + ": parameter")
                assertBitIdentical(fast[1].array, plain[1].array, context + ": buffer")
            }
        }
    }
}
