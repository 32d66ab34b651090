import Foundation
import XCTest
import LatheData
import LatheFormats
import LatheModels
import LatheTensors
import LatheTestSupport
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
        var full = config
        full.data = "pairs.jsonl"
        full.output = "out"
        XCTAssertNoThrow(try full.validate())
        full.method = .full
        XCTAssertThrowsError(try full.validate()) { XCTAssertTrue("\($0)".contains("method lora"), "\($0)") }
        try "reward:\n  center_reward: 0.01\n".write(to: url, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TrainingConfiguration.load(yaml: url)) { error in
            XCTAssertTrue("\(error)".contains("center_reward"), "\(error)")
        }
    }
}

/// Reward-model training on a tiny model: the whole task's gradient (LoRA and the score head) equals finite
/// differences, the shared loop trains it and logs TRL's names, and the result loads back as a `RewardModel`.
final class RewardTaskTests: TinyModelTestCase {
    func writeData(margins: Bool, name: String = "pairs.jsonl") throws -> URL {
        let words = ["the", "then", "an", "in", "on", "a thin", "other", "tan"]
        var lines: [String] = []
        for i in 0..<10 {
            let margin = margins ? ", \"margin\": \(Double(i % 3) * 0.5)" : ""
            lines.append(#"{"prompt": "say \#(words[i % 8])", "chosen": " \#(words[(i + 1) % 8]) \#(words[i % 8])", "rejected": " no"\#(margin)}"#)
        }
        let url = tiny.file(name)
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func configuration(margins: Bool = false, _ edit: (inout TrainingConfiguration) -> Void = { _ in }) throws -> TrainingConfiguration {
        var c = TrainingConfiguration()
        c.model = tiny.modelPath
        c.rl = .reward
        c.data = try writeData(margins: margins).path
        c.output = tiny.file("run-\(UUID().uuidString)").path
        c.lora = LoRAConfiguration(rank: 4, alpha: 8, targets: ["all-linear"])
        c.learningRate = 1e-2
        c.seed = 3
        edit(&c)
        return c
    }

    func testTheTasksGradientEqualsFiniteDifferencesThroughTheModelAndTheHead() throws {
        let saved = MatMul.backend
        MatMul.backend = ReferenceMatMulBackend()
        defer { MatMul.backend = saved }
        let c = try configuration(margins: true) { $0.batchSize = 4; $0.reward.centerRewardsCoefficient = 0.3 }
        let trainer = try Trainer(config: c, languageModel: lm)
        let task = try XCTUnwrap(trainer.task as? RewardTask)
        XCTAssertEqual(trainer.trainable.last?.name, "score.weight")
        var random = SeededGenerator(seed: 21)
        // B is zero at the start: move it so that A has a gradient; the head is drawn with std 0.02, make it larger.
        for p in trainer.trainable where !p.name.hasSuffix("lora_A.weight") {
            for i in 0..<p.tensor.count { p.tensor[i] = (random.nextUnitFloat() * 2 - 1) * 0.3 }
        }
        let batch = try task.iterator.next()
        XCTAssertNotNil(batch.margins)
        XCTAssertNotEqual(Set(batch.sequences.valid), [true], "the batch has padding")
        let direction = trainer.trainable.map { p in (0..<p.tensor.count).map { _ in random.nextUnitFloat() * 2 - 1 } }
        for p in trainer.trainable { p.zeroGradient() }
        let s = batch.sequences
        _ = try task.lossAndGradient(batch, scale: 1, activations: TrainingActivations(config: lm.model.config, batchSize: s.batchSize, length: s.length))
        func derivative(_ parameters: [(Parameter, [Float])]) throws -> (analytic: Double, numeric: Double) {
            var analytic = 0.0
            for (p, d) in parameters { for i in 0..<p.tensor.count { analytic += Double(p.gradient![i]) * Double(d[i]) } }
            func loss(at h: Float) throws -> Double {
                for (p, d) in parameters { for i in 0..<p.tensor.count { p.tensor[i] += h * d[i] } }
                defer { for (p, d) in parameters { for i in 0..<p.tensor.count { p.tensor[i] -= h * d[i] } } }
                return try task.lossAndGradient(batch, scale: 0, activations: nil).loss
            }
            func difference(_ h: Float) throws -> Double { (try loss(at: h) - loss(at: -h)) / Double(2 * h) }
            let h: Float = 4e-3
            return (analytic, (4 * (try difference(h / 2)) - (try difference(h))) / 3)
        }
        let all = Array(zip(trainer.trainable, direction))
        for (name, parameters) in [("LoRA", Array(all.dropLast())), ("head", [all.last!]), ("both", all)] {
            let (analytic, numeric) = try derivative(parameters)
            XCTAssertGreaterThan(abs(analytic), 1e-4, "\(name): the gradient should not vanish")
            XCTAssertEqual(analytic, numeric, accuracy: 3e-3 * abs(numeric) + 1e-5, "\(name): directional derivative")
        }
    }

    func testTrainingLogsTRLsNamesAndSavesASequenceClassificationAdapterThatScoresAlike() throws {
        let c = try configuration { $0.epochs = 3; $0.batchSize = 4; $0.valid = $0.data; $0.schedule = .constant }
        let trainer = try Trainer(config: c, languageModel: lm)
        try trainer.run()
        let lines = try JSONLines.read(URL(fileURLWithPath: c.output!).appendingPathComponent("metrics.jsonl")).compactMap(\.value.object)
        let steps = lines.filter { $0["loss"] != nil }, evals = lines.filter { $0["eval_loss"] != nil }
        XCTAssertEqual(steps.count, trainer.totalSteps)
        for key in ["accuracy", "margin", "min_reward", "mean_reward", "max_reward"] {
            XCTAssertNotNil(steps.last?[key], key)
            XCTAssertNotNil(evals.last?["eval_" + key], "eval_" + key)
        }
        let first = evals.first?["eval_loss"]?.double ?? 0, last = evals.last?["eval_loss"]?.double ?? 0
        XCTAssertLessThan(last, first, "the held-out loss goes down on the training pairs")
        XCTAssertGreaterThan(evals.last?["eval_accuracy"]?.double ?? 0, evals.first?["eval_accuracy"]?.double ?? 1)

        let folder = URL(fileURLWithPath: c.output!)
        let config = try JSONValue.parse(Data(contentsOf: folder.appendingPathComponent("adapter_config.json")))
        XCTAssertEqual(config["task_type"]?.string, "SEQ_CLS")
        XCTAssertEqual(config["modules_to_save"], .array([.string("score")]))
        let weights = try SafetensorsFile(url: folder.appendingPathComponent("adapter_model.safetensors"))
        XCTAssertEqual(weights.tensor(named: "base_model.model.score.weight")?.dimensions, [1, lm.model.config.hiddenSize])

        // The saved adapter on a fresh base gives the scores the trained task gives.
        let task = try XCTUnwrap(trainer.task as? RewardTask)
        let batch = try XCTUnwrap(task.validationBatches.first)
        let s = batch.sequences
        let hidden = try lm.model.finalHiddenStates(tokens: s.inputs, batchSize: s.batchSize, positions: s.positions, valid: s.valid)
        let trained = task.head.scores(hidden, rows: batch.scoredPositions)
        let fresh = try LanguageModel.load(tiny.modelPath)
        let reward = try RewardModel(adapter: folder, on: fresh.model)
        let sequences = (0..<s.batchSize).map { r in
            Array(s.inputs[r * s.length..<(r + 1) * s.length].prefix(s.valid[r * s.length..<(r + 1) * s.length].filter { $0 }.count))
        }
        let loaded = try reward.scores(sequences, padTokenID: fresh.padTokenID)
        for (a, b) in zip(loaded, trained) { XCTAssertEqual(a, b, accuracy: 1e-4) }
        XCTAssertEqual(loaded.count, trained.count)
    }

    func testAResumedRunContinuesWithTheSameLossCurveAndHead() throws {
        let c = try configuration(margins: true) { $0.epochs = 2; $0.batchSize = 3; $0.saveEvery = 2 }
        let straight = try Trainer(config: c, languageModel: try LanguageModel.load(tiny.modelPath))
        try straight.run()
        func losses(_ output: String) throws -> [Double] {
            try JSONLines.read(URL(fileURLWithPath: output).appendingPathComponent("metrics.jsonl")).compactMap { $0.value["loss"]?.double }
        }
        let expected = try losses(c.output!)
        let interruptedOutput = tiny.file("interrupted").path
        let resumed = try Trainer.resumedAfterKill(c, output: interruptedOutput, model: tiny.modelPath, checkpointAfter: 3)
        XCTAssertEqual(try losses(interruptedOutput), Array(expected.suffix(from: 3)))
        XCTAssertEqual(resumed.trainable.last?.tensor.array, straight.trainable.last?.tensor.array, "the score head")
        XCTAssertEqual(resumed.trainable.flatMap { $0.tensor.array }, straight.trainable.flatMap { $0.tensor.array })
    }

    func testMarginsMustBeNumbersOnEveryRowOrNoneAndLongPairsAreDropped() throws {
        let renderer = PreferenceRenderer(model: lm, maxLength: nil)
        let good = try writeData(margins: true)
        let (pairs, _) = try PreferenceDataset.loadRewardPairs(good, renderer: renderer, maxLength: nil)
        XCTAssertEqual(pairs.map(\.margin), (0..<10).map { Double($0 % 3) * 0.5 })
        XCTAssertEqual(pairs.first?.chosen.last, lm.tokenizer.eosTokenID, "text rows: EOS appended, as TRL")
        let lengths = pairs.map { max($0.chosen.count, $0.rejected.count) }.sorted()
        let limit = lengths[5]
        let (short, report) = try PreferenceDataset.loadRewardPairs(good, renderer: renderer, maxLength: limit)
        XCTAssertEqual(short.count, lengths.filter { $0 <= limit }.count)
        XCTAssertLessThan(short.count, 10)
        XCTAssertEqual(report.dropped[PreferenceDropReason.longerThanMaxLength.rawValue], 10 - short.count)
        XCTAssertTrue(short.allSatisfy { max($0.chosen.count, $0.rejected.count) <= limit }, "kept whole, never cut")

        let mixed = tiny.file("mixed.jsonl")
        try (#"{"prompt": "a", "chosen": " b", "rejected": " c", "margin": 1}"# + "\n" + #"{"prompt": "a", "chosen": " the", "rejected": " c"}"#)
            .write(to: mixed, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PreferenceDataset.loadRewardPairs(mixed, renderer: renderer, maxLength: nil)) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(mixed.path):2: missing field \"margin\""), "\(error)")
        }
        let text = tiny.file("text.jsonl")
        try #"{"prompt": "a", "chosen": " b", "rejected": " c", "margin": "big"}"#.write(to: text, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PreferenceDataset.loadRewardPairs(text, renderer: renderer, maxLength: nil)) { error in
            XCTAssertTrue("\(error)".contains("\(text.path):1"), "\(error)")
            XCTAssertTrue("\(error)".contains("field \"margin\" must be a number"), "\(error)")
        }
    }
}

