import Foundation
import XCTest
import LatheData
@testable import LatheModels
import LatheTensors
@testable import LatheTraining

/// The memory plan against what real training steps allocate: a small llama is trained for two steps in each
/// setting and the most bytes its tensors (plus the compact weights and the LM head's chunk, which live outside
/// `Tensor`) held at once must match the plan's training bytes within 10%.
final class MemoryPlanTests: XCTestCase {
    /// Small, but with every term of a real model present and none dwarfing the others.
    func configuration(tied: Bool) -> LlamaConfiguration {
        LlamaConfiguration(vocabularySize: 300, hiddenSize: 64, intermediateSize: 160, layerCount: 3, headCount: 4,
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
        let model = LlamaModel(config: plan.config)
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

    /// The weights of a model, served to `LlamaModel.load` as a file would.
    struct ModelWeights: WeightSource {
        let model: LlamaModel
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
            let source = LlamaModel(config: plan.config)
            source.initializeRandomly(seed: 3)
            try allocateTileScratch()
            let liveBefore = TensorMemory.liveBytes
            TensorMemory.resetPeak()
            let model = LlamaModel(config: plan.config, weightFormat: format)
            try model.load(from: ModelWeights(model: source))
            let compact = try XCTUnwrap(model.compactWeightSummary)
            let measured = TensorMemory.peakBytes - liveBefore + compact.bytes
            let planned = plan.loadingBytes
            XCTAssertEqual(Double(planned) / Double(measured), 1, accuracy: 0.10, "\(format): planned \(planned), measured \(measured)")
            XCTAssertLessThan(measured, plan.config.parameterCount * 4 * 3 / 4, "\(format): the float32 model never exists whole")
        }
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
