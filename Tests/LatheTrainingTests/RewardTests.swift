import Foundation
import XCTest
import LatheModels
@testable import LatheTraining

/// The reward model's objective against TRL 1.16.0's RewardTrainer.compute_loss (scripts/reference/reward.py), and
/// its `reward:` options.
final class RewardObjectiveTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("reward")

    func testLossGradientsAndMetricsEqualTRL() throws {
        let fixture = try JSONValue.parse(Data(contentsOf: Self.folder.appendingPathComponent("objectives.json")))
        let cases = fixture["cases"]?.array ?? []
        XCTAssertEqual(cases.count, 5)
        for c in cases {
            let name = c["name"]?.string ?? "?"
            func numbers(_ key: String) -> [Double] { c[key]?.array?.compactMap(\.double) ?? [] }
            let margins = c["margin"]?.isNull == false ? numbers("margin") : nil
            let objective = RewardObjective(centerRewardsCoefficient: c["center_rewards_coefficient"]?.double)
            let result = objective.evaluate(chosen: numbers("chosen").map(Float.init), rejected: numbers("rejected").map(Float.init),
                                            margins: margins)
            XCTAssertEqual(result.loss, c["loss"]?.double ?? .nan, accuracy: 1e-5, name)
            for (lathe, trl) in zip(result.chosenGradient + result.rejectedGradient, numbers("grad_chosen") + numbers("grad_rejected")) {
                XCTAssertEqual(Double(lathe), trl, accuracy: 1e-6, name)
            }
            XCTAssertEqual(result.chosenGradient.count, numbers("grad_chosen").count, name)
            let trlMetrics = c["metrics"]?.object ?? [:]
            XCTAssertEqual(Set(result.metrics.keys), Set(trlMetrics.keys), name)
            for (key, value) in trlMetrics {
                XCTAssertEqual(result.metrics[key] ?? .nan, value.double ?? .nan, accuracy: 1e-5, "\(name) \(key)")
            }
        }
    }

    func testOptionsReadTRLNamesAndRejectUnknownKeys() throws {
        let folder = try Fixtures.temporaryFolder(for: self)
        let url = folder.appendingPathComponent("run.yaml")
        try "rl: reward\nreward:\n  max_length: 256\n  center_rewards_coefficient: 0.01\n".write(to: url, atomically: true, encoding: .utf8)
        let config = try TrainingConfiguration.load(yaml: url)
        XCTAssertEqual(config.rl, .reward)
        XCTAssertEqual(config.reward.maxLength, 256)
        XCTAssertEqual(config.reward.centerRewardsCoefficient, 0.01)
        XCTAssertNil(RewardOptions().centerRewardsCoefficient)
        XCTAssertEqual(RewardOptions().maxLength, 1024)
        try "reward:\n  center_reward: 0.01\n".write(to: url, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TrainingConfiguration.load(yaml: url)) { error in
            XCTAssertTrue("\(error)".contains("center_reward"), "\(error)")
        }
    }
}
