import Foundation
import XCTest
import LatheData
import LatheModels
import LatheTensors
import LatheTestSupport
@testable import LatheTraining

/// PPO on a tiny model with a rule score: the whole loss's gradient (LoRA and value head, through the log-probabilities
/// at the temperature and the hidden states) equals finite differences, rollouts repeat for a seed, and the rollout
/// buffer in the checkpoint state resumes a run exactly.
final class PPOTaskTests: TinyModelTestCase {
    /// Prompts of different lengths, plain and chat rows.
    func promptsFile() throws -> URL {
        let url = tiny.folder.appendingPathComponent("prompts.jsonl")
        let rows = [#"{"prompt": "the cat"}"#, #"{"prompt": "in an"}"#, #"{"messages": [{"role": "user", "content": "hi there"}]}"#,
                    #"{"prompt": "a"}"#, #"{"prompt": [{"role": "user", "content": "on the"}]}"#, #"{"prompt": "other"}"#,
                    #"{"prompt": "the end of it"}"#, #"{"prompt": "no"}"#, #"{"prompt": "x"}"#]
        try rows.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// The policy: an adapter with B non-zero (an SFT start), the reference the base.
    func makeTask(seed: UInt64 = 3, edit: (inout TrainingConfiguration) -> Void = { _ in }) throws -> PPOTask {
        if lm.model.adapters.isEmpty {
            let adapters = try lm.model.attachLoRA(LoRAConfiguration(rank: 2, alpha: 4, targets: ["all-linear"]), seed: 9)
            var random = SeededGenerator(seed: 9)
            for adapter in adapters {
                for i in 0..<adapter.b.tensor.count { adapter.b.tensor[i] = (random.nextUnitFloat() * 2 - 1) * 0.3 }
                for p in adapter.parameters { p.trainable = true }
            }
        }
        var config = TrainingConfiguration()
        config.data = try promptsFile().path
        config.batchSize = 4
        config.seed = seed
        config.ppo.numPPOEpochs = 2
        config.ppo.numMiniBatches = 2
        config.ppo.responseLength = 6
        config.ppo.missingEOSPenalty = 1
        config.ppo.temperature = 0.9
        edit(&config)
        var random = SeededGenerator(seed: 21)
        let head = (0..<lm.model.config.hiddenSize).map { _ in random.nextUnitFloat() - 0.5 }
        // A rule score: how many 't' bytes the whole sequence has, less a length cost.
        let t = lm.tokenizer.encode("t", addSpecialTokens: false)
        return try PPOTask(config: config, languageModel: lm, reference: .adaptersOff, valueHeadWeight: head) { prompts, responses in
            zip(prompts, responses).map { prompt, response in
                let s = prompt.ids + response
                return Double(s.filter { t.contains($0) }.count) - 0.1 * Double(s.count)
            }
        }
    }

    var trainable: [Parameter] { lm.model.adapters.flatMap(\.parameters) }

    func activations(_ batchSize: Int, _ length: Int) -> TrainingActivations {
        TrainingActivations(config: lm.model.config, batchSize: batchSize, length: length)
    }

    func testWholeLossGradientEqualsFiniteDifferences() throws {
        let task = try makeTask()
        try task.sampleRollout()
        // Move the policy away from the one that sampled, so that some ratios and values are clipped.
        var random = SeededGenerator(seed: 4)
        for p in trainable { for i in 0..<p.tensor.count { p.tensor[i] += (random.nextUnitFloat() * 2 - 1) * 0.15 } }
        let parameters = trainable + task.taskParameters
        let direction = parameters.map { p in (0..<p.tensor.count).map { _ in random.nextUnitFloat() * 2 - 1 } }
        let start = task.state
        for p in parameters { p.zeroGradient() }
        let outcome = try task.accumulate(microBatches: 1, activations: activations)
        var analytic = 0.0
        for (p, d) in zip(parameters, direction) {
            for i in 0..<p.tensor.count { analytic += Double(p.gradient![i]) * Double(d[i]) }
        }
        func loss(at h: Float) throws -> Double {
            for (p, d) in zip(parameters, direction) { for i in 0..<p.tensor.count { p.tensor[i] += h * d[i] } }
            defer { for (p, d) in zip(parameters, direction) { for i in 0..<p.tensor.count { p.tensor[i] -= h * d[i] } } }
            task.state = start
            return try task.accumulate(microBatches: 1, activations: activations).loss
        }
        func difference(_ h: Float) throws -> Double { (try loss(at: h) - loss(at: -h)) / Double(2 * h) }
        let h: Float = 2e-3
        let numeric = (4 * (try difference(h / 2)) - (try difference(h))) / 3
        XCTAssertGreaterThan(outcome.metrics["policy/clipfrac_avg"] ?? 0, 0, "some ratios are clipped")
        XCTAssertGreaterThan(abs(analytic), 1e-4, "the gradient should not vanish")
        XCTAssertEqual(analytic, numeric, accuracy: 5e-3 * abs(numeric) + 1e-5, "directional derivative")
        // The value head alone: its gradient is the value loss's.
        let head = task.valueHead.weight
        XCTAssertGreaterThan(head.gradient!.array.map(abs).max() ?? 0, 0, "the value head has a gradient")
    }

    func testRolloutsRepeatForASeedAndFollowTRLsLayout() throws {
        let a = try makeTask()
        try a.sampleRollout()
        let b = try makeTask()
        try b.sampleRollout()
        XCTAssertEqual(a.state, b.state)
        let batch = try XCTUnwrap(a.state.batch)
        let eos = try XCTUnwrap(lm.tokenizer.eosTokenID)
        for row in 0..<batch.rows {
            let response = a.state.responses[row]
            XCTAssertLessThanOrEqual(response.count, 6)
            // The EOS is part of the response (pad is no token): the sequence length is its column.
            if response.last == eos {
                XCTAssertEqual(batch.sequenceLengths[row], response.count - 1)
                XCTAssertTrue(batch.containsEOS[row])
            } else {
                XCTAssertEqual(response.count, 6)
                XCTAssertFalse(batch.containsEOS[row])
            }
        }
        // The sampler's log-probabilities are the policy's on a full forward: the first update's ratio is 1.
        let first = try a.accumulate(microBatches: 1, activations: activations)
        XCTAssertEqual(first.metrics["val/ratio"] ?? .nan, 1, accuracy: 1e-5)
        XCTAssertLessThan(first.metrics["policy/approxkl_avg"] ?? .nan, 1e-9)
        XCTAssertGreaterThan(abs(first.metrics["objective/kl"] ?? 0), 1e-3, "the policy adapter differs from the base")
        let other = try makeTask(seed: 4)
        try other.sampleRollout()
        XCTAssertNotEqual(other.state.responses, a.state.responses, "another seed samples other responses")
    }

    func testCheckpointStateResumesExactly() throws {
        let a = try makeTask()
        var losses: [Double] = [], metrics: [[String: Double]] = []
        var saved: (Data?, BatchPosition)?
        // Six updates: the first rollout's four, then a second rollout.
        for step in 0..<6 {
            if step == 3 { saved = (try a.checkpointState(), a.position) }
            let outcome = try a.accumulate(microBatches: 1, activations: activations)
            losses.append(outcome.loss)
            metrics.append(outcome.metrics)
        }
        XCTAssertEqual(a.state.rollouts, 2)
        XCTAssertEqual(metrics[3]["val/ratio_var"] != nil, true, "the fourth update closes the rollout with TRL's full set")
        let b = try makeTask()
        let (state, position) = try XCTUnwrap(saved)
        try b.move(to: position)
        try b.restore(checkpointState: try XCTUnwrap(state))
        for step in 3..<6 {
            let outcome = try b.accumulate(microBatches: 1, activations: activations)
            XCTAssertEqual(outcome.loss, losses[step], "step \(step)")
            // Everything but the timings repeats.
            func untimed(_ m: [String: Double]) -> [String: Double] { m.filter { !$0.key.hasPrefix("time/") } }
            XCTAssertEqual(untimed(outcome.metrics), untimed(metrics[step]), "step \(step)")
        }
        XCTAssertEqual(a.state, b.state)
    }

    func testConfigurationsTRLRejectsAreNamed() throws {
        XCTAssertThrowsError(try makeTask { $0.batchSize = 3 }) { XCTAssertTrue("\($0)".contains("num_mini_batches"), "\($0)") }
        XCTAssertThrowsError(try makeTask { $0.ppo.whitenRewards = true }) { XCTAssertTrue("\($0)".contains("whiten_rewards"), "\($0)") }
        XCTAssertThrowsError(try makeTask { $0.gradientAccumulation = 2 }) { XCTAssertTrue("\($0)".contains("gradient_accumulation"), "\($0)") }
    }

    func testHeldOutEvaluationScoresGreedyAnswersAndTheirKL() throws {
        let task = try makeTask { $0.valid = $0.data }
        let metrics = try XCTUnwrap(try task.evaluate())
        XCTAssertEqual(Set(metrics.keys), ["eval_objective/scores", "eval_objective/kl", "eval_objective/rlhf_reward",
                                           "eval_completions/mean_length"])
        XCTAssertNotEqual(metrics["eval_objective/kl"], 0, "the policy's adapter moves it off the base")
        XCTAssertEqual(metrics["eval_objective/rlhf_reward"]!,
                       metrics["eval_objective/scores"]! - 0.05 * metrics["eval_objective/kl"]!, accuracy: 1e-9)
        // With the adapter's B zeroed the policy is the reference: no KL at all.
        for adapter in lm.model.adapters { adapter.b.tensor.fill(0) }
        XCTAssertEqual(try XCTUnwrap(try task.evaluate())["eval_objective/kl"], 0)
    }
}
