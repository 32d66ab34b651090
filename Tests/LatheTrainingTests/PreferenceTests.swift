import Foundation
import XCTest
import LatheData
import LatheModels
import LatheTensors
import LatheTestSupport
@testable import LatheTraining

/// Preference objectives on a tiny model: gradients equal finite differences through the whole model, the reference
/// by switching adapters off is the base, a precomputed reference is the live one, and the shared loop's
/// accumulation, checkpoints and resume hold for them too.
final class PreferenceTests: TinyModelTestCase {
    var vocabulary: Int { lm.model.config.vocabularySize }

    /// Items with prompts and completions of different lengths (padding in every batch).
    func items(_ count: Int, unpaired: Bool = false, seed: UInt64 = 5) -> [PreferenceItem] {
        var random = SeededGenerator(seed: seed)
        func ids(_ n: Int) -> [Int] { (0..<n).map { _ in Int(random.next() % UInt64(vocabulary)) } }
        return (0..<count).map { i in
            let prompt = ids(2 + i % 3)
            if unpaired {
                return PreferenceItem(prompt: prompt, completions: [ids(2 + i % 4)], label: i % 3 != 1, mismatched: ids(3 + i % 2),
                                      source: "row \(i)")
            }
            return PreferenceItem(prompt: prompt, completions: [ids(2 + i % 4), ids(3 + (i + 1) % 3)], source: "row \(i)")
        }
    }

    /// A LoRA adapter with B non-zero, so that the policy differs from the reference and A has a gradient.
    func attachAdapter(to model: DecoderModel, seed: UInt64 = 9) throws -> [Parameter] {
        let adapters = try model.attachLoRA(LoRAConfiguration(rank: 2, alpha: 4, targets: ["all-linear"]), seed: seed)
        var random = SeededGenerator(seed: seed)
        for adapter in adapters {
            for i in 0..<adapter.b.tensor.count { adapter.b.tensor[i] = (random.nextUnitFloat() * 2 - 1) * 0.3 }
        }
        return adapters.flatMap(\.parameters)
    }

    static let objectives: [(String, PreferenceObjective)] = {
        func objective(_ method: PreferenceMethod, _ edit: (inout PreferenceOptions) -> Void = { _ in }) -> PreferenceObjective {
            var options = PreferenceOptions()
            options.beta = 0.5
            edit(&options)
            return PreferenceObjective(method: method, options: options)
        }
        return [
            ("dpo sigmoid", objective(.dpo)),
            ("dpo ipo", objective(.dpo) { $0.lossType = [.ipo] }),
            ("dpo hinge", objective(.dpo) { $0.lossType = [.hinge]; $0.beta = 0.1 }),
            ("dpo robust", objective(.dpo) { $0.lossType = [.robust]; $0.labelSmoothing = 0.2 }),
            ("dpo sigmoid+sft", objective(.dpo) { $0.lossType = [.sigmoid, .sft]; $0.lossWeights = [1, 0.5] }),
            ("orpo", objective(.orpo)),
            ("simpo", objective(.simpo) { $0.beta = 2; $0.cpoAlpha = 0.3 }),
            ("kto", objective(.kto) { $0.undesirableWeight = 1.5 }),
        ]
    }()

    func testEveryObjectivesGradientEqualsFiniteDifferencesThroughTheModel() throws {
        let parameters = try attachAdapter(to: lm.model)
        let scorer = PreferenceScorer(model: lm.model, reference: .adaptersOff)
        var random = SeededGenerator(seed: 17)
        let direction = parameters.map { p in (0..<p.tensor.count).map { _ in random.nextUnitFloat() * 2 - 1 } }
        for (name, objective) in Self.objectives {
            let builder = try PreferenceBatchBuilder(batchSize: 4, paddingID: 0, scoresPrompt: objective.scoresPrompt)
            let batch = try builder.batch(items(4, unpaired: objective.method.isUnpaired).map { [$0] })
            for p in parameters { p.zeroGradient() }
            let s = batch.sequences
            let activations = TrainingActivations(config: lm.model.config, batchSize: s.batchSize, length: s.length)
            _ = try scorer.lossAndGradient(objective, batch, scale: 1, activations: activations)
            var analytic = 0.0
            for (p, d) in zip(parameters, direction) {
                for i in 0..<p.tensor.count { analytic += Double(p.gradient![i]) * Double(d[i]) }
            }
            func loss(at h: Float) throws -> Double {
                for (p, d) in zip(parameters, direction) { for i in 0..<p.tensor.count { p.tensor[i] += h * d[i] } }
                defer { for (p, d) in zip(parameters, direction) { for i in 0..<p.tensor.count { p.tensor[i] -= h * d[i] } } }
                return try scorer.lossAndGradient(objective, batch, scale: 0, activations: nil).loss
            }
            // Central differences at h and h/2, extrapolated (Richardson) to cancel the h² term.
            func difference(_ h: Float) throws -> Double { (try loss(at: h) - loss(at: -h)) / Double(2 * h) }
            let h: Float = 4e-3
            let numeric = (4 * (try difference(h / 2)) - (try difference(h))) / 3
            XCTAssertGreaterThan(abs(analytic), 1e-4, "\(name): the gradient should not vanish")
            XCTAssertEqual(analytic, numeric, accuracy: 3e-3 * abs(numeric) + 1e-5, "\(name): directional derivative")
        }
    }

