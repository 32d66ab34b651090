import Foundation
import XCTest
import LatheData
import LatheModels
import LatheTensors
import LatheTestSupport
@testable import LatheTraining

/// The training loop on a tiny model: it learns, accumulation is token-weighted, and a resumed run continues
/// exactly where an uninterrupted one would be.
final class TrainerTests: XCTestCase {
    var tiny: TinyModelFolder!
    var folder: URL { tiny.folder }
    var modelPath: String { tiny.modelPath }

    override func setUpWithError() throws {
        tiny = try TinyModelFolder()
        // Prompts and completions of different lengths, so that batches need padding.
        var lines: [String] = []
        let words = ["the", "theory", "an", "inn", "on", "river", "then", "tea", "art"]
        for i in 0..<16 {
            let prompt = (0...(i % 4)).map { words[($0 * 3 + i) % words.count] }.joined(separator: " ")
            let completion = " " + (0...(i % 3)).map { words[($0 + i) % words.count] }.joined(separator: " ")
            lines.append(#"{"prompt": "\#(prompt)", "completion": "\#(completion)"}"#)
        }
        try lines.joined(separator: "\n").write(to: folder.appendingPathComponent("train.jsonl"), atomically: true, encoding: .utf8)
    }

    override func tearDownWithError() throws { tiny.remove() }

    func configuration(_ edit: (inout TrainingConfiguration) -> Void) -> TrainingConfiguration {
        var c = TrainingConfiguration()
        c.model = modelPath
        c.data = folder.appendingPathComponent("train.jsonl").path
        c.output = folder.appendingPathComponent("run-\(UUID().uuidString)").path
        c.lora = LoRAConfiguration(rank: 4, alpha: 8, targets: ["all-linear"])
        c.learningRate = 1e-2
        c.seed = 3
        edit(&c)
        return c
    }

    func losses(_ output: String) throws -> [Double] {
        try JSONLines.read(URL(fileURLWithPath: output).appendingPathComponent("metrics.jsonl"))
            .compactMap { $0.value["loss"]?.double }
    }

    func testLoRATrainingLowersTheLossAndWritesAPEFTAdapter() throws {
        let c = configuration { $0.epochs = 8; $0.batchSize = 4; $0.schedule = .constant }
        let trainer = try Trainer(config: c, languageModel: try LanguageModel.load(modelPath))
        try trainer.run()
        let curve = try losses(c.output!)
        XCTAssertEqual(curve.count, 32)
        XCTAssertLessThan(curve.suffix(4).reduce(0, +), 0.7 * curve.prefix(4).reduce(0, +), "loss curve \(curve)")
        let lm = try LanguageModel.load(modelPath)
        XCTAssertNoThrow(try PEFTAdapter.load(URL(fileURLWithPath: c.output!), into: lm.model))
        XCTAssertEqual(try TrainingConfiguration.load(yaml: URL(fileURLWithPath: c.output!).appendingPathComponent("config.yaml")), c)
    }

    func testAccumulatingFourTimesTwoEqualsOneBatchOfEight() throws {
        func trainOneStep(batch: Int, accumulation: Int) throws -> [Float] {
            let c = configuration { $0.batchSize = batch; $0.gradientAccumulation = accumulation; $0.maxSteps = 1 }
            let trainer = try Trainer(config: c, languageModel: try LanguageModel.load(modelPath))
            _ = try trainer.trainStep()
            return trainer.trainable.flatMap { $0.tensor.array }
        }
        let accumulated = try trainOneStep(batch: 2, accumulation: 4)
        let whole = try trainOneStep(batch: 8, accumulation: 1)
        let worst = zip(accumulated, whole).map { abs($0 - $1) }.max() ?? 0
        // AdamW's first step moves each weight by about lr·sign(g) whatever |g|, so float summation-order noise in
        // near-zero gradients shows up to ~1e-3 of the step (lr = 1e-2): 1e-5 absolute.
        XCTAssertLessThanOrEqual(worst, 1e-5, "largest parameter difference \(worst)")
        let fresh = try trainOneStep(batch: 8, accumulation: 1)
        XCTAssertEqual(fresh, whole, "same seed, same update")
    }

    func testResumedRunContinuesWithTheSameLossCurve() throws {
        let c = configuration { $0.epochs = 2; $0.batchSize = 3; $0.saveEvery = 2; $0.lora.dropout = 0.1 }
        let straight = try Trainer(config: c, languageModel: try LanguageModel.load(modelPath))
        try straight.run()
        let expected = try losses(c.output!)

        // A second run that stops after its first checkpoint (as if killed), then resumes in a new process state.
        let interruptedOutput = folder.appendingPathComponent("interrupted").path
        let resumed = try Trainer.resumedAfterKill(c, output: interruptedOutput, model: modelPath, checkpointAfter: 3)
        XCTAssertEqual(resumed.step, straight.step)
        XCTAssertEqual(Array(try losses(interruptedOutput)), Array(expected.suffix(from: 3)), "losses after the resume point")
        XCTAssertEqual(resumed.trainable.flatMap { $0.tensor.array }, straight.trainable.flatMap { $0.tensor.array })
    }

    func testTensorBoardEventsHoldMetricsJSONLValuesAcrossAResume() throws {
        let c = configuration { $0.maxSteps = 4; $0.saveEvery = 2; $0.evalEvery = 2; $0.valid = $0.data; $0.batchSize = 4 }
        try Trainer(config: c, languageModel: try LanguageModel.load(modelPath)).run()
        // Resumed from its step-2 checkpoint, as after a kill at step 4: steps 3-4 go to a second file.
        try Trainer(config: c, languageModel: try LanguageModel.load(modelPath)).run(resume: true)
        let output = URL(fileURLWithPath: c.output!)
        let board = try TensorBoardEventReader.scalars(inRun: output)
        var expected: [String: [Int: Float]] = [:]
        for line in try JSONLines.read(output.appendingPathComponent("metrics.jsonl")) {
            guard let step = line.value["step"]?.int else { return XCTFail("a line without its step") }
            for (key, value) in line.value.object ?? [:] where !["step", "total_steps", "eta_s"].contains(key) {
                expected[TensorBoardLog.tag(forMetric: key), default: [:]][step] = value.double.map { Float($0) }
            }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: output.appendingPathComponent("tb").path).count, 2)
        XCTAssertEqual(Set(board.keys), ["train/loss", "train/learning_rate", "train/grad_norm", "train/tokens", "train/tokens_per_s", "eval/loss"])
        XCTAssertEqual(board["train/loss"].map { $0.keys.sorted() }, [1, 2, 3, 4])
        XCTAssertEqual(board["eval/loss"].map { $0.keys.sorted() }, [0, 2, 4])
        // metrics.jsonl keeps both attempts at steps 3-4 (the last wins here), TensorBoard the resumed one.
        for (tag, values) in expected {
            XCTAssertEqual(board[tag], values, tag)
        }
    }

