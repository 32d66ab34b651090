import Foundation
import LatheData
import LatheFormats
import LatheModels
import LatheTensors

/// What a run reports as it goes.
public enum TrainingEvent: Sendable {
    case started(String)
    case step(TrainingStep)
    case validation(step: Int, loss: Double)
    case checkpoint(step: Int, folder: String)
    case finished(String)
}

/// One optimizer step's numbers, as the progress line and metrics.jsonl show them.
public struct TrainingStep: Codable, Sendable {
    public let step: Int
    public let totalSteps: Int
    public let loss: Double
    public let learningRate: Float
    public let gradNorm: Float?
    public let tokens: Int
    public let tokensPerSecond: Double
    public let secondsLeft: Double

    enum CodingKeys: String, CodingKey {
        case step, loss, tokens
        case totalSteps = "total_steps", learningRate = "lr", gradNorm = "grad_norm"
        case tokensPerSecond = "tokens_per_s", secondsLeft = "eta_s"
    }
}

/// Fine-tunes a model (LoRA or every weight) on SFT data with the loop every method shares: token-weighted
/// gradient accumulation, clipping, a scheduled learning rate, validation, atomic checkpoints and exact resume.
public final class Trainer {
    public let config: TrainingConfiguration
    public let languageModel: LanguageModel
    public let trainable: [Parameter]
    public let report: SFTReport
    let optimizer: any Optimizer
    let schedule: LearningRateSchedule
    var iterator: BatchIterator
    let validationBatches: [Batch]
    public let totalSteps: Int
    public internal(set) var step = 0
    let outputFolder: URL
    var activations: TrainingActivations?
    /// Full fine-tuning's compact format for the products (bf16), whose copies follow the master weights.
    private var compactCopies: WeightFormat?

    public init(config: TrainingConfiguration, languageModel: LanguageModel) throws {
        try config.validate()
        self.config = config
        self.languageModel = languageModel
        let model = languageModel.model
        outputFolder = URL(fileURLWithPath: config.output!)
        switch config.method {
        case .lora:
            let adapters = try model.attachLoRA(config.lora, seed: config.seed)
            for adapter in adapters { adapter.training = true }
            trainable = adapters.flatMap(\.parameters)
        case .full:
            for p in model.parameters { p.trainable = true }
            trainable = model.parameters
            let format = try config.weightFormat()
            if format != .float32 { compactCopies = format }
        }
        let renderer = SFTRenderer(model: languageModel, options: config.sft)
        let (examples, report) = try Self.loadExamples(URL(fileURLWithPath: config.data!), renderer: renderer)
        self.report = report
        let padding = languageModel.tokenizer.eosTokenID ?? 0
        let builder = try BatchBuilder(batchSize: config.batchSize, options: config.sft, paddingID: padding)
        iterator = try BatchIterator(examples: examples, builder: builder, seed: config.seed)
        if let valid = config.valid {
            let (validExamples, _) = try Self.loadExamples(URL(fileURLWithPath: valid), renderer: renderer)
            validationBatches = try builder.batches(validExamples)
        } else {
            validationBatches = []
        }
        let stepsPerEpoch = max(1, iterator.batchesInEpoch / config.gradientAccumulation)
        // As in transformers, max_steps wins over epochs: the data is cycled as often as it takes.
        totalSteps = config.maxSteps ?? stepsPerEpoch * config.epochs
        schedule = try LearningRateSchedule(kind: config.schedule, peakRate: config.learningRate,
                                            warmupSteps: min(config.warmupSteps, totalSteps), totalSteps: totalSteps)
        optimizer = try config.optimizer.make()
        try refreshCompactCopies()
    }