    func testReferenceWithTheAdapterSwitchedOffEqualsTheBaseLoadedAlone() throws {
        _ = try attachAdapter(to: lm.model)
        let batch = try PreferenceBatchBuilder(batchSize: 3, paddingID: 0).batch(items(3).map { [$0] })
        let switched = try PreferenceScorer(model: lm.model, reference: .adaptersOff).referenceSums(batch)
        let policy = try PreferenceScorer(model: lm.model, reference: .adaptersOff).sums(batch.sequences, kinds: batch.kinds)
        let base = try LanguageModel.load(tiny.modelPath).model
        let alone = try PreferenceScorer(model: base, reference: nil).sums(batch.sequences, kinds: batch.kinds)
        XCTAssertEqual(switched, alone)
        XCTAssertNotEqual(policy, alone, "the adapter is back on after the reference pass")
    }

    func testPrecomputedReferenceGivesTheLiveLossAndMetrics() throws {
        _ = try attachAdapter(to: lm.model)
        for unpaired in [false, true] {
            let objective = PreferenceObjective(method: unpaired ? .kto : .dpo, options: PreferenceOptions())
            let builder = try PreferenceBatchBuilder(batchSize: 3, paddingID: 0)
            let scorer = PreferenceScorer(model: lm.model, reference: .adaptersOff)
            let live = items(6, unpaired: unpaired)
            let precomputed = try scorer.withReferenceLogProbabilities(live, builder: builder)
            XCTAssertTrue(precomputed.allSatisfy { $0.reference?.count == (unpaired ? 2 : 2) })
            for (a, b) in zip(try builder.batches(live), try builder.batches(precomputed)) {
                XCTAssertNil(a.reference)
                let x = try scorer.lossAndGradient(objective, a, scale: 0, activations: nil)
                let y = try scorer.lossAndGradient(objective, b, scale: 0, activations: nil)
                XCTAssertEqual(x.loss, y.loss, accuracy: 1e-12)
                XCTAssertEqual(x.metrics, y.metrics)
            }
        }
    }

    func testLossTypeIsANameOrAListAndAnUnknownNameIsNamed() throws {
        func load(_ yaml: String) throws -> TrainingConfiguration {
            let url = tiny.file("run-\(UUID().uuidString).yaml")
            try yaml.write(to: url, atomically: true, encoding: .utf8)
            return try TrainingConfiguration.load(yaml: url)
        }
        XCTAssertEqual(try load("preference:\n  loss_type: ipo\n").preference.lossType, [.ipo])
        XCTAssertEqual(try load("preference:\n  loss_type: [sigmoid, sft]\n").preference.lossType, [.sigmoid, .sft])
        XCTAssertThrowsError(try load("preference:\n  loss_type: [sigmoid, nope]\n")) { error in
            XCTAssertTrue("\(error)".contains("preference.loss_type': unknown loss 'nope'; one of sigmoid"), "\(error)")
        }
    }

    // MARK: The shared loop

