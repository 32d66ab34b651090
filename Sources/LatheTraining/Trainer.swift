import Foundation
import LatheData
import LatheFormats
import LatheModels
import LatheTensors

/// What a run reports as it goes.
public enum TrainingEvent: Sendable {
    case started(String)
    case step(TrainingStep)
    /// `metrics` with TRL's names: `eval_loss`, and the preference objectives' `eval_rewards/…`.
    case validation(step: Int, metrics: [String: Double])
    case checkpoint(step: Int, folder: String)
    case finished(String)
}

/// One optimizer step's numbers, as the progress line and metrics.jsonl show them; `metrics` are the method's own
/// (TRL's names: `rewards/chosen`, `logps/rejected`, `nll_loss`, `kl`…), written as keys of the same line.
public struct TrainingStep: Encodable, Sendable {
    public let step: Int
    public let totalSteps: Int
    public let loss: Double
    public let learningRate: Float
    public let gradNorm: Float?
    public let tokens: Int
    public let tokensPerSecond: Double
    public let secondsLeft: Double
    public let metrics: [String: Double]

    struct Key: CodingKey {
        let stringValue: String
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    /// The numbers a dashboard plots, under metrics.jsonl's keys (all but the step counts and the ETA).
    public var plottedValues: [String: Double] {
        var values = metrics
        values["loss"] = loss
        values["lr"] = Double(learningRate)
        values["grad_norm"] = gradNorm.map(Double.init)
        values["tokens"] = Double(tokens)
        values["tokens_per_s"] = tokensPerSecond
        return values
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(step, forKey: Key("step"))
        try c.encode(totalSteps, forKey: Key("total_steps"))
        try c.encode(loss, forKey: Key("loss"))
        try c.encode(learningRate, forKey: Key("lr"))
        try c.encodeIfPresent(gradNorm, forKey: Key("grad_norm"))
        try c.encode(tokens, forKey: Key("tokens"))
        try c.encode(tokensPerSecond, forKey: Key("tokens_per_s"))
        try c.encode(secondsLeft, forKey: Key("eta_s"))
        for (name, value) in metrics { try c.encode(value, forKey: Key(name)) }
    }
}

/// Fine-tunes a model (LoRA or every weight) with the loop every method shares: SFT's token-weighted or the
/// preference objectives' pair-weighted gradient accumulation, clipping, a scheduled learning rate, validation,
/// atomic checkpoints and exact resume. What differs between methods is the `TrainingTask`.
public final class Trainer {
    public let config: TrainingConfiguration
    public let languageModel: LanguageModel
    /// The model's trainable weights, then the task's own (a head).
    public let trainable: [Parameter]
    let task: TrainingTask
    let optimizer: any Optimizer
    let schedule: LearningRateSchedule
    public let totalSteps: Int
    public internal(set) var step = 0
    let outputFolder: URL
    var activations: TrainingActivations?
    /// Full fine-tuning's compact format for the products (bf16), whose copies follow the master weights.
    private var compactCopies: WeightFormat?
    /// The adapter the reference keeps when training starts from one (`adapter:`).
    static let referenceAdapterName = "reference"
    /// The trained adapter's shape: `lora:`, or the adapter training started from.
    let adapterConfiguration: LoRAConfiguration