/// Pairs tokenized with SmolLM2's tokenizer as TRL 1.16.0's RewardTrainer._prepare_dataset does (text and
/// conversational rows, scripts/reference/reward.py).
final class RewardTokenizationTests: XCTestCase {
    func testPairsAreTokenizedAsTRLsRewardTrainerDoes() throws {
        let lm = try LanguageModel.load(try DefaultModelFile.url().path)
        let fixture = try JSONValue.parse(Data(contentsOf: RewardObjectiveTests.folder.appendingPathComponent("smollm2_tokenized.json")))
        XCTAssertEqual(lm.padTokenID, fixture["pad_token_id"]?.int)
        let rows = fixture["rows"]?.array ?? []
        XCTAssertEqual(rows.count, 3)
        let folder = try Fixtures.temporaryFolder(for: self)
        for (i, row) in rows.enumerated() {
            let url = folder.appendingPathComponent("row\(i).jsonl")
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            try encoder.encode(row["row"]).write(to: url)
            let (pairs, _) = try PreferenceDataset.loadRewardPairs(url, renderer: PreferenceRenderer(model: lm, maxLength: nil), maxLength: nil)
            XCTAssertEqual(pairs.first?.chosen, row["chosen_ids"]?.array?.compactMap(\.int), "row \(i) chosen")
            XCTAssertEqual(pairs.first?.rejected, row["rejected_ids"]?.array?.compactMap(\.int), "row \(i) rejected")
        }
    }
}
