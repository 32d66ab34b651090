import Foundation
import LatheFormats
import LatheModels
import LatheTensors
import XCTest
@testable import LatheTraining

/// Save → load → continue equals an uninterrupted run bit for bit; mismatched loads fail naming the key.
final class OptimizerStateTests: XCTestCase {
    static let shapes: [(String, [Int])] = [("layer.weight", [7, 5]), ("layer.bias", [13]), ("block.scale", [3, 4, 2])]

    static let configurations = [
        OptimizerConfiguration(kind: .adamw, weightDecay: 0.1),
        OptimizerConfiguration(kind: .adamw, beta1: 0.8, beta2: 0.95, amsgrad: true),
        OptimizerConfiguration(kind: .sgd, weightDecay: 0.01, momentum: 0.9, nesterov: true),
        OptimizerConfiguration(kind: .sgd, weightDecay: 0.01),
    ]

    /// Runs the steps in `steps`, each with gradients seeded by its index, so a resumed run sees the same ones.
    private func train(_ optimizer: any Optimizer, _ parameters: [Parameter], steps: Range<Int>) throws {
        for step in steps {
            var generator = SeededGenerator(seed: UInt64(100 + step))
            for parameter in parameters { parameter.zeroGradient() }
            fillGradients(parameters, generator: &generator, scale: 0.5)
            clipGradientNorm(parameters, maxNorm: 1)
            try optimizer.step(parameters, learningRate: 0.01 * Float(step + 1))
        }
    }

    func testSaveLoadContinueIsBitIdenticalToAnUninterruptedRun() throws {
        let folder = try Fixtures.temporaryFolder(for: self)
        for configuration in Self.configurations {
            let uninterrupted = randomParameters(Self.shapes, seed: 7)
            try train(try configuration.make(), uninterrupted, steps: 0..<8)

            let resumed = randomParameters(Self.shapes, seed: 7)
            let first = try configuration.make()
            try train(first, resumed, steps: 0..<5)
            let url = folder.appendingPathComponent("\(configuration.kind.rawValue)-state.safetensors")
            try first.saveState(to: url)
            let second = try configuration.make()
            try second.loadState(from: url, parameters: resumed)
            XCTAssertEqual(second.stepCount, 5)
            try train(second, resumed, steps: 5..<8)

            for (actual, expected) in zip(resumed, uninterrupted) {
                assertBitIdentical(actual.tensor.array, expected.tensor.array, "\(configuration) \(actual.name)")
            }
        }
    }

    func testStateFileLayout() throws {
        let url = try Fixtures.temporaryFolder(for: self).appendingPathComponent("adamw.safetensors")
        let parameters = randomParameters(Self.shapes, seed: 3)
        let optimizer = try AdamW(weightDecay: 0.1)
        try train(optimizer, parameters, steps: 0..<2)
        try optimizer.saveState(to: url)
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(Set(file.tensors.map(\.name)), Set(Self.shapes.flatMap { ["\($0.0).exp_avg", "\($0.0).exp_avg_sq"] }))
        XCTAssertEqual(file.tensor(named: "layer.weight.exp_avg")?.dimensions, [7, 5])
        XCTAssertEqual(file.metadata["optimizer"], "adamw")
        XCTAssertEqual(file.metadata["steps"], "2")
        XCTAssertEqual(file.metadata["layer.bias.step"], "2")
        XCTAssertEqual(file.metadata["weight_decay"], "0.1")
        XCTAssertEqual(file.metadata["beta2"], "0.999")
    }

    /// Loads `url` into `optimizer` and asserts the error names `key`.
    private func assertLoadFails(_ optimizer: any Optimizer, _ url: URL, _ parameters: [Parameter], naming key: String,
                                 file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try optimizer.loadState(from: url, parameters: parameters), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(key), "error should name \(key): \(text)", file: file, line: line)
        }
    }

    func testMismatchedLoadsFailNamingTheKey() throws {
        let url = try Fixtures.temporaryFolder(for: self).appendingPathComponent("state.safetensors")
        let parameters = randomParameters(Self.shapes, seed: 5)
        let saved = try AdamW(weightDecay: 0.1)
        try train(saved, parameters, steps: 0..<3)
        try saved.saveState(to: url)

        // Another kind of optimizer, or other hyper-parameters.
        assertLoadFails(try SGD(momentum: 0.9), url, parameters, naming: "__metadata__.optimizer")
        assertLoadFails(try AdamW(weightDecay: 0.01), url, parameters, naming: "__metadata__.weight_decay")
        assertLoadFails(try AdamW(beta1: 0.85, weightDecay: 0.1), url, parameters, naming: "__metadata__.beta1")
        assertLoadFails(try AdamW(weightDecay: 0.1, amsgrad: true), url, parameters, naming: "__metadata__.amsgrad")

        // A parameter of another shape.
        let reshaped = randomParameters([("layer.weight", [5, 7]), ("layer.bias", [13]), ("block.scale", [3, 4, 2])], seed: 5)
        assertLoadFails(try AdamW(weightDecay: 0.1), url, reshaped, naming: "layer.weight.exp_a")
        // A parameter missing from the set, one frozen, one extra.
        assertLoadFails(try AdamW(weightDecay: 0.1), url, Array(parameters.dropFirst()), naming: "layer.weight.exp_a")
        let frozen = randomParameters(Self.shapes, seed: 5)
        frozen[1].trainable = false
        assertLoadFails(try AdamW(weightDecay: 0.1), url, frozen, naming: "layer.bias")
        let extra = parameters + randomParameters([("head.weight", [2, 2])], seed: 6)
        assertLoadFails(try AdamW(weightDecay: 0.1), url, extra, naming: "head.weight.exp_avg")

        // A failed load leaves the optimizer as it was.
        let untouched = try AdamW(weightDecay: 0.1)
        assertLoadFails(untouched, url, reshaped, naming: "layer.weight")
        XCTAssertEqual(untouched.stepCount, 0)
    }

    func testSGDStateRejectsAdamWFileAndAnotherMomentum() throws {
        let url = try Fixtures.temporaryFolder(for: self).appendingPathComponent("sgd.safetensors")
        let parameters = randomParameters(Self.shapes, seed: 9)
        let saved = try SGD(momentum: 0.9)
        try train(saved, parameters, steps: 0..<2)
        try saved.saveState(to: url)
        assertLoadFails(try AdamW(), url, parameters, naming: "__metadata__.optimizer")
        assertLoadFails(try SGD(momentum: 0.5), url, parameters, naming: "__metadata__.momentum")
        assertLoadFails(try SGD(momentum: 0.9, nesterov: true), url, parameters, naming: "__metadata__.nesterov")
        let loaded = try SGD(momentum: 0.9)
        try loaded.loadState(from: url, parameters: parameters)
        XCTAssertEqual(loaded.stepCount, 2)
    }
}
