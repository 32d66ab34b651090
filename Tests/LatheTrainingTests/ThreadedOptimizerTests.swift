import Foundation
import LatheModels
import XCTest
@testable import LatheTensors
@testable import LatheTraining

/// The optimizers share each large parameter's elements (AdamW, SGD) or blocks (8-bit AdamW) among the compute
/// threads; every element is updated alone, so the parameters are the same bits on any thread count (and 8-bit
/// AdamW's codes stay bitsandbytes').
final class ThreadedOptimizerTests: XCTestCase {
    /// Parameter values after three steps of a fresh optimizer with `threads` compute threads: one parameter large
    /// enough to be split (with a partial last vector and a partial last 8-bit block), one small.
    func valuesAfterThreeSteps(_ configuration: OptimizerConfiguration, threads: Int, openMP: Bool) throws -> [[Float]] {
        let previousCount = Parallel.threadCount, previousRunner = Parallel.usesOpenMP
        defer {
            Parallel.setThreadCount(previousCount)
            Parallel.usesOpenMP = previousRunner
        }
        Parallel.setThreadCount(threads)
        Parallel.usesOpenMP = openMP
        let parameters = randomParameters([("large", [400, 1001]), ("small", [3, 7])], seed: 5)
        let optimizer = try configuration.make()
        let splitBefore = Parallel.splitLoops
        for step in 0..<3 {
            var generator = SeededGenerator(seed: UInt64(10 + step))
            fillGradients(parameters, generator: &generator, scale: 0.5)
            try optimizer.step(parameters, learningRate: 1e-2)
        }
        if threads > 1 { XCTAssertGreaterThan(Parallel.splitLoops, splitBefore, "\(configuration.kind): the large parameter is split") }
        return parameters.map(\.tensor.array)
    }

    func testOptimizersGiveTheSameBitsOnEveryThreadCount() throws {
        let configurations = [
            OptimizerConfiguration(kind: .adamw, weightDecay: 0.1),
            OptimizerConfiguration(kind: .adamw, weightDecay: 0.1, amsgrad: true),
            OptimizerConfiguration(kind: .adamw8bit, weightDecay: 0.1),
            OptimizerConfiguration(kind: .sgd, weightDecay: 0.1, momentum: 0.9, nesterov: true),
            OptimizerConfiguration(kind: .sgd),
        ]
        for configuration in configurations {
            let single = try valuesAfterThreeSteps(configuration, threads: 1, openMP: true)
            for openMP in [true, false] {
                for threads in [2, 3] {
                    let threaded = try valuesAfterThreeSteps(configuration, threads: threads, openMP: openMP)
                    for (name, (a, b)) in zip(["large", "small"], zip(threaded, single)) {
                        assertBitIdentical(a, b, "\(configuration.kind) (amsgrad \(configuration.amsgrad ?? false)) \(name), "
                                           + "\(threads) threads on \(openMP ? "OpenMP" : "Dispatch")")
                    }
                }
            }
        }
    }
}