    func testFullFineTuningUpdatesEveryWeightAndExportsTheModel() throws {
        let c = configuration { $0.method = .full; $0.maxSteps = 2; $0.learningRate = 1e-3 }
        let lm = try LanguageModel.load(modelPath)
        let before = lm.model.parameters.map { $0.tensor.array }
        let trainer = try Trainer(config: c, languageModel: lm)
        try trainer.run()
        let changed = zip(before, lm.model.parameters).filter { $0 != $1.tensor.array }.count
        XCTAssertEqual(changed, lm.model.parameters.count)
        let exported = try LanguageModel.load(URL(fileURLWithPath: c.output!).appendingPathComponent("model.gguf").path)
        XCTAssertEqual(exported.model.parameters.map { $0.tensor.array }, lm.model.parameters.map { $0.tensor.array })
    }

    func testThreadsKeyTakesAutoOrACountAndRoundTrips() throws {
        XCTAssertEqual(TrainingConfiguration().threads, .auto)
        let yaml = folder.appendingPathComponent("threads.yaml")
        for (text, setting) in [("threads: auto\n", ThreadSetting.auto), ("threads: 3\n", .count(3))] {
            try text.write(to: yaml, atomically: true, encoding: .utf8)
            let c = try TrainingConfiguration.load(yaml: yaml)
            XCTAssertEqual(c.threads, setting, text)
            try c.yaml().write(to: yaml, atomically: true, encoding: .utf8)
            XCTAssertEqual(try TrainingConfiguration.load(yaml: yaml), c, "the resolved configuration reads back")
        }
        for text in ["threads: 0\n", "threads: many\n"] {
            try text.write(to: yaml, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try TrainingConfiguration.load(yaml: yaml), text) {
                XCTAssertTrue("\($0)".contains("threads"), "\($0)")
            }
        }
    }

