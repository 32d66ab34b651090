import ArgumentParser
import Foundation
import LatheData
import LatheModels
import LatheTensors
import LatheTemplates
import LatheTraining

/// `lathe sft`: supervised fine-tuning (LoRA by default, every weight with --full) from a YAML file and/or flags.
public struct SFTCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "sft",
        abstract: "Fine-tune a model on JSONL data (text, prompt/completion, messages or Alpaca rows).",
        discussion: "Flags override the YAML file, which overrides the defaults; the resolved configuration is written to OUTPUT/config.yaml.")

    @Argument(help: "A YAML run configuration (optional).") public var config: String?
    @Option(help: "Model: a .gguf file, a Hugging Face folder or a known name.") public var model: String?
    @OptionGroup public var training: TrainingRunOptions
    @Option(name: .customLong("grad-accum"), help: "Micro-batches per optimizer step.") public var gradientAccumulation: Int?
    @OptionGroup public var lora: LoRAFlags
    @Option(name: .customLong("max-length"), help: "Longest example in tokens (longer ones are truncated and counted).") public var maxLength: Int?
    @Option(name: .customLong("eval-every"), help: "Validation loss every N steps.") public var evalEvery: Int?
    @Flag(help: "Train every weight instead of a LoRA adapter.") public var full = false
    @Flag(help: "Put the loss on every token, not only on completions / assistant turns.") public var lossOnAll = false
    @Flag(help: "Pack several examples into each row (no attention across them).") public var packing = false
    @Flag(name: .customLong("gradient-checkpointing"), help: "Recompute activations in the backward pass: less memory, more compute.")
    public var gradientCheckpointing = false
    public init() {}

    /// Defaults, then the YAML file, then the flags.
    public func resolvedConfiguration() throws -> TrainingConfiguration {
        var c = try config.map { try TrainingConfiguration.load(yaml: URL(fileURLWithPath: $0)) } ?? TrainingConfiguration()
        if let model { c.model = model }
        training.apply(to: &c)
        if let gradientAccumulation { c.gradientAccumulation = gradientAccumulation }
        lora.apply(to: &c.lora)
        if let maxLength { c.sft.maxLength = maxLength }
        if let evalEvery { c.evalEvery = evalEvery }
        if full { c.method = .full }
        if lossOnAll { c.sft.lossOn = .all }
        if packing { c.sft.packing = true }
        if gradientCheckpointing { c.gradientCheckpointing = true }
        try c.validate()
        return c
    }

    public func validate() throws {
        do { _ = try resolvedConfiguration() } catch { throw ValidationError("\(error)") }
    }

    public func run() throws {
        let c = try resolvedConfiguration()
        MatMul.setThreads(c.threads)
        log("compute threads: \(c.threads.resolvedDescription)")
        let lm = try LanguageModel.load(c.model, weightFormat: try c.loadingFormat())
        print("products: \(try c.weightFormat()) weights (dtype \(c.dtype); this CPU's bf16 products: \(BF16Products.current))")
        let trainer = try Trainer(config: c, languageModel: lm)
        let example = c.valid.flatMap { try? firstPrompt(URL(fileURLWithPath: $0)) }
        var before: String?
        if let example, c.method == .lora {
            lm.model.setAdapters(enabled: false)
            before = try? answer(lm, example)
            lm.model.setAdapters(enabled: true)
        }
        var firstValidation: Double?, lastValidation: Double?
        try trainer.run(resume: training.resume) { event in
            if case .validation(_, let metrics) = event, let loss = metrics["eval_loss"] {
                if firstValidation == nil { firstValidation = loss }
                lastValidation = loss
            }
            logProgress(event, result: c.method == .lora ? "adapter" : "model")
        }
        if let firstValidation, let lastValidation, firstValidation != lastValidation || !training.resume {
            print(String(format: "held-out loss: %.4f before, %.4f after", firstValidation, lastValidation))
        }
        if let example {
            print("prompt: \(example.last?.content ?? "")")
            if let before { print("before: \(before)") }
            print("after:  \(try answer(lm, example))")
        }
    }

    /// The conversation of the first held-out row, without its answer.
    func firstPrompt(_ url: URL) throws -> [ChatMessage]? {
        guard let row = try DatasetReader.read(url).first, case .messages(let messages) = row.record else { return nil }
        let prompt = Array(messages.prefix { $0.role != "assistant" })
        return prompt.isEmpty ? nil : prompt
    }

    func answer(_ lm: LanguageModel, _ messages: [ChatMessage]) throws -> String {
        try greedyAnswer(lm, to: try lm.chatTokens(messages, addGenerationPrompt: true))
    }
}

