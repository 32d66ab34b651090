import Foundation
import XCTest
import LatheData
import LatheEval
import LatheModels
import LatheTensors
import LatheTestSupport
@testable import LatheTraining

/// GRPO through a tiny model: the gradient of the clipped surrogate with a KL to the base (adapters off) against
/// central differences, and a run that resumes exactly.
final class GRPOTaskTests: XCTestCase {
    var tiny: TinyModelFolder!

    override func setUpWithError() throws {
        tiny = try TinyModelFolder()
        let rows = (0..<12).map { i in
            #"{"prompt": "the \#(["theory", "river", "inn", "art"][i % 4]) on", "reference": "then"}"#
        }
        try rows.joined(separator: "\n").write(to: tiny.file("prompts.jsonl"), atomically: true, encoding: .utf8)
    }

    override func tearDownWithError() throws { tiny.remove() }

    func testClippedSurrogateWithKLMatchesFiniteDifferences() throws {
        let saved = MatMul.backend
        MatMul.backend = ReferenceMatMulBackend()
        defer { MatMul.backend = saved }
        let lm = try LanguageModel.load(tiny.modelPath)
        let model = lm.model
        let adapters = try model.attachLoRA(LoRAConfiguration(rank: 2, alpha: 4, targets: ["all-linear"]), seed: 5)
        var random = SeededGenerator(seed: 2)
        for p in adapters.map(\.b) { for i in 0..<p.tensor.count { p.tensor[i] = (random.nextUnitFloat() - 0.5) * 0.2 } }
        for p in adapters.flatMap(\.parameters) { p.trainable = true }
        let rollouts = [Rollout(prompt: [1, 5, 9], completion: [12, 7, 3, 30], logProbabilities: [], stopped: true),
                        Rollout(prompt: [2, 7], completion: [4, 4, 11], logProbabilities: [], stopped: false),
                        Rollout(prompt: [3, 8, 4, 11, 6], completion: [9, 2], logProbabilities: [], stopped: true)]
        let batch = RolloutSequences(queries: rollouts.map(\.prompt), responses: rollouts.map(\.completion), width: 4)
        var options = GRPOOptions()
        options.beta = 0.1
        options.lossType = .bnpo
        options.temperature = 0.8
        let objective = GRPOObjective(options: options)
        let scorer = PreferenceScorer(model: model, reference: .adaptersOff)
        let reference = batch.responseValues(try scorer.withReference { try batch.logProbabilities(model, temperature: 0.8, saving: nil) })
        // Old policies far from (clipped) or near (not clipped) the current one: never on a clip boundary.
        let now = batch.responseValues(try batch.logProbabilities(model, temperature: 0.8, saving: nil))
        let shifts: [Float] = [-0.6, -0.05, 0.05, 0.6]
        let old = now.map { row in row.enumerated().map { $1 + shifts[$0 % 4] } }
        let advantages = [0.9, -1.2, 0.4]
        func loss(backward: Bool) throws -> Double {
            let activations = backward ? TrainingActivations(config: model.config, batchSize: batch.batchSize, length: batch.length) : nil
            let policy = batch.responseValues(try batch.logProbabilities(model, temperature: 0.8, saving: activations))
            let rows = policy.indices.map {
                GRPOCompletion(logProbabilities: policy[$0], oldLogProbabilities: old[$0], referenceLogProbabilities: reference[$0],
                               advantage: advantages[$0])
            }
            let result = objective.evaluate(rows, microBatches: 1, generationTokens: 9)
            if let activations {
                model.backward(activations: activations, targets: batch.targets, logProbabilityGradient: batch.targetGradient(result.gradients),
                               temperature: 0.8)
            }
            return result.loss
        }
        _ = try loss(backward: true)
        let h: Float = 1e-2
        var checked = 0, nonzero = 0
        for adapter in adapters where adapter.a.name.contains("layers.1.") || adapter.a.name.contains("q_proj") {
            for p in adapter.parameters {
                let i = Int(random.next() % UInt64(p.tensor.count))
                let original = p.tensor[i]
                p.tensor[i] = original + h
                let up = try loss(backward: false)
                p.tensor[i] = original - h
                let down = try loss(backward: false)
                p.tensor[i] = original
                let numeric = (up - down) / Double(2 * h)
                XCTAssertEqual(Double(p.gradient![i]), numeric, accuracy: 1e-4 + 2e-2 * abs(numeric), "\(p.name)[\(i)]")
                checked += 1
                if abs(numeric) > 1e-4 { nonzero += 1 }
            }
        }
        XCTAssertGreaterThan(checked, 10)
        XCTAssertGreaterThan(nonzero, 5, "the check must see real gradients")
    }