    func testBadConfigurationsAreNamed() throws {
        let yaml = folder.appendingPathComponent("bad.yaml")
        try "epochs: many\n".write(to: yaml, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TrainingConfiguration.load(yaml: yaml)) { XCTAssertTrue("\($0)".contains("epochs"), "\($0)") }
        try "learning_rat: 0.1\n".write(to: yaml, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TrainingConfiguration.load(yaml: yaml)) { XCTAssertTrue("\($0)".contains("learning_rat"), "\($0)") }
        try "lora:\n  rnak: 4\n".write(to: yaml, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TrainingConfiguration.load(yaml: yaml)) { XCTAssertTrue("\($0)".contains("lora.rnak"), "\($0)") }
        try "report_to: wandb\n".write(to: yaml, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TrainingConfiguration.load(yaml: yaml)) { XCTAssertTrue("\($0)".contains("report_to"), "\($0)") }
        try "report_to: none\n".write(to: yaml, atomically: true, encoding: .utf8)
        XCTAssertEqual(try TrainingConfiguration.load(yaml: yaml).reportTo, ReportTarget.none)
        XCTAssertThrowsError(try configuration { $0.batchSize = 0 }.validate()) { XCTAssertTrue("\($0)".contains("batch_size"), "\($0)") }
        XCTAssertThrowsError(try configuration { $0.lora.targets = ["attention"] }.validate()) { XCTAssertTrue("\($0)".contains("attention"), "\($0)") }
        let missing = configuration { $0.data = self.folder.appendingPathComponent("none.jsonl").path }
        XCTAssertThrowsError(try Trainer(config: missing, languageModel: try LanguageModel.load(modelPath))) {
            XCTAssertTrue("\($0)".contains("none.jsonl"), "\($0)")
        }
    }
}

/// Ten AdamW steps of full fine-tuning on the tiny Llama: the losses equal PyTorch's (scripts/reference/training.py).
final class TenStepsAgainstPyTorchTests: XCTestCase {
    struct Reference: Decodable { let ids: [[Int]]; let targets: [[Int]]; let valid: [[Bool]] }
    struct Losses: Decodable { let losses: [Double] }

    func testTenAdamWStepsGiveTorchsLosses() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures")
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: root.appendingPathComponent("training/batch.json")))
        let expected = try JSONDecoder().decode(Losses.self, from: Data(contentsOf: root.appendingPathComponent("training/tiny-llama-adamw.json")))
        let model = try ModelFiles.open(root.appendingPathComponent("models/tiny-llama")).loadModel()
        for p in model.parameters { p.trainable = true }
        let batch = Batch(rows: reference.ids, targets: reference.targets, valid: reference.valid)
        let activations = TrainingActivations(config: model.config, batchSize: batch.batchSize, length: batch.length)
        let optimizer = try AdamW(weightDecay: 0.01)
        var losses: [Double] = []
        for _ in 0..<10 {
            for p in model.parameters { p.zeroGradient() }
            let (sum, count) = try languageModelLoss(model, batch: batch, activations: activations, scale: 1 / Float(batch.tokenCount))
            losses.append(sum / Double(count))
            try optimizer.step(model.parameters, learningRate: 1e-3)
        }
        let worst = zip(losses, expected.losses).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(worst, 2e-4, "losses \(losses) vs torch \(expected.losses)")
        XCTAssertLessThan(losses[9], losses[0] * 0.6)
    }
}
