import Foundation
import XCTest
import LatheData
import LatheEval
@testable import LatheModels
import LatheTensors
import LatheTestSupport
@testable import LatheTraining

/// The memory plan against what real training steps allocate: a small llama is trained for two steps in each
/// setting and the most bytes its tensors (plus the compact weights and the LM head's chunk, which live outside
/// `Tensor`) held at once must match the plan's training bytes within 10%.
final class MemoryPlanTests: XCTestCase {
    /// Small, but with every term of a real model present and none dwarfing the others.
    func configuration(tied: Bool) -> DecoderConfiguration {
        DecoderConfiguration(vocabularySize: 300, hiddenSize: 64, intermediateSize: 160, layerCount: 3, headCount: 4,
                           kvHeadCount: 2, tieWordEmbeddings: tied, maxPositions: 128)
    }

    struct Measurement {
        /// The peak of the step's own bytes: tensors created after the measurement began, compact weights, and the
        /// LM head's logits chunk.
        let trainingBytes: Int
        /// The peak of tensor bytes while the model was built and its base compressed.
        let loadingTensorBytes: Int
    }

    /// Builds the model as `lathe bench sft` does, runs two optimizer steps and measures the peaks.
    func measure(_ plan: MemoryPlan, optimizer: OptimizerConfiguration, base: WeightFormat) throws -> Measurement {
        try allocateTileScratch()
        let liveBefore = TensorMemory.liveBytes
        TensorMemory.resetPeak()
        let model = DecoderModel(config: plan.config)
        model.initializeRandomly(seed: 5)
        var trainable: [Parameter]
        switch plan.method {
        case .full:
            for p in model.parameters { p.trainable = true }
            trainable = model.parameters
            if base != .float32 { try model.keepCompactCopies(base) }
        case .lora, .qlora:
            // Compressed first, as loading does, then the adapters.
            try model.compressWeights(to: base)
            let adapters = try model.attachLoRA(plan.lora, seed: 1)
            for adapter in adapters { adapter.training = true }
            trainable = adapters.flatMap(\.parameters)
        }
        let loadingPeak = TensorMemory.peakBytes - liveBefore
        // A reward model's score head, trained with the adapters (RewardTask's step).
        let score = plan.head == .score ? ScoreHead(hiddenSize: plan.config.hiddenSize) : nil
        if let score {
            score.initialize(seed: 2)
            score.weight.trainable = true
            trainable.append(score.weight)
        }
        let optimizer = try optimizer.make()
        var random = SeededGenerator(seed: 9)
        let rows = (0..<plan.batchSize).map { _ in
            (0..<plan.length).map { _ in Int(random.next() % UInt64(plan.config.vocabularySize)) }
        }
        let batch = Batch(rows: rows, targets: rows.map { Array($0.dropFirst()) + [-1] })
        let activations = TrainingActivations(config: plan.config, batchSize: plan.batchSize, length: plan.length,
                                              checkpointing: plan.gradientCheckpointing)
        TensorMemory.resetPeak()
        for _ in 0..<2 {
            for p in trainable { p.zeroGradient() }
            if let score {
                let hidden = try model.finalHiddenStates(tokens: batch.inputs, batchSize: batch.batchSize, saving: activations)
                let rows = (0..<batch.batchSize).map { $0 * batch.length + batch.length - 1 }
                let dHidden = Tensor(zeros: hidden.shape)
                score.backward(hidden: hidden, rows: rows, scoreGradient: score.scores(hidden, rows: rows), dHidden: dHidden)
                model.backward(activations: activations, finalHiddenGradient: dHidden)
            } else {
                _ = try languageModelLoss(model, batch: batch, activations: activations, scale: 1 / Float(batch.tokenCount))
            }
            _ = clipGradientNorm(trainable, maxNorm: 1)
            try optimizer.step(trainable, learningRate: 1e-3)
            if plan.method == .full, base != .float32 { try model.keepCompactCopies(base) }
        }
        let head = model.headWorkspace
        let outsideTensors = (model.compactWeightSummary?.bytes ?? 0) + (head.logitsCapacity + 2 * head.rowsCapacity) * 4
        return Measurement(trainingBytes: TensorMemory.peakBytes - liveBefore + outsideTensors,
                           loadingTensorBytes: loadingPeak)
    }