    func configuration(output: String) -> TrainingConfiguration {
        var c = TrainingConfiguration()
        c.rl = .grpo
        c.model = tiny.modelPath
        c.data = tiny.file("prompts.jsonl").path
        c.valid = tiny.file("prompts.jsonl").path
        c.output = tiny.file(output).path
        c.lora = LoRAConfiguration(rank: 4, alpha: 8, targets: ["all-linear"])
        c.batchSize = 4
        c.gradientAccumulation = 2
        c.learningRate = 1e-2
        c.maxSteps = 4
        c.seed = 7
        c.grpo.numGenerations = 4
        c.grpo.maxCompletionLength = 6
        c.grpo.beta = 0.05
        var length = RewardSpec(name: .length)
        length.target = 3
        c.grpo.rewards = [length, RewardSpec(name: .exactMatch, weight: 2)]
        return c
    }

    func metrics(_ output: String) throws -> [JSONValue] {
        try JSONLines.read(tiny.file(output).appendingPathComponent("metrics.jsonl")).map(\.value).filter { $0["loss"] != nil }
    }

    func testARunLogsTRLsMetricsAndResumesExactly() throws {
        let c = configuration(output: "straight")
        let straight = try Trainer(config: c, languageModel: try LanguageModel.load(tiny.modelPath))
        try straight.run()
        let expected = try metrics("straight")
        XCTAssertEqual(expected.count, 4)
        for key in ["reward", "reward_std", "rewards/length/mean", "rewards/exact_match/mean", "completions/mean_length",
                    "clip_ratio/region_mean", "kl"] {
            XCTAssertNotNil(expected[0][key]?.double, key)
        }
        XCTAssertNotNil(try JSONLines.read(tiny.file("straight").appendingPathComponent("metrics.jsonl")).last?.value["eval_reward"])

        let interruptedOutput = tiny.file("interrupted").path
        let resumed = try Trainer.resumedAfterKill(c, output: interruptedOutput, model: tiny.modelPath, checkpointAfter: 2)
        let after = try metrics("interrupted")
        XCTAssertEqual(after.map { $0["loss"] }, expected.suffix(2).map { $0["loss"] })
        XCTAssertEqual(after.map { $0["completions/mean_length"] }, expected.suffix(2).map { $0["completions/mean_length"] })
        XCTAssertEqual(resumed.trainable.flatMap { $0.tensor.array }, straight.trainable.flatMap { $0.tensor.array })
    }

    func testConfigurationsThatCannotRunAreNamed() throws {
        var c = configuration(output: "bad")
        c.grpo.numGenerations = 3
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("multiple of grpo.num_generations"), "\($0)") }
        // A batch smaller than the group (TRL's default group of 8, Lathe's batch of 4): one prompt a step.
        c.grpo.numGenerations = 16
        XCTAssertNoThrow(try c.validate())
        XCTAssertEqual(c.grpo.promptsPerStep(generationBatch: c.batchSize * c.gradientAccumulation), 1)
        c = configuration(output: "bad")
        c.grpo.rewards = []
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("--reward"), "\($0)") }
        let yaml = tiny.file("bad.yaml")
        try "rl: grpo\ngrpo:\n  rewards:\n    - name: json_matches\n".write(to: yaml, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TrainingConfiguration.load(yaml: yaml)) {
            XCTAssertTrue("\($0)".contains("unknown reward 'json_matches'"), "\($0)")
        }
    }

    func testARewardModelRewardScoresWithItsOwnAdapterOnTheSharedBase() throws {
        // A reward model adapter (LoRA + score head) written as `lathe reward` writes it.
        let rmFolder = tiny.file("rm")
        let donor = try LanguageModel.load(tiny.modelPath)
        let adapters = try donor.model.attachLoRA(LoRAConfiguration(rank: 2, alpha: 4), name: "default", seed: 4)
        var random = SeededGenerator(seed: 8)
        for adapter in adapters { for i in 0..<adapter.b.tensor.count { adapter.b.tensor[i] = random.nextUnitFloat() - 0.5 } }
        let head = ScoreHead(hiddenSize: donor.model.config.hiddenSize)
        head.initialize(standardDeviation: 1, seed: 5)
        try PEFTAdapter.save(donor.model, config: LoRAConfiguration(rank: 2, alpha: 4), heads: [head.weight],
                             baseModel: tiny.modelPath, to: rmFolder)

        var c = configuration(output: "rm-run")
        c.maxSteps = 1
        c.valid = nil
        var spec = RewardSpec(name: .rewardModel)
        spec.adapter = rmFolder.path
        c.grpo.rewards = [spec]
        let lm = try LanguageModel.load(tiny.modelPath)
        let trainer = try Trainer(config: c, languageModel: lm)
        try trainer.run()
        let step = try XCTUnwrap(try metrics("rm-run").first)
        let mean = try XCTUnwrap(step["rewards/reward_model/mean"]?.double)
        XCTAssertTrue(mean.isFinite && mean != 0, "\(mean)")
        // The reward model is an adapter of its own, frozen and off outside scoring; the policy's adapter trained.
        let rewardAdapters = lm.model.adapters.filter { $0.adapterName == "reward-reward_model" }
        XCTAssertFalse(rewardAdapters.isEmpty)
        XCTAssertTrue(rewardAdapters.allSatisfy { !$0.enabled && $0.parameters.allSatisfy { !$0.trainable } })
        XCTAssertFalse(trainer.trainable.contains { $0 === rewardAdapters[0].a })
    }
}
