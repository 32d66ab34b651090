import Foundation
import XCTest
import LatheModels
@testable import LatheTraining

/// GRPO's loss, gradient, metrics and advantages against TRL 1.16.0's own code (scripts/reference/grpo.py calls
/// GRPOTrainer._compute_loss on given log-probabilities).
final class GRPOObjectiveTests: XCTestCase {
    let fixture = try! JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/grpo/objective.json")))

    func matrix(_ value: JSONValue?) -> [[Double]]? { value?.array?.map { $0.array?.compactMap(\.double) ?? [] } }

    func testLossGradientAndMetricsEqualTRLForEveryLossType() throws {
        let cases = fixture["cases"]?.array ?? []
        XCTAssertEqual(cases.count, 6)
        for c in cases {
            let name = c["name"]?.string ?? "?"
            let p = c["params"]!
            var options = GRPOOptions()
            options.lossType = GRPOLossType(rawValue: p["loss_type"]!.string!)!
            options.epsilon = p["epsilon"]!.double!
            options.epsilonHigh = p["epsilon_high"]?.double
            options.beta = p["beta"]!.double!
            options.maxCompletionLength = p["max_completion_length"]!.int!
            let logps = matrix(c["logps"])!, mask = matrix(c["mask"])!, reference = matrix(c["ref_logps"])!
            let old = matrix(c["old_logps"]), advantages = c["advantages"]!.array!.compactMap(\.double)
            // Each row's completion is its masked prefix; a row masked whole (truncated) keeps its tokens, uncounted.
            let rows: [GRPOCompletion] = logps.indices.map { i in
                let n = Int(mask[i].reduce(0, +))
                let length = n == 0 ? logps[i].count : n
                return GRPOCompletion(logProbabilities: logps[i].prefix(length).map { Float($0) },
                                      oldLogProbabilities: old.map { $0[i].prefix(length).map { Float($0) } },
                                      referenceLogProbabilities: reference[i].prefix(length).map { Float($0) },
                                      advantage: advantages[i], counted: n > 0)
            }
            let result = GRPOObjective(options: options).evaluate(rows, microBatches: p["gradient_accumulation_steps"]!.int!,
                                                                  generationTokens: Int(p["num_items_in_batch"]!.double!))
            XCTAssertEqual(result.loss, c["loss"]!.double!, accuracy: 2e-6, name)
            let grad = matrix(c["grad"])!
            for i in rows.indices {
                for t in rows[i].logProbabilities.indices {
                    XCTAssertEqual(Double(result.gradients[i][t]), rows[i].counted ? grad[i][t] : 0, accuracy: 2e-6, "\(name) [\(i)][\(t)]")
                }
            }
            for (key, value) in c["metrics"]!.object! {
                guard let expected = value.double else { continue }
                XCTAssertEqual(try XCTUnwrap(result.metrics[key], "\(name): \(key)"), expected, accuracy: 2e-6, "\(name): \(key)")
            }
            XCTAssertEqual(Set(result.metrics.keys), Set(c["metrics"]!.object!.keys).union(["clip_ratio"]), name)
            XCTAssertEqual(result.metrics["clip_ratio"], result.metrics["clip_ratio/region_mean"], name)
        }
    }

    func testAdvantagesEqualTRLsForEachScaling() throws {
        let a = fixture["advantages"]!
        let rewards = a["rewards"]!.array!.map(\.double)
        for scaling in RewardScaling.allCases {
            let expected = a[scaling.rawValue]!.array!.compactMap(\.double)
            let got = GRPOObjective.advantages(rewards: rewards, groupSize: a["num_generations"]!.int!, scaling: scaling)
            XCTAssertEqual(got.count, expected.count)
            // TRL's nanstd divides two integer counts: its n/(n−1) is a float32, hence 1e-8 and not 1e-15.
            for (x, y) in zip(got, expected) { XCTAssertEqual(x, y, accuracy: 1e-7, scaling.rawValue) }
        }
    }
}