    func writeData(unpaired: Bool = false) throws -> URL {
        let words = ["the", "theory", "an", "inn", "on", "river", "then", "tea", "art"]
        var lines: [String] = []
        for i in 0..<12 {
            let prompt = (0...(i % 3)).map { words[($0 * 2 + i) % words.count] }.joined(separator: " ")
            let chosen = " " + (0...(i % 2)).map { words[($0 + i) % words.count] }.joined(separator: " ")
            let rejected = " " + (0...(1 + i % 3)).map { words[($0 * 5 + i) % words.count] }.joined(separator: " ")
            if unpaired {
                lines.append(#"{"prompt": "\#(prompt)", "completion": "\#(chosen)", "label": true}"#)
                lines.append(#"{"prompt": "\#(prompt)", "completion": "\#(rejected)", "label": false}"#)
            } else {
                lines.append(#"{"prompt": "\#(prompt)", "chosen": "\#(chosen)", "rejected": "\#(rejected)"}"#)
            }
        }
        let url = tiny.file(unpaired ? "kto.jsonl" : "pairs.jsonl")
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func configuration(_ method: PreferenceMethod, _ edit: (inout TrainingConfiguration) -> Void = { _ in }) throws -> TrainingConfiguration {
        var c = TrainingConfiguration()
        c.model = tiny.modelPath
        c.objective = method
        c.data = try writeData(unpaired: method.isUnpaired).path
        c.output = tiny.file("run-\(UUID().uuidString)").path
        c.lora = LoRAConfiguration(rank: 4, alpha: 8, targets: ["all-linear"])
        c.learningRate = 1e-2
        c.seed = 3
        edit(&c)
        return c
    }

    func metricLines(_ output: String) throws -> [[String: JSONValue]] {
        try JSONLines.read(URL(fileURLWithPath: output).appendingPathComponent("metrics.jsonl")).compactMap(\.value.object)
    }

    func testEveryMethodTrainsOnTheSharedLoopAndLogsTRLsMetricNames() throws {
        for method in PreferenceMethod.allCases {
            let c = try configuration(method) { $0.epochs = 3; $0.batchSize = 4; $0.valid = $0.data; $0.schedule = .constant }
            let trainer = try Trainer(config: c, languageModel: try LanguageModel.load(tiny.modelPath))
            try trainer.run()
            let lines = try metricLines(c.output!)
            let steps = lines.filter { $0["loss"] != nil }, evals = lines.filter { $0["eval_loss"] != nil }
            XCTAssertEqual(steps.count, trainer.totalSteps, "\(method)")
            var keys = ["rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"]
            if method != .kto { keys.append("rewards/accuracies") }
            if method == .orpo { keys += ["nll_loss", "log_odds_ratio", "log_odds_chosen"] }
            if method == .kto { keys.append("kl") }
            for key in keys {
                XCTAssertNotNil(steps.last?[key], "\(method): \(key) in a step line")
                XCTAssertNotNil(evals.last?["eval_" + key], "\(method): eval_\(key) in a validation line")
            }
            XCTAssertEqual(evals.map { $0["step"]?.double }, [0, Double(trainer.totalSteps)], "\(method)")
            let first = evals.first?["eval_loss"]?.double ?? 0, last = evals.last?["eval_loss"]?.double ?? 0
            XCTAssertLessThan(last, first, "\(method): the held-out loss goes down on the training pairs")
            XCTAssertNoThrow(try PEFTAdapter.load(URL(fileURLWithPath: c.output!), into: try LanguageModel.load(tiny.modelPath).model))
        }
    }

    func testAccumulatingTwoTimesTwoPairsEqualsOneBatchOfFour() throws {
        func gradient(batch: Int, accumulation: Int) throws -> [Float] {
            let c = try configuration(.dpo) { $0.batchSize = batch; $0.gradientAccumulation = accumulation; $0.maxSteps = 1 }
            let trainer = try Trainer(config: c, languageModel: try LanguageModel.load(tiny.modelPath))
            for p in trainer.trainable { p.zeroGradient() }
            // B is zero at the start: move it so that the policy differs from the reference.
            for p in trainer.trainable where p.name.hasSuffix("lora_B.weight") { for i in 0..<p.tensor.count { p.tensor[i] = 0.01 * Float(i % 7) } }
            _ = try trainer.task.accumulate(microBatches: accumulation) { TrainingActivations(config: trainer.languageModel.model.config, batchSize: $0, length: $1) }
            return trainer.trainable.flatMap { $0.gradient!.array }
        }
        let accumulated = try gradient(batch: 2, accumulation: 2), whole = try gradient(batch: 4, accumulation: 1)
        let worst = zip(accumulated, whole).map { abs($0 - $1) }.max() ?? 0
        let scale = whole.map { abs($0) }.max() ?? 0
        XCTAssertGreaterThan(scale, 0)
        XCTAssertLessThanOrEqual(worst, 1e-5 * scale + 1e-9, "largest gradient difference \(worst) of \(scale)")
    }

    func testResumedDPORunContinuesWithTheSameLossCurve() throws {
        let c = try configuration(.dpo) { $0.epochs = 2; $0.batchSize = 3; $0.saveEvery = 2; $0.lora.dropout = 0.1 }
        let straight = try Trainer(config: c, languageModel: try LanguageModel.load(tiny.modelPath))
        try straight.run()
        let expected = try metricLines(c.output!).compactMap { $0["loss"]?.double }
        let interruptedOutput = tiny.file("interrupted").path
        let resumed = try Trainer.resumedAfterKill(c, output: interruptedOutput, model: tiny.modelPath, checkpointAfter: 3)
        XCTAssertEqual(try metricLines(interruptedOutput).compactMap { $0["loss"]?.double }, Array(expected.suffix(from: 3)))
        XCTAssertEqual(resumed.trainable.flatMap { $0.tensor.array }, straight.trainable.flatMap { $0.tensor.array })
    }

    func testFullFineTuningDPOPrecomputesTheReferenceFromTheStartingWeights() throws {
        let c = try configuration(.dpo) { $0.method = .full; $0.maxSteps = 3; $0.batchSize = 4; $0.learningRate = 1e-3 }
        let lm = try LanguageModel.load(tiny.modelPath)
        let trainer = try Trainer(config: c, languageModel: lm)
        let task = try XCTUnwrap(trainer.task as? PreferenceTask)
        XCTAssertTrue(task.iterator.examples.allSatisfy { $0.reference?.count == 2 }, "no reference weights: precomputed")
        try trainer.run()
        let lines = try metricLines(c.output!).filter { $0["loss"] != nil }
        XCTAssertEqual(lines.first?["rewards/margins"]?.double ?? .nan, 0, accuracy: 1e-6, "policy = reference at the first step")
        XCTAssertNotEqual(lines.last?["rewards/margins"]?.double ?? 0, 0, "the weights moved away from the precomputed reference")
    }

    func testStartingFromAnAdapterTrainsItAndKeepsAFrozenCopyAsTheReference() throws {
        // An "SFT adapter" with non-zero B.
        let sft = tiny.file("sft")
        let model = try LanguageModel.load(tiny.modelPath).model
        _ = try attachAdapter(to: model)
        let shape = LoRAConfiguration(rank: 2, alpha: 4, targets: ["all-linear"])
        try PEFTAdapter.save(model, config: shape, baseModel: tiny.modelPath, to: sft)
        let c = try configuration(.dpo) { $0.adapter = sft.path; $0.maxSteps = 2; $0.batchSize = 4 }
        let lm = try LanguageModel.load(tiny.modelPath)
        let trainer = try Trainer(config: c, languageModel: lm)
        let reference = lm.model.adapters.filter { $0.adapterName == Trainer.referenceAdapterName }
        let frozen = reference.flatMap { $0.parameters.map(\.tensor.array) }
        XCTAssertEqual(frozen, model.adapters.flatMap { $0.parameters.map(\.tensor.array) }, "the reference is the SFT adapter")
        try trainer.run()
        let lines = try metricLines(c.output!)
        XCTAssertEqual(lines.first { $0["loss"] != nil }?["rewards/margins"]?.double, 0, "policy = reference at the first step")
        XCTAssertEqual(reference.flatMap { $0.parameters.map(\.tensor.array) }, frozen, "the reference stays frozen")
        XCTAssertNotEqual(trainer.trainable.map(\.tensor.array), model.adapters.flatMap { $0.parameters.map(\.tensor.array) })
        let saved = try LanguageModel.load(tiny.modelPath)
        let loaded = try PEFTAdapter.load(URL(fileURLWithPath: c.output!), into: saved.model)
        XCTAssertEqual([loaded.rank, loaded.targets.count], [shape.rank, shape.targetModules(in: saved.model.config.family).count], "the adapter keeps the SFT shape")
    }
}
