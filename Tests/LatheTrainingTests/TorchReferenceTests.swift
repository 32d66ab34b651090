import Foundation
import LatheModels
import XCTest
@testable import LatheTraining

/// Ten steps of AdamW and SGD, with gradient clipping and a warmup + cosine schedule, against torch
/// (scripts/reference/optim.py). Tolerance: rtol 1e-6, atol 1e-7 on every parameter after every step and on the
/// clipped norm; rates are compared after rounding to Float, exactly.
final class TorchReferenceTests: XCTestCase {
    static let relative: Float = 1e-6
    static let absolute: Float = 1e-7

    /// The optimizer of each torch run, by the run's name in the fixture.
    static let configurations: [String: OptimizerConfiguration] = [
        "adamw weight_decay 0.1": OptimizerConfiguration(kind: .adamw, weightDecay: 0.1, beta1: 0.9, beta2: 0.999, epsilon: 1e-8),
        "adamw defaults": OptimizerConfiguration(kind: .adamw),
        "adamw amsgrad betas (0.8, 0.95) eps 1e-6":
            OptimizerConfiguration(kind: .adamw, weightDecay: 0.01, beta1: 0.8, beta2: 0.95, epsilon: 1e-6, amsgrad: true),
        "sgd momentum 0.9 weight_decay 0.01": OptimizerConfiguration(kind: .sgd, weightDecay: 0.01, momentum: 0.9),
        "sgd momentum 0.9 nesterov weight_decay 0.01":
            OptimizerConfiguration(kind: .sgd, weightDecay: 0.01, momentum: 0.9, nesterov: true),
        "sgd momentum 0.5 dampening 0.3": OptimizerConfiguration(kind: .sgd, momentum: 0.5, dampening: 0.3),
        "sgd plain": OptimizerConfiguration(kind: .sgd),
    ]

    func testEveryRunMatchesTorchAtEveryStep() throws {
        let fixture = try Fixtures.decode(OptimizerFixture.self, from: "optimizers.json")
        XCTAssertEqual(Set(fixture.runs.map(\.name)), Set(Self.configurations.keys), "every torch run has a configuration")
        let schedule = try LearningRateSchedule(kind: .cosine, peakRate: fixture.peakRate,
                                                warmupSteps: fixture.warmupSteps, totalSteps: fixture.totalSteps)
        for run in fixture.runs {
            let configuration = try XCTUnwrap(Self.configurations[run.name], run.name)
            let optimizer = try configuration.make()
            let parameters = try fixture.names.map { name in
                let parameter = Parameter(name: name, shape: try XCTUnwrap(fixture.shapes[name]), trainable: true)
                setValues(parameter.tensor, try XCTUnwrap(fixture.initial[name]))
                return parameter
            }
            var worstParameter: Float = 0
            var worstNorm: Float = 0
            for step in 0..<fixture.gradients.count {
                for parameter in parameters {
                    parameter.zeroGradient()
                    let gradient = try XCTUnwrap(parameter.gradient)
                    setValues(gradient, try XCTUnwrap(fixture.gradients[step][parameter.name]))
                }
                let rate = schedule.rate(at: step)
                XCTAssertEqual(rate, Float(run.rates[step]), "\(run.name) step \(step): learning rate")
                let norm = clipGradientNorm(parameters, maxNorm: fixture.maxNorm)
                worstNorm = max(worstNorm, assertClose([norm], [run.norms[step]], relative: Self.relative,
                                                       absolute: Self.absolute, "\(run.name) step \(step): norm"))
                try optimizer.step(parameters, learningRate: rate)
                for parameter in parameters {
                    let expected = try XCTUnwrap(run.parametersAfterStep[step][parameter.name])
                    worstParameter = max(worstParameter, assertClose(
                        parameter.tensor.array, expected, relative: Self.relative, absolute: Self.absolute,
                        "\(run.name) step \(step): \(parameter.name)"))
                }
            }
            XCTAssertEqual(optimizer.stepCount, fixture.gradients.count)
            print("\(run.name): largest difference from torch \(worstParameter) (parameters), \(worstNorm) (norm)")
        }
    }

    /// The reference run must exercise what it claims to: clipping both applied and not, and parameters moving.
    func testFixtureExercisesClippingAndUpdates() throws {
        let fixture = try Fixtures.decode(OptimizerFixture.self, from: "optimizers.json")
        let norms = try XCTUnwrap(fixture.runs.first).norms
        XCTAssertTrue(norms.contains { $0 > fixture.maxNorm } && norms.contains { $0 < fixture.maxNorm })
        for run in fixture.runs {
            let last = try XCTUnwrap(run.parametersAfterStep.last)
            XCTAssertNotEqual(last[fixture.names[0]], fixture.initial[fixture.names[0]], run.name)
        }
    }
}
