import Foundation
import XCTest
import LatheModels
import Yams
@testable import LatheTraining

/// PPO's rollout processing, advantages, losses, gradients and metrics against TRL 0.29.1 itself
/// (scripts/reference/ppo.py executes the lines of PPOTrainer.train() on given tensors).
final class PPOObjectiveTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("ppo")

    func flat(_ value: JSONValue?) -> [Double] {
        (value?.array ?? []).flatMap { row in row.array.map { $0.compactMap(\.double) } ?? [row.double ?? .nan] }
    }

    func objective(_ params: JSONValue?) throws -> PPOObjective {
        var o = PPOOptions()
        let p = params?.object ?? [:]
        o.numPPOEpochs = p["num_ppo_epochs"]?.int ?? o.numPPOEpochs
        o.numMiniBatches = p["num_mini_batches"]?.int ?? o.numMiniBatches
        o.klCoef = p["kl_coef"]?.double ?? o.klCoef
        o.klEstimator = try XCTUnwrap(p["kl_estimator"]?.string.flatMap(PPOOptions.KLEstimator.init))
        o.cliprange = p["cliprange"]?.double ?? o.cliprange
        o.vfCoef = p["vf_coef"]?.double ?? o.vfCoef
        o.cliprangeValue = p["cliprange_value"]?.double ?? o.cliprangeValue
        o.gamma = p["gamma"]?.double ?? o.gamma
        o.lam = p["lam"]?.double ?? o.lam
        o.whitenRewards = p["whiten_rewards"]?.bool ?? o.whitenRewards
        o.missingEOSPenalty = p["missing_eos_penalty"]?.double
        return PPOObjective(options: o, padTokenID: try XCTUnwrap(p["pad_token_id"]?.int),
                            eosTokenID: try XCTUnwrap(p["eos_token_id"]?.int), stopTokenID: p["stop_token_id"]?.int)
    }

    func assertClose(_ mine: [Double], _ theirs: [Double], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(mine.count, theirs.count, "\(what): count", file: file, line: line)
        var worst = 0.0
        for (a, b) in zip(mine, theirs) { worst = max(worst, abs(a - b) / (1 + abs(b))) }
        XCTAssertLessThanOrEqual(worst, 1e-5, "\(what): largest difference \(worst)", file: file, line: line)
    }

    func testRolloutProcessingUpdatesAndMetricsEqualTRL() throws {
        let fixture = try JSONValue.parse(Data(contentsOf: Self.folder.appendingPathComponent("objective.json")))
        let cases = fixture["cases"]?.array ?? []
        XCTAssertEqual(cases.count, 3)
        for c in cases {
            let name = c["name"]?.string ?? "?"
            let objective = try objective(c["params"])
            let responses = flat(c["responses"]).map { Int($0) }
            let width = c["responses"]?.array?.first?.array?.count ?? 0
            let b = try objective.batch(responses: responses, width: width, logProbabilities: flat(c["logprobs_raw"]),
                                        referenceLogProbabilities: flat(c["ref_logprobs_raw"]), values: flat(c["values_raw"]),
                                        scores: flat(c["scores_raw"]))
            let out = c["outputs"]
            XCTAssertEqual(b.postprocessedResponses, flat(out?["postprocessed_responses"]).map { Int($0) }, "\(name): truncation")
            XCTAssertEqual(b.sequenceLengths, flat(out?["sequence_lengths"]).map { Int($0) }, "\(name): sequence lengths")
            XCTAssertEqual(b.containsEOS, flat(out?["contain_eos_token"]).map { $0 == 1 }, "\(name): contains EOS")
            XCTAssertEqual(PPOObjective.mask(b, where: b.isResponse), flat(out?["padding_mask"]).map { $0 == 0 }, "\(name): padding mask")
            XCTAssertEqual(PPOObjective.mask(b, where: b.hasValue), flat(out?["padding_mask_p1"]).map { $0 == 0 }, "\(name): padding mask p1")
            assertClose(b.scores, flat(out?["scores"]), "\(name): scores")
            assertClose(b.logProbabilities, flat(out?["logprobs"]), "\(name): logprobs")
            assertClose(b.referenceLogProbabilities, flat(out?["ref_logprobs"]), "\(name): ref_logprobs")
            assertClose(b.values, flat(out?["values"]), "\(name): values")
            assertClose(b.kl, flat(out?["kl"]), "\(name): kl")
            assertClose(b.nonScoreRewards, flat(out?["non_score_reward"]), "\(name): non_score_reward")
            assertClose(b.rewards, flat(out?["rewards"]), "\(name): rewards")
            assertClose(b.advantages, flat(out?["advantages"]), "\(name): advantages")
            assertClose(b.returns, flat(out?["returns"]), "\(name): returns")

            var statistics: [PPOUpdateStatistics] = []
            let updates = c["updates"]?.array ?? []
            XCTAssertEqual(updates.count, objective.options.numPPOEpochs * objective.options.numMiniBatches, name)
            for (k, u) in updates.enumerated() {
                let what = "\(name) update \(k)"
                let rows = (u["rows"]?.array ?? []).compactMap(\.int)
                let update = try objective.update(b, rows: rows, logProbabilities: flat(u["new_logprobs"]), values: flat(u["new_values"]))
                assertClose([update.loss], [u["loss"]?.double ?? .nan], "\(what): loss")
                let s = update.statistics
                assertClose([s.policyLoss, s.valueLoss, s.policyClipFraction, s.valueClipFraction, s.approximateKL, s.ratioMean],
                            ["pg_loss", "vf_loss", "pg_clipfrac", "vf_clipfrac", "approxkl", "ratio_mean"].map { u[$0]?.double ?? .nan },
                            "\(what): statistics")
                assertClose(update.logProbabilityGradient.map(Double.init), flat(u["grad_logprobs"]), "\(what): d loss / d logprob")
                assertClose(update.valueGradient.map(Double.init), flat(u["grad_values"]), "\(what): d loss / d value")
                statistics.append(s)
            }
            let metrics = objective.metrics(b, updates: statistics)
            let expected = c["metrics"]?.object ?? [:]
            XCTAssertEqual(Set(metrics.keys), Set(expected.keys), "\(name): metric names")
            for (key, value) in expected {
                assertClose([metrics[key] ?? .nan], [value.double ?? .nan], "\(name): \(key)")
            }
        }
    }

    /// The update's gradients against central differences of its loss, at values off the clip boundaries.
    func testUpdateGradientIsTheLossDerivative() throws {
        var options = PPOOptions()
        options.cliprange = 0.1
        options.cliprangeValue = 0.1
        let objective = PPOObjective(options: options, padTokenID: 0, eosTokenID: 2, stopTokenID: 2)
        let width = 5
        let responses = [4, 2, 0, 0, 0, 3, 3, 3, 3, 3, 2, 0, 0, 0, 0]
        let old = (0..<15).map { -0.3 - 0.2 * Double($0 % 4) }
        let b = try objective.batch(responses: responses, width: width, logProbabilities: old,
                                    referenceLogProbabilities: old.map { $0 - 0.1 }, values: (0..<15).map { 0.1 * Double($0 % 3) },
                                    scores: [1, -0.5, 0.25])
        let rows = [2, 0, 1]
        var logps = rows.flatMap { r in (0..<width).map { b.logProbabilities[r * width + $0] } }
        var values = rows.flatMap { r in (0..<width).map { b.values[r * width + $0] } }
        // Some ratios and values inside their clip range, some outside.
        for j in logps.indices { logps[j] += [0.05, -0.3, 0.2, 0.01, -0.04][j % 5] }
        for j in values.indices { values[j] += [0.5, -0.03, -0.4, 0.02, 0.07][j % 5] }
        let update = try objective.update(b, rows: rows, logProbabilities: logps, values: values)
        let h = 1e-6
        for j in logps.indices {
            var plus = logps, minus = logps
            plus[j] += h; minus[j] -= h
            let numeric = (try objective.update(b, rows: rows, logProbabilities: plus, values: values).loss
                - objective.update(b, rows: rows, logProbabilities: minus, values: values).loss) / (2 * h)
            XCTAssertEqual(Double(update.logProbabilityGradient[j]), numeric, accuracy: 1e-6, "d loss / d logprob \(j)")
        }
        for j in values.indices {
            var plus = values, minus = values
            plus[j] += h; minus[j] -= h
            let numeric = (try objective.update(b, rows: rows, logProbabilities: logps, values: plus).loss
                - objective.update(b, rows: rows, logProbabilities: logps, values: minus).loss) / (2 * h)
            XCTAssertEqual(Double(update.valueGradient[j]), numeric, accuracy: 1e-6, "d loss / d value \(j)")
        }
        XCTAssertGreaterThan(update.statistics.policyClipFraction, 0)
        XCTAssertGreaterThan(update.statistics.valueClipFraction, 0)
    }

    func testOptionsHaveTRLsNamesAndDefaultsAndNameABadKey() throws {
        let defaults = try YAMLDecoder().decode(TrainingConfiguration.self, from: "rl: ppo\n").ppo
        XCTAssertEqual(defaults, PPOOptions())
        XCTAssertEqual(defaults.numPPOEpochs, 4)
        XCTAssertEqual(defaults.klCoef, 0.05)
        XCTAssertEqual(defaults.vfCoef, 0.1)
        XCTAssertEqual(defaults.lam, 0.95)
        XCTAssertEqual(defaults.responseLength, 53)
        XCTAssertEqual(defaults.stopToken, "eos")
        let set = try YAMLDecoder().decode(TrainingConfiguration.self, from: """
            ppo:
              num_ppo_epochs: 2
              num_mini_batches: 4
              kl_estimator: k3
              whiten_rewards: true
              missing_eos_penalty: 1.5
              stop_token: null
              stop_token_id: 7
              cliprange_value: 0.3
            """).ppo
        XCTAssertEqual(set.numPPOEpochs, 2)
        XCTAssertEqual(set.numMiniBatches, 4)
        XCTAssertEqual(set.klEstimator, .k3)
        XCTAssertTrue(set.whitenRewards)
        XCTAssertEqual(set.missingEOSPenalty, 1.5)
        XCTAssertNil(set.stopToken)
        XCTAssertEqual(set.stopTokenID, 7)
        XCTAssertEqual(set.cliprangeValue, 0.3)
        XCTAssertNoThrow(try set.validate())
        // The run folder's config.yaml reads back the same, `stop_token: null` included.
        var written = TrainingConfiguration()
        written.ppo = set
        XCTAssertEqual(try YAMLDecoder().decode(TrainingConfiguration.self, from: try written.yaml()).ppo, set)
        XCTAssertThrowsError(try YAMLDecoder().decode(TrainingConfiguration.self, from: "ppo:\n  kl_coeff: 0.1\n")) { error in
            XCTAssertTrue("\(error)".contains("kl_coeff"), "\(error)")
        }
        XCTAssertThrowsError(try YAMLDecoder().decode(TrainingConfiguration.self, from: "ppo:\n  kl_estimator: k2\n")) { error in
            XCTAssertTrue("\(error)".contains("k1, k3"), "\(error)")
        }
        var both = PPOOptions()
        both.stopTokenID = 3
        XCTAssertThrowsError(try both.validate()) { XCTAssertTrue("\($0)".contains("ppo.stop_token_id"), "\($0)") }
        var penalty = PPOOptions()
        penalty.missingEOSPenalty = -1
        XCTAssertThrowsError(try penalty.validate()) { XCTAssertTrue("\($0)".contains("ppo.missing_eos_penalty"), "\($0)") }
    }
}