    /// The compact products' tile scratch lives for the whole process: grown to its largest here, before any
    /// measurement, so that no test's peak depends on whether an earlier test already made it.
    func allocateTileScratch() throws {
        let columns = 4096, rows = CompactWeightTiles.rowsPerTile(columns: columns)  // the largest tile the tests make
        let weight = try [Float](repeating: 0.5, count: rows * columns).withUnsafeBufferPointer {
            try BF16Weight(rows: rows, columns: columns, values: $0)
        }
        var output = [Float](repeating: 0, count: 8 * rows)
        weight.tiledMultiplyTransposed([Float](repeating: 1, count: 8 * columns), rows: 8, into: &output, accumulate: false)
    }

    func assertPlanMatches(_ plan: MemoryPlan, optimizer: OptimizerConfiguration = .init(kind: .adamw),
                           base: WeightFormat = .float32, file: StaticString = #filePath, line: UInt = #line) throws {
        let measured = try measure(plan, optimizer: optimizer, base: base)
        // The compact base's scratch lives for the whole process (the tile buffer was made before measuring;
        // oneDNN's bf16 buffer is not a Tensor): the step's own bytes are compared without it.
        let planned = plan.trainingBytes - plan.compactScratchBytes
        let ratio = Double(planned) / Double(measured.trainingBytes)
        XCTAssertEqual(ratio, 1, accuracy: 0.10, """
            \(plan.method) checkpointing=\(plan.gradientCheckpointing): planned \(planned) bytes, measured \
            \(measured.trainingBytes) (ratio \(ratio)); weights \(plan.weightBytes), gradients \(plan.gradientBytes), \
            optimizer \(plan.optimizerBytes), activations \(plan.activationBytes), workspace \(plan.workspaceBytes)
            """, file: file, line: line)
    }

    func testARewardModelsStepMatchesTheMeasuredPeak() throws {
        let lora = LoRAConfiguration(rank: 4, alpha: 8, targets: ["all-linear"])
        try assertPlanMatches(MemoryPlan(config: configuration(tied: true), method: .lora, batchSize: 4, length: 40, lora: lora, head: .score))
        try assertPlanMatches(MemoryPlan(config: configuration(tied: false), method: .lora, batchSize: 2, length: 64, lora: lora,
                                         gradientCheckpointing: true, head: .score))
    }