    public init(config: TrainingConfiguration, languageModel: LanguageModel) throws {
        try config.validate()
        self.config = config
        self.languageModel = languageModel
        let model = languageModel.model
        outputFolder = URL(fileURLWithPath: config.output!)
        var reference = ReferenceSource.adaptersOff
        var adapterConfiguration = config.lora
        let modelTrainable: [Parameter]
        switch config.method {
        case .lora:
            let adapters: [LoRAAdapter]
            if let start = config.adapter {
                // Train the SFT adapter further; a frozen copy of it is the reference (TRL's "ref" adapter).
                let folder = URL(fileURLWithPath: start)
                if config.usesReference {
                    try PEFTAdapter.load(folder, into: model, adapterName: Self.referenceAdapterName)
                    model.setAdapters(enabled: false, named: Self.referenceAdapterName)
                    reference = .adapter(Self.referenceAdapterName)
                }
                adapterConfiguration = try PEFTAdapter.load(folder, into: model)
                adapters = model.adapters.filter { $0.adapterName == "default" }
                for p in adapters.flatMap(\.parameters) { p.trainable = true }
            } else {
                adapters = try model.attachLoRA(config.lora, seed: config.seed)
            }
            for adapter in adapters { adapter.training = true }
            modelTrainable = adapters.flatMap(\.parameters)
        case .full:
            for p in model.parameters { p.trainable = true }
            modelTrainable = model.parameters
            let format = try config.weightFormat()
            if format != .float32 {
                compactCopies = format
                // Before the task: a precomputed reference must see the products the policy's first step sees.
                try model.keepCompactCopies(format)
            }
        }
        self.adapterConfiguration = adapterConfiguration
        task = try Self.makeTask(config: config, languageModel: languageModel, reference: reference)
        trainable = modelTrainable + task.taskParameters
        let stepsPerEpoch = max(1, task.batchesInEpoch / config.gradientAccumulation)
        // As in transformers, max_steps wins over epochs: the data is cycled as often as it takes.
        totalSteps = config.maxSteps ?? stepsPerEpoch * config.epochs
        schedule = try LearningRateSchedule(kind: config.schedule, peakRate: config.learningRate,
                                            warmupSteps: min(config.warmupSteps, totalSteps), totalSteps: totalSteps)
        optimizer = try config.optimizer.make()
    }

    /// The task the configuration names: an RLHF stage, a preference objective, or supervised fine-tuning.
    static func makeTask(config: TrainingConfiguration, languageModel: LanguageModel,
                         reference: ReferenceSource) throws -> TrainingTask {
        switch config.rl {
        case nil: break
        case .grpo?: return try GRPOTask(config: config, languageModel: languageModel, reference: reference)
        case .reward?: return try RewardTask(config: config, languageModel: languageModel)
        case .ppo?: return try PPOTask(config: config, languageModel: languageModel, reference: reference)
        }
        if let method = config.objective {
            return try PreferenceTask(config: config, languageModel: languageModel, method: method, reference: reference)
        }
        return try SFTTask(config: config, languageModel: languageModel)
    }

    /// The held-out metrics (`eval_loss`, …) with dropout off, nil without a validation file.
    public func evaluate() throws -> [String: Double]? {
        try languageModel.model.withoutDropout { try task.evaluate() }
    }

    /// One optimizer step over `gradient_accumulation` micro-batches.
    func trainStep() throws -> (loss: Double, tokens: Int, gradNorm: Float?, metrics: [String: Double]) {
        for p in trainable { p.zeroGradient() }
        let outcome = try task.accumulate(microBatches: config.gradientAccumulation) { activations(batchSize: $0, length: $1) }
        let norm = config.maxGradNorm.map { clipGradientNorm(trainable, maxNorm: $0) }
        try optimizer.step(trainable, learningRate: schedule.rate(at: step))
        try refreshCompactCopies()
        step += 1
        return (outcome.loss, outcome.tokens, norm, outcome.metrics)
    }

    /// Re-rounds the compact copies of full fine-tuning's master weights (after an update or a restore).
    func refreshCompactCopies() throws {
        if let compactCopies { try languageModel.model.keepCompactCopies(compactCopies) }
    }

    private func activations(batchSize: Int, length: Int) -> TrainingActivations {
        if let a = activations, a.batchSize == batchSize, a.length == length { return a }
        // Batches padded to their longest row change shape: the old set goes first, never two at once.
        activations = nil
        let a = TrainingActivations(config: languageModel.model.config, batchSize: batchSize, length: length,
                                    checkpointing: config.gradientCheckpointing)
        activations = a
        return a
    }

