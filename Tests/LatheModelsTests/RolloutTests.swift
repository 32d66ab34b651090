import Foundation
import XCTest
import LatheTestSupport
@testable import LatheModels

/// Batched sampling for RL: several samples per prompt, rows of their own lengths, the sampled tokens'
/// log-probabilities equal to a full forward pass's at the same temperature, the same rollouts for a seed.
final class RolloutTests: TinyModelTestCase {
    let prompts = [[1, 5, 9, 12], [2, 7], [3, 3, 8, 4, 11, 6]]

    func rollouts(seed: UInt64, stop: Set<Int> = [], temperature: Float = 0.8) throws -> [Rollout] {
        try TokenGenerator(model: lm.model, stopTokenIDs: stop)
            .sample(prompts: prompts, sequencesPerPrompt: 3, maxTokens: 12,
                    sampling: SamplingOptions(temperature: temperature, topP: 0.95, seed: seed))
    }

    func testTheSampledTokensLogProbabilitiesAreTheModelsAtTheTemperature() throws {
        for rollout in try rollouts(seed: 4) {
            let ids = rollout.prompt + rollout.completion
            let targets = Array(ids.dropFirst()) + [-1]
            let full = try lm.model.targetLogProbabilities(tokens: ids, targets: targets, temperature: 0.8)
            let completionScores = Array(full[(rollout.prompt.count - 1)..<(ids.count - 1)])
            XCTAssertEqual(rollout.logProbabilities.count, rollout.completion.count)
            for (a, b) in zip(rollout.logProbabilities, completionScores) { XCTAssertEqual(a, b, accuracy: 2e-4) }
        }
    }

    func testASeedGivesTheSameRolloutsAndAnotherSeedOthers() throws {
        let first = try rollouts(seed: 11)
        XCTAssertEqual(first, try rollouts(seed: 11))
        XCTAssertNotEqual(first.map(\.completion), try rollouts(seed: 12).map(\.completion))
        XCTAssertEqual(first.map(\.prompt), prompts.flatMap { Array(repeating: $0, count: 3) })
        // The samples of one prompt differ from each other (each row has its own stream).
        XCTAssertGreaterThan(Set(first[0..<3].map(\.completion)).count, 1)
    }

    func testRowsStopAtTheirOwnStopTokenWhichTheyKeep() throws {
        // Stop on the token the greedy first row would emit third: that row ends there, the others run on.
        let greedy = try rollouts(seed: 0, temperature: 0)
        let stop = greedy[0].completion[2]
        let stopped = try rollouts(seed: 0, stop: [stop], temperature: 0)
        let first = try XCTUnwrap(stopped[0].completion.firstIndex(of: stop))
        XCTAssertEqual(stopped[0].completion, Array(greedy[0].completion.prefix(first + 1)))
        XCTAssertTrue(stopped[0].stopped)
        for rollout in stopped {
            if rollout.stopped { XCTAssertEqual(rollout.completion.last, stop) } else { XCTAssertEqual(rollout.completion.count, 12) }
            XCTAssertEqual(rollout.completion.filter { $0 == stop }.count, rollout.stopped ? 1 : 0)
        }
        XCTAssertGreaterThan(Set(stopped.map(\.completion.count)).count, 1, "rows end at their own lengths")
    }
}