    /// JSONL or CSV rows of any SFT format, or a plain .txt file whose documents are separated by blank lines
    /// (raw text for pretraining: each document, with the tokenizer's BOS and an EOS, is cut into windows of
    /// max_length tokens rather than truncated).
    static func loadExamples(_ url: URL, renderer: SFTRenderer) throws -> (examples: [SFTExample], report: SFTReport) {
        guard url.pathExtension.lowercased() == "txt" else { return try SFTDataset.load(url, renderer: renderer) }
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw TrainingError("\(url.path): cannot read the text (\(error.localizedDescription))")
        }
        var report = SFTReport(), examples: [SFTExample] = []
        var document: [Substring] = [], firstLine = 1
        func flush() throws {
            defer { document = [] }
            let body = document.joined(separator: "\n")
            guard !body.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return }
            report.rows += 1
            let tokenizer = renderer.model.tokenizer
            let ids = tokenizer.prefixIDs + tokenizer.encode(body, addSpecialTokens: false) + (tokenizer.eosTokenID.map { [$0] } ?? [])
            let window = renderer.options.maxLength
            for start in stride(from: 0, to: ids.count - 1, by: window) {
                let chunk = Array(ids[start..<min(start + window, ids.count)])
                guard chunk.count > 1 else { continue }
                let example = SFTExample(ids: chunk, supervised: [false] + Array(repeating: true, count: chunk.count - 1),
                                         source: "\(url.path):\(firstLine)", truncated: false)
                examples.append(example)
                report.examples += 1
                report.totalTokens += chunk.count
                report.supervisedTokens += chunk.count - 1
            }
        }
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.trimmingCharacters(in: .whitespaces).isEmpty { try flush(); firstLine = index + 2 } else { document.append(line) }
        }
        try flush()
        guard !examples.isEmpty else { throw TrainingError("\(url.path): the file has no text") }
        return (examples, report)
    }

    /// Mean validation loss over the validation file (nil without one).
    public func validationLoss() throws -> Double? {
        guard !validationBatches.isEmpty else { return nil }
        let adapters = languageModel.model.adapters
        for adapter in adapters { adapter.training = false }
        defer { for adapter in adapters { adapter.training = true } }
        var sum = 0.0, count = 0
        for batch in validationBatches {
            let (s, c) = try languageModelLoss(languageModel.model, batch: batch)
            sum += s; count += c
        }
        return count == 0 ? nil : sum / Double(count)
    }

    /// One optimizer step over `gradient_accumulation` micro-batches, each token weighing the same.
    func trainStep() throws -> (loss: Double, tokens: Int, gradNorm: Float?) {
        for p in trainable { p.zeroGradient() }
        var microBatches: [Batch] = []
        for _ in 0..<config.gradientAccumulation { microBatches.append(try iterator.next()) }
        let supervised = microBatches.reduce(0) { $0 + $1.tokenCount }
        var lossSum = 0.0, tokens = 0
        if supervised > 0 {
            for batch in microBatches {
                let activations = activations(batchSize: batch.batchSize, length: batch.length)
                let (sum, _) = try languageModelLoss(languageModel.model, batch: batch, activations: activations,
                                                     scale: 1 / Float(supervised))
                lossSum += sum
                tokens += batch.valid.filter { $0 }.count
            }
        }
        let norm = config.maxGradNorm.map { clipGradientNorm(trainable, maxNorm: $0) }
        try optimizer.step(trainable, learningRate: schedule.rate(at: step))
        try refreshCompactCopies()
        step += 1
        return (supervised > 0 ? lossSum / Double(supervised) : 0, tokens, norm)
    }

    /// Re-rounds the compact copies of full fine-tuning's master weights (after an update or a restore).
    func refreshCompactCopies() throws {
        if let compactCopies { try languageModel.model.keepCompactCopies(compactCopies) }
    }

    private func activations(batchSize: Int, length: Int) -> TrainingActivations {
        if let a = activations, a.batchSize == batchSize, a.length == length { return a }
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
        if resume { try Checkpoint.restore(self, from: outputFolder) } else if let loss = try validationLoss() {
            onEvent(.validation(step: 0, loss: loss))
            try metrics.append(["step": JSONValue.number(0), "valid_loss": .number(loss)])
        }
        onEvent(.started("\(report)\n\(trainable.reduce(0) { $0 + $1.tensor.count }) trainable parameters, "
                         + "\(totalSteps) steps from step \(step)"))
        let start = Date()
        var tokensSoFar = 0
        let firstStep = step
        while step < totalSteps {
            let (loss, tokens, norm) = try trainStep()
            guard loss.isFinite else { throw TrainingError("the loss became \(loss) at step \(step); lower the learning rate") }
            tokensSoFar += tokens
            let elapsed = Date().timeIntervalSince(start)
            let perStep = elapsed / Double(step - firstStep)
            let record = TrainingStep(step: step, totalSteps: totalSteps, loss: loss, learningRate: schedule.rate(at: step - 1),
                                      gradNorm: norm, tokens: tokens, tokensPerSecond: Double(tokensSoFar) / max(elapsed, 1e-9),
                                      secondsLeft: perStep * Double(totalSteps - step))
            onEvent(.step(record))
            try metrics.append(record)
            if config.evalEvery > 0, step % config.evalEvery == 0, step < totalSteps, let loss = try validationLoss() {
                onEvent(.validation(step: step, loss: loss))
                try metrics.append(["step": JSONValue.number(Double(step)), "valid_loss": .number(loss)])
            }
            if config.saveEvery > 0, step % config.saveEvery == 0, step < totalSteps {
                let folder = try Checkpoint.save(self, to: outputFolder)
                onEvent(.checkpoint(step: step, folder: folder.path))
            }
        }
        if let loss = try validationLoss() {
            onEvent(.validation(step: step, loss: loss))
            try metrics.append(["step": JSONValue.number(Double(step)), "valid_loss": .number(loss)])
        }
        try saveResult()
        onEvent(.finished(outputFolder.path))
    }

    /// The trained weights in the output folder: a PEFT adapter, or the whole model.
    func saveResult() throws {
        let model = languageModel.model
        switch config.method {
        case .lora:
            try PEFTAdapter.save(model, config: config.lora, baseModel: config.model, to: outputFolder,
                                 extra: ["lathe_training": .object([
                                    "steps": .number(Double(step)),
                                    // The base the adapter was trained on: f32, bf16 or nf4 (QLoRA: loading and merging the adapter follow it).
                                    "base_weights": .string(model.compactWeightSummary?.format ?? WeightFormat.float32.rawValue)])])
        case .full:
            try ModelExport.write(languageModel, to: outputFolder)
        }
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
        encoder.outputFormatting = [.sortedKeys]
        try handle.write(contentsOf: try encoder.encode(value) + Data("\n".utf8))
    }
}
