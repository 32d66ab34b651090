import Foundation
import LatheModels
import LatheTensors
import XCTest
@testable import LatheTraining

/// clipGradientNorm beyond the torch runs (TorchReferenceTests compares its norms with torch's).
final class GradientClippingTests: XCTestCase {
    /// Norm below the maximum: gradients unchanged bit for bit; frozen parameters are not counted.
    func testSmallNormLeavesGradientsAndIgnoresFrozenParameters() throws {
        let parameters = randomParameters([("a", [10]), ("b", [7])], seed: 31)
        var generator = SeededGenerator(seed: 32)
        fillGradients(parameters, generator: &generator, scale: 0.1)
        let before = try parameters.map { try XCTUnwrap($0.gradient).array }
        let expected = before.joined().reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let norm = clipGradientNorm(parameters, maxNorm: 1)
        assertClose([norm], [Float(expected)], relative: 1e-6, absolute: 0, "norm")
        for (parameter, values) in zip(parameters, before) {
            assertBitIdentical(try XCTUnwrap(parameter.gradient).array, values, parameter.name)
        }
        parameters[1].trainable = false
        let firstOnly = before[0].reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        assertClose([clipGradientNorm(parameters, maxNorm: 1)], [Float(firstOnly)], relative: 1e-6, absolute: 0, "norm without frozen")
    }

    /// Large norm: the result has norm maxNorm·norm/(norm + 1e-6), tolerance rtol 1e-6.
    func testLargeNormIsScaledToTheMaximum() throws {
        let parameters = randomParameters([("a", [300]), ("b", [3, 17])], seed: 33)
        var generator = SeededGenerator(seed: 34)
        fillGradients(parameters, generator: &generator, scale: 10)
        let norm = clipGradientNorm(parameters, maxNorm: 2)
        XCTAssertGreaterThan(norm, 2)
        let after = clipGradientNorm(parameters, maxNorm: 1000)
        assertClose([after], [2 * norm / (norm + 1e-6)], relative: 1e-6, absolute: 0, "norm after clipping")
    }

    /// The blocked SIMD sum of squares stays within rtol 1e-6 of a Double sum over 100 000 values.
    func testSquaredNormIsAccurateOnLongTensors() {
        var generator = SeededGenerator(seed: 35)
        let values = (0..<100_003).map { _ in generator.nextUnitFloat() * 2 - 1 }
        let expected = values.reduce(0.0) { $0 + Double($1) * Double($1) }
        let actual = values.withUnsafeBufferPointer { squaredNorm($0.baseAddress!, count: $0.count) }
        XCTAssertEqual(actual, expected, accuracy: expected * 1e-6, "largest allowed difference rtol 1e-6")
    }

    func testNonFiniteNormLeavesGradientsUntouched() throws {
        let parameters = randomParameters([("a", [20])], seed: 36)
        var generator = SeededGenerator(seed: 37)
        fillGradients(parameters, generator: &generator)
        let gradient = try XCTUnwrap(parameters[0].gradient)
        gradient.pointer[3] = .infinity
        let before = gradient.array
        XCTAssertFalse(clipGradientNorm(parameters, maxNorm: 1).isFinite)
        assertBitIdentical(gradient.array, before, "gradient")
    }
}