/// The flags `lathe sft` and `lathe pretrain` share; each overrides its key of the YAML configuration.
public struct TrainingRunOptions: ParsableArguments {
    @Option(help: "Training data (JSONL, or .txt for pretraining).") public var data: String?
    @Option(help: "Held-out data for validation loss.") public var valid: String?
    @Option(help: "Run folder: weights or adapter, checkpoints, metrics.jsonl, config.yaml.") public var output: String?
    @Option(help: "Passes over the training data.") public var epochs: Int?
    @Option(name: .customLong("max-steps"), help: "Train exactly this many optimizer steps (wins over --epochs).") public var maxSteps: Int?
    @Option(help: "Peak learning rate.") public var lr: Double?
    @Option(name: .customLong("batch-size"), help: "Examples (rows) per micro-batch.") public var batchSize: Int?
    @Option(help: "Random seed (initialisation, shuffling, dropout).") public var seed: UInt64?
    @Option(name: .customLong("save-every"), help: "Checkpoint every N steps.") public var saveEvery: Int?
    @Flag(help: "Continue from the checkpoint in the output folder.") public var resume = false
    @Option(help: ArgumentHelp("Compute threads: auto (measured at start: one thread or every core) or a count (YAML key `threads`).",
                               valueName: "auto|N"))
    public var threads: ThreadSetting?
    @Option(help: "Frozen base weights: auto (bf16 where the CPU has AMX or AVX512-BF16), f32 or bf16.") public var dtype: String?
    @Option(help: "Quantize the frozen base for QLoRA: nf4.") public var quantize: String?
    @Option(help: "Optimizer: adamw, adamw8bit (moments in 8 bits) or sgd, with its default settings.")
    public var optimizer: OptimizerKind?
    @Option(name: .customLong("report-to"), help: ArgumentHelp("Also write the metrics as TensorBoard event files in OUTPUT/tb (tensorboard, the default) or not (none).",
                                                              valueName: "tensorboard|none"))
    public var reportTo: ReportTarget?
    public init() {}

    func apply(to c: inout TrainingConfiguration) {
        if let threads { c.threads = threads }
        if let dtype { c.dtype = dtype }
        if let quantize { c.quantize = quantize }
        if let optimizer, optimizer != c.optimizer.kind { c.optimizer = OptimizerConfiguration(kind: optimizer) }
        if let data { c.data = data }
        if let valid { c.valid = valid }
        if let output { c.output = output }
        if let epochs { c.epochs = epochs }
        if let maxSteps { c.maxSteps = maxSteps }
        if let lr { c.learningRate = lr }
        if let batchSize { c.batchSize = batchSize }
        if let seed { c.seed = seed }
        if let saveEvery { c.saveEvery = saveEvery }
        if let reportTo { c.reportTo = reportTo }
    }
}

extension ReportTarget: ExpressibleByArgument {}

/// The LoRA shape flags of every training command (each overrides its key of `lora:`).
public struct LoRAFlags: ParsableArguments {
    @Option(name: .customLong("lora-rank")) public var loraRank: Int?
    @Option(name: .customLong("lora-alpha")) public var loraAlpha: Float?
    @Option(name: .customLong("lora-dropout")) public var loraDropout: Float?
    @Option(name: .customLong("lora-targets"), help: "Comma-separated modules (q_proj,v_proj,...) or all-linear.") public var loraTargets: String?
    public init() {}

    func apply(to lora: inout LoRAConfiguration) {
        if let loraRank { lora.rank = loraRank }
        if let loraAlpha { lora.alpha = loraAlpha }
        if let loraDropout { lora.dropout = loraDropout }
        if let loraTargets { lora.targets = loraTargets.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
    }
}

/// The greedy answer (64 tokens at most) to `prompt`, with dropout off while it is generated and the adapters'
/// training switches restored after: the before/after example of the training commands.
func greedyAnswer(_ lm: LanguageModel, to prompt: [Int]) throws -> String {
    try lm.model.withoutDropout { try lm.generate(prompt, sampling: SamplingOptions(), maxTokens: 64) }
}

func log(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

/// The progress lines of a training run, on standard error.
func logProgress(_ event: TrainingEvent, result: String) {
    switch event {
    case .started(let text): log(text)
    case .step(let s):
        log(String(format: "step %d/%d | loss %.4f | lr %.2e | %.0f tok/s | ETA %@", s.step, s.totalSteps, s.loss,
                   s.learningRate, s.tokensPerSecond, duration(s.secondsLeft)) + metricsText(s.metrics))
    case .validation(let step, let metrics):
        log("step \(step) | held-out" + (metrics["eval_loss"].map { String(format: " loss %.4f", $0) } ?? "")
            + metricsText(metrics.filter { $0.key != "eval_loss" }))
    case .checkpoint(let step, let folder): log("step \(step) | checkpoint written to \(folder)")
    case .finished(let folder): log("done: \(result) written to \(folder)")
    }
}

/// " | rewards/accuracies 0.750 | …", sorted by name.
func metricsText(_ metrics: [String: Double]) -> String {
    metrics.sorted { $0.key < $1.key }.map { String(format: " | %@ %.4g", $0.key, $0.value) }.joined()
}

func duration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
}