    /// Trains to the end (or from a checkpoint with `resume`), reporting as it goes; writes the result into the
    /// output folder: a PEFT adapter for LoRA, the model's weights for full fine-tuning.
    public func run(resume: Bool = false, onEvent: (TrainingEvent) -> Void = { _ in }) throws {
        try FileManager.default.createDirectory(at: outputFolder, withIntermediateDirectories: true)
        try AtomicFileWriter.write(Data(try config.yaml().utf8), to: outputFolder.appendingPathComponent("config.yaml"))
        let metrics = try MetricsLog(url: outputFolder.appendingPathComponent("metrics.jsonl"), append: resume)
        if resume { try Checkpoint.restore(self, from: outputFolder) }
        let board = config.reportTo == .tensorboard
            ? try TensorBoardLog(folder: outputFolder.appendingPathComponent("tb"), resumedAt: resume ? step : nil) : nil
        func validate() throws {
            // The held-out pass makes a forward workspace of its own batch shape: the step's activations go first, so
            // that validating never holds both (the next step makes them again).
            activations = nil
            guard let values = try evaluate() else { return }
            onEvent(.validation(step: step, metrics: values))
            try metrics.append(values.mapValues { JSONValue.number($0) }.merging(["step": .number(Double(step))]) { $1 })
            try board?.append(step: step, metrics: values)
        }
        if !resume { try validate() }
        onEvent(.started("\(task.summary)\n\(trainable.reduce(0) { $0 + $1.tensor.count }) trainable parameters, "
                         + "\(totalSteps) steps from step \(step)"))
        let start = Date()
        var tokensSoFar = 0
        let firstStep = step
        while step < totalSteps {
            let (loss, tokens, norm, stepMetrics) = try trainStep()
            guard loss.isFinite else { throw TrainingError("the loss became \(loss) at step \(step); lower the learning rate") }
            tokensSoFar += tokens
            let elapsed = Date().timeIntervalSince(start)
            let perStep = elapsed / Double(step - firstStep)
            let record = TrainingStep(step: step, totalSteps: totalSteps, loss: loss, learningRate: schedule.rate(at: step - 1),
                                      gradNorm: norm, tokens: tokens, tokensPerSecond: Double(tokensSoFar) / max(elapsed, 1e-9),
                                      secondsLeft: perStep * Double(totalSteps - step), metrics: stepMetrics)
            onEvent(.step(record))
            try metrics.append(record)
            try board?.append(step: step, metrics: record.plottedValues)
            if config.evalEvery > 0, step % config.evalEvery == 0, step < totalSteps { try validate() }
            if config.saveEvery > 0, step % config.saveEvery == 0, step < totalSteps {
                let folder = try Checkpoint.save(self, to: outputFolder)
                onEvent(.checkpoint(step: step, folder: folder.path))
            }
        }
        try validate()
        try saveResult()
        onEvent(.finished(outputFolder.path))
    }

    /// The trained weights in the output folder: a PEFT adapter, or the whole model.
    func saveResult() throws {
        let model = languageModel.model
        switch config.method {
        case .lora:
            try PEFTAdapter.save(model, config: adapterConfiguration, heads: task.adapterHeads, baseModel: config.model, to: outputFolder,
                                 extra: ["lathe_training": .object([
                                    "steps": .number(Double(step)),
                                    // The base the adapter was trained on: f32, bf16 or nf4 (QLoRA: loading and merging the adapter follow it).
                                    "base_weights": .string(model.compactWeightSummary?.format ?? WeightFormat.float32.rawValue)])])
        case .full:
            try ModelExport.write(languageModel, to: outputFolder)
        }
        try task.writeResult(to: outputFolder)
    }
}

/// Appends one JSON object per line to the run's metrics file.
final class MetricsLog {
    let handle: FileHandle
    init(url: URL, append: Bool) throws {
        if !append || !FileManager.default.fileExists(atPath: url.path) {
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                throw TrainingError("\(url.path): cannot create the metrics file")
            }
        }
        handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
    }
    deinit { try? handle.close() }

    func append<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        try handle.write(contentsOf: try encoder.encode(value) + Data("\n".utf8))
    }
}
