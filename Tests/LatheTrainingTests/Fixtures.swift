import Foundation
import LatheModels
import LatheTensors
import XCTest
@testable import LatheTraining

/// Paths and decoders for the fixtures written by scripts/reference/optim.py, and helpers shared by the tests.
enum Fixtures {
    static let folder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("optim")

    static func decode<T: Decodable>(_ type: T.Type, from name: String) throws -> T {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(T.self, from: Data(contentsOf: folder.appendingPathComponent(name)))
    }

    /// A fresh empty folder under the temporary directory, removed by the test case's teardown.
    static func temporaryFolder(for testCase: XCTestCase) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-training-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        testCase.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}

extension Trainer {
    /// A run of `config` into `output` killed after `steps` steps, just past its checkpoint (the step after it is lost
    /// with the kill), then resumed in a fresh trainer on a freshly loaded model, which it returns finished.
    static func resumedAfterKill(_ config: TrainingConfiguration, output: String, model: String, checkpointAfter steps: Int) throws -> Trainer {
        var interrupted = config
        interrupted.output = output
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        let first = try Trainer(config: interrupted, languageModel: try LanguageModel.load(model))
        for _ in 0..<steps { _ = try first.trainStep() }
        try Checkpoint.save(first, to: URL(fileURLWithPath: output))
        _ = try first.trainStep()
        let resumed = try Trainer(config: interrupted, languageModel: try LanguageModel.load(model))
        try resumed.run(resume: true)
        return resumed
    }
}

/// optimizers.json: parameters, gradients and torch's parameters after each step of each optimizer run.
struct OptimizerFixture: Decodable {
    struct Run: Decodable {
        let name: String
        let rates: [Double]
        let norms: [Float]
        let parametersAfterStep: [[String: [Float]]]
    }

    let shapes: [String: [Int]]
    let names: [String]
    let peakRate: Double
    let warmupSteps: Int
    let totalSteps: Int
    let maxNorm: Float
    let initial: [String: [Float]]
    let gradients: [[String: [Float]]]
    let runs: [Run]
}

/// schedules.json: transformers' rates at every step of a 20-step run with 5 warmup steps.
struct ScheduleFixture: Decodable {
    let peakRate: Double
    let warmupSteps: Int
    let totalSteps: Int
    let minimumRate: Double
    let constant: [Double]
    let linear: [Double]
    let cosine: [Double]
    let cosineMinimum: [Double]
}

/// Fails when any |actual − expected| > absolute + relative·|expected|; returns the largest absolute difference so
/// that callers can print it.
@discardableResult
func assertClose(_ actual: [Float], _ expected: [Float], relative: Float, absolute: Float, _ context: String,
                 file: StaticString = #filePath, line: UInt = #line) -> Float {
    guard actual.count == expected.count else {
        XCTFail("\(context): \(actual.count) values, expected \(expected.count)", file: file, line: line)
        return .infinity
    }
    var largest: Float = 0
    var failures = 0
    var first: Int?
    for i in 0..<actual.count {
        let difference = abs(actual[i] - expected[i])
        largest = max(largest, difference.isNaN ? .infinity : difference)
        if !(difference <= absolute + relative * abs(expected[i])) {
            failures += 1
            if first == nil { first = i }
        }
    }
    if let first {
        XCTFail("\(context): \(failures) of \(actual.count) values outside rtol \(relative) / atol \(absolute); first at \(first): \(actual[first]) vs \(expected[first]); largest difference \(largest)",
                file: file, line: line)
    }
    return largest
}

/// Bit-for-bit equality of two Float arrays (tolerance 0), reporting the first mismatch and the largest difference.
func assertBitIdentical(_ actual: [Float], _ expected: [Float], _ context: String,
                        file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        XCTFail("\(context): \(actual.count) values, expected \(expected.count)", file: file, line: line)
        return
    }
    var largest: Float = 0
    var first: Int?
    for i in 0..<actual.count where actual[i].bitPattern != expected[i].bitPattern {
        if first == nil { first = i }
        largest = max(largest, abs(actual[i] - expected[i]))
    }
    if let first {
        XCTFail("\(context): values differ (tolerance 0); first at \(first): \(actual[first]) vs \(expected[first]); largest difference \(largest)",
                file: file, line: line)
    }
}

/// Copies `values` into `tensor`, failing the test when the counts differ.
func setValues(_ tensor: Tensor, _ values: [Float], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(values.count, tensor.count, "value count", file: file, line: line)
    _ = tensor.buffer.update(fromContentsOf: values.prefix(tensor.count))
}

/// Trainable parameters with seeded random values, for tests that do not need torch's numbers.
func randomParameters(_ shapes: [(String, [Int])], seed: UInt64) -> [Parameter] {
    var generator = SeededGenerator(seed: seed)
    return shapes.map { name, shape in
        let parameter = Parameter(name: name, shape: shape, trainable: true)
        for i in 0..<parameter.tensor.count { parameter.tensor.pointer[i] = generator.nextUnitFloat() * 2 - 1 }
        return parameter
    }
}

/// Fills every gradient with seeded random values in [-scale, scale).
func fillGradients(_ parameters: [Parameter], generator: inout SeededGenerator, scale: Float = 1) {
    for parameter in parameters {
        guard let gradient = parameter.gradient else { continue }
        for i in 0..<gradient.count { gradient.pointer[i] = (generator.nextUnitFloat() * 2 - 1) * scale }
    }
}