    /// An RL stage's steps through `Trainer` on a tiny model with a tokenizer, started from an SFT adapter (its
    /// frozen copy the reference): the peak of two steps (the second samples while the first's activations are
    /// kept) against the plan's training bytes, which must be within 5%.
    func assertRLPlanMatches(_ stage: MemoryPlan.Rollouts.Stage, file: StaticString = #filePath, line: UInt = #line) throws {
        let tiny = try TinyModelFolder()
        defer { tiny.remove() }
        try TinyModel.write(to: URL(fileURLWithPath: tiny.modelPath), hidden: 64, layers: 3, intermediate: 160)
        // Conversations of one token length, so that every update has the planned shape, and the reward model reads
        // the prompt as the policy did (the response as the assistant's turn).
        try (0..<8).map { #"{"messages": [{"role": "user", "content": "xq \#($0) wk"}]}"# }.joined(separator: "\n")
            .write(to: tiny.file("prompts.jsonl"), atomically: true, encoding: .utf8)
        let lora = LoRAConfiguration(rank: 4, alpha: 8, targets: ["all-linear"])
        let base = try LanguageModel.load(tiny.modelPath)
        _ = try base.model.attachLoRA(lora, seed: 3)
        try PEFTAdapter.save(base.model, config: lora, baseModel: tiny.modelPath, to: tiny.file("sft"))
        let promptLength = try XCTUnwrap(try PromptDataset.load(tiny.file("prompts.jsonl"), model: base).map(\.ids.count).max())

        var c = TrainingConfiguration()
        c.model = tiny.modelPath
        c.adapter = tiny.file("sft").path
        c.data = tiny.file("prompts.jsonl").path
        c.output = tiny.file("run").path
        c.maxSteps = 2
        var rollouts: MemoryPlan.Rollouts, rows: Int
        switch stage {
        case .grpo:
            c.rl = .grpo
            c.batchSize = 4
            c.gradientAccumulation = 2
            c.grpo.numGenerations = 4
            c.grpo.maxCompletionLength = 10
            c.grpo.beta = 0.05
            var length = RewardSpec(name: .length)
            length.target = 3
            c.grpo.rewards = [length]
            rollouts = MemoryPlan.Rollouts(stage: .grpo, sequences: 8, promptLength: promptLength, newTokens: 10, scoringRows: 4,
                                           startsFromAdapter: true)
            rows = 4
        case .ppo:
            // The reward model: its own adapter and score head, saved as lathe reward saves them.
            let rewardLoRA = LoRAConfiguration(rank: 2, alpha: 4, targets: ["q_proj", "v_proj", "down_proj"])
            let rewardBase = try LanguageModel.load(tiny.modelPath)
            _ = try rewardBase.model.attachLoRA(rewardLoRA, name: "reward", seed: 4)
            let score = ScoreHead(hiddenSize: rewardBase.model.config.hiddenSize)
            score.initialize(seed: 5)
            try PEFTAdapter.save(rewardBase.model, adapterName: "reward", config: rewardLoRA, heads: [score.weight],
                                 baseModel: tiny.modelPath, to: tiny.file("rm"))
            // One update per rollout batch, so that the second step samples while the first's activations are kept.
            c.rl = .ppo
            c.batchSize = 4
            c.ppo.numMiniBatches = 1
            c.ppo.numPPOEpochs = 1
            c.ppo.responseLength = 10
            c.ppo.localRolloutForwardBatchSize = 2
            c.ppo.rewardModelPath = tiny.file("rm").path
            rollouts = MemoryPlan.Rollouts(stage: .ppo, sequences: 4, promptLength: promptLength, newTokens: 10, scoringRows: 2,
                                           startsFromAdapter: true, rewardModel: rewardLoRA)
            rows = 4
        }
        try allocateTileScratch()
        let liveBefore = TensorMemory.liveBytes
        let trainer = try Trainer(config: c, languageModel: try LanguageModel.load(tiny.modelPath))
        TensorMemory.resetPeak()
        for _ in 0..<2 { _ = try trainer.trainStep() }
        let head = trainer.languageModel.model.headWorkspace
        let measured = TensorMemory.peakBytes - liveBefore + (head.logitsCapacity + 2 * head.rowsCapacity) * 4
        // The tiny model's random tokens decode to text that tokenizes longer: the reward model's length (of the
        // second step's pass, the one with the first step's activations kept) is read from its adapters' products.
        if let rewardLoRA = rollouts.rewardModel,
           let adapter = trainer.languageModel.model.adapters.first(where: { $0.adapterName == "reward" }) {
            rollouts.rewardModelLength = adapter.projected.count / rewardLoRA.rank
                / min(MemoryPlan.Rollouts.rewardModelRows, rollouts.sequences)
        }
        let plan = MemoryPlan(config: trainer.languageModel.model.config, method: .lora, batchSize: rows,
                              length: promptLength + rollouts.newTokens, lora: lora, rollouts: rollouts)
        let ratio = Double(plan.trainingBytes) / Double(measured)
        XCTAssertEqual(ratio, 1, accuracy: 0.05, """
            \(stage): planned \(plan.trainingBytes) bytes, measured \(measured) (ratio \(ratio)); weights \(plan.weightBytes), \
            gradients \(plan.gradientBytes), optimizer \(plan.optimizerBytes), update \(plan.updateBytes), rollouts \(plan.rolloutBytes)
            """, file: file, line: line)
    }

    func testAGRPOStepMatchesTheMeasuredPeak() throws { try assertRLPlanMatches(.grpo) }

    func testAPPOStepMatchesTheMeasuredPeak() throws { try assertRLPlanMatches(.ppo) }

    func testFullFineTuningMatchesTheMeasuredPeak() throws {
        try assertPlanMatches(MemoryPlan(config: configuration(tied: true), method: .full, batchSize: 2, length: 48))
    }

    func testFullFineTuningOnBF16CopiesMatches() throws {
        try assertPlanMatches(MemoryPlan(config: configuration(tied: false), method: .full, batchSize: 2, length: 48,
                                         baseBytesPerValue: 2), base: .bfloat16)
    }

    func testFullFineTuningWithCheckpointingAndMomentumMatches() throws {
        try assertPlanMatches(MemoryPlan(config: configuration(tied: false), method: .full, batchSize: 2, length: 48,
                                         gradientCheckpointing: true, optimizer: .sgdMomentum),
                              optimizer: OptimizerConfiguration(kind: .sgd, momentum: 0.9))
    }

    func testLoRAMatchesTheMeasuredPeak() throws {
        let lora = LoRAConfiguration(rank: 4, alpha: 8, targets: ["all-linear"])
        try assertPlanMatches(MemoryPlan(config: configuration(tied: false), method: .lora, batchSize: 3, length: 40, lora: lora))
        try assertPlanMatches(MemoryPlan(config: configuration(tied: true), method: .lora, batchSize: 1, length: 96, lora: lora,
                                         gradientCheckpointing: true))
    }

    /// Gemma 3's optional stages (q/k norms, sandwich norms) keep their own activations and gradients.
    func testGemma3StagesMatchTheMeasuredPeak() throws {
        var c = configuration(tied: true)
        Gemma3Family.setRecipe(&c)
        c.slidingWindow = 8
        c.slidingLayers = [0, 2]
        let lora = LoRAConfiguration(rank: 4, alpha: 8, targets: ["all-linear"])
        try assertPlanMatches(MemoryPlan(config: c, method: .lora, batchSize: 2, length: 40, lora: lora))
        try assertPlanMatches(MemoryPlan(config: c, method: .full, batchSize: 2, length: 48))
    }

    func testLoRAWithDropoutMatches() throws {
        let lora = LoRAConfiguration(rank: 8, alpha: 16, dropout: 0.1, targets: ["q_proj", "v_proj", "down_proj"])
        try assertPlanMatches(MemoryPlan(config: configuration(tied: true), method: .lora, batchSize: 2, length: 32, lora: lora))
    }

    func testQLoRAMatchesTheMeasuredPeak() throws {
        let lora = LoRAConfiguration(rank: 4, alpha: 8, targets: ["all-linear"])
        try assertPlanMatches(MemoryPlan(config: configuration(tied: true), method: .qlora, batchSize: 2, length: 48, lora: lora),
                              base: .nf4)
        try assertPlanMatches(MemoryPlan(config: configuration(tied: false), method: .qlora, batchSize: 1, length: 64, lora: lora,
                                         gradientCheckpointing: true), base: .nf4)
    }

    /// LoRA on a bf16 base: the plan takes the base's bytes per value.
    func testLoRAOnABF16BaseMatches() throws {
        let plan = MemoryPlan(config: configuration(tied: true), method: .lora, batchSize: 2, length: 48,
                              lora: LoRAConfiguration(rank: 4, alpha: 8, targets: ["all-linear"]), baseBytesPerValue: 2)
        try assertPlanMatches(plan, base: .bfloat16)
        XCTAssertLessThan(plan.weightBytes, plan.config.parameterCount * 3, "a bf16 base must weigh about half of float32")
    }

    /// The weights of a model, served to `DecoderModel.load` as a file would.
    struct ModelWeights: WeightSource {
        let model: DecoderModel
        var tensorNames: [String] { model.parameters.map(\.name) }
        var description: String { "in-memory weights" }
        func read(_ name: String, shape: [Int], into destination: UnsafeMutableBufferPointer<Float>) throws {
            guard let parameter = model.parameters.first(where: { $0.name == name }) else {
                throw ModelError.missingWeight(file: description, name: name)
            }
            _ = destination.update(from: parameter.tensor.buffer)
        }
    }

    /// Loading a compact base never holds the float32 model whole: each weight bound for bf16 or NF4 has float32
    /// values only while it is read. The plan's loading term (without a runtime) matches the measured peak.
    func testLoadingACompactBaseMatchesThePlannedLoadPeak() throws {
        for (format, method) in [(WeightFormat.nf4, MemoryPlan.Method.qlora), (.bfloat16, .lora)] {
            let plan = MemoryPlan(config: configuration(tied: false), method: method, batchSize: 1, length: 8,
                                  baseBytesPerValue: format == .bfloat16 ? 2 : nil)
            let source = DecoderModel(config: plan.config)
            source.initializeRandomly(seed: 3)
            try allocateTileScratch()
            let liveBefore = TensorMemory.liveBytes
            TensorMemory.resetPeak()
            let model = DecoderModel(config: plan.config, weightFormat: format)
            try model.load(from: ModelWeights(model: source))
            let compact = try XCTUnwrap(model.compactWeightSummary)
            let measured = TensorMemory.peakBytes - liveBefore + compact.bytes
            let planned = plan.loadingBytes
            XCTAssertEqual(Double(planned) / Double(measured), 1, accuracy: 0.10, "\(format): planned \(planned), measured \(measured)")
            XCTAssertLessThan(measured, plan.config.parameterCount * 4 * 3 / 4, "\(format): the float32 model never exists whole")
        }
    }

    /// The serving plan against a real batch decoder: two adapters attached, more requests than slots, each prompt
    /// filling its slot's context but a few tokens, the base and both adapters mixed. The tensors' peak (weights
    /// aside) matches the plan's adapters, KV cache and passes within 10%, and it does not grow with the requests.
    func testServingPlanMatchesABatchDecodersPeak() throws {
        let config = configuration(tied: true)
        let model = DecoderModel(config: config)
        model.initializeRandomly(seed: 5)
        let slots = 4, context = 64
        func decode(requests: Int) throws -> Int {
            var generator = SeededGenerator(seed: 9)
            let prompts = (0..<requests).map { _ in (0..<context - 4).map { _ in Int(generator.next() % 300) } }
            let decoder = BatchDecoder(model: model, tokenizer: nil, stopTokenIDs: [], slots: slots, contextPerSlot: context)
            try decoder.decodeAll(prompts.enumerated().map { index, prompt in
                DecodeRequest(prompt: prompt, maxTokens: 4, adapter: [nil, "a", "b"][index % 3])
            }) { _, _ in }
            return TensorMemory.peakBytes
        }
        let liveBefore = TensorMemory.liveBytes
        TensorMemory.resetPeak()
        let lora = LoRAConfiguration(rank: 4, alpha: 8, targets: ["all-linear"])
        _ = try model.attachLoRA(lora, name: "a", seed: 1)
        _ = try model.attachLoRA(lora, name: "b", seed: 2)
        let measured = try decode(requests: 9) - liveBefore
        let plan = ServingPlan(config: config, weightBytes: 0, slots: slots, contextPerSlot: context, adapters: [lora, lora],
                               prefillTokenBudget: BatchDecoder.prefillTokenBudget)
        let planned = plan.servingBytes - plan.compactScratchBytes
        XCTAssertEqual(Double(planned) / Double(measured), 1, accuracy: 0.10, "planned \(planned), measured \(measured)")
        XCTAssertLessThanOrEqual(try decode(requests: 27) - liveBefore, measured + measured / 50, "three times the requests")
    }

    func testTermsFollowTheSettings() {
        let config = configuration(tied: true)
        let full = MemoryPlan(config: config, method: .full, batchSize: 2, length: 64)
        XCTAssertEqual(full.gradientBytes, config.parameterCount * 4)
        XCTAssertEqual(full.optimizerBytes, config.parameterCount * 8)
        let checkpointed = MemoryPlan(config: config, method: .full, batchSize: 2, length: 64, gradientCheckpointing: true)
        XCTAssertLessThan(checkpointed.activationBytes, full.activationBytes)
        let nf4 = MemoryPlan(config: config, method: .qlora, batchSize: 2, length: 64)
        XCTAssertEqual(nf4.baseBytesPerValue, 4.127 / 8, accuracy: 0.001)
        XCTAssertEqual(MemoryPlan.adamw8bitStateBytes(elements: 1000), 8000)
        XCTAssertEqual(MemoryPlan.adamw8bitStateBytes(elements: 4096), 2 * (4096 + 16 * 4))
        XCTAssertNoThrow(try MemoryPlan(config: config, method: .full, batchSize: 1, length: 8, baseBytesPerValue: 2).validate())
        XCTAssertThrowsError(try MemoryPlan(config: config, method: .full, batchSize: 1, length: 8,
                                            baseBytesPerValue: MemoryPlan.nf4BytesPerValue).validate())
        XCTAssertThrowsError(try MemoryPlan(config: config, method: .lora, batchSize: 0, length: 8).validate())
    }
}
