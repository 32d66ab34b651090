import ArgumentParser
import Foundation
import LatheData
import LatheModels
import LatheTensors
import LatheTokenizers
import LatheTraining

/// `lathe pretrain`: builds a new llama-family model from the configuration's `architecture`, with seeded random
/// weights and the tokenizer of `tokenizer` (a folder with tokenizer.json, e.g. from `lathe tokenizer train`),
/// and trains every weight on raw text.
public struct PretrainCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "pretrain",
        abstract: "Train a new model from scratch on raw text (.txt, documents separated by blank lines, or {\"text\"} JSONL).",
        discussion: "The output folder is a Hugging Face model folder (config.json, model.safetensors, tokenizer.json) that Lathe and transformers load.")
    @Argument(help: "A YAML configuration with architecture, tokenizer, data and training keys.") public var config: String?
    @Option(help: "Folder with tokenizer.json (and tokenizer_config.json).") public var tokenizer: String?
    @Option(help: "Training text.") public var data: String?
    @Option(help: "Held-out text.") public var valid: String?
    @Option(help: "Output folder.") public var output: String?
    @Option public var epochs: Int?
    @Option(name: .customLong("max-steps")) public var maxSteps: Int?
    @Option public var lr: Double?
    @Option(name: .customLong("batch-size")) public var batchSize: Int?
    @Option(name: .customLong("seq-len"), help: "Tokens per training row.") public var seqLen: Int?
    @Option public var seed: UInt64?
    @Option(name: .customLong("save-every")) public var saveEvery: Int?
    @Flag(help: "Continue from the checkpoint in the output folder.") public var resume = false
    @Option(help: "Compute threads.") public var threads: Int = 1
    public init() {}

    public func resolvedConfiguration() throws -> TrainingConfiguration {
        var c = try config.map { try TrainingConfiguration.load(yaml: URL(fileURLWithPath: $0)) } ?? TrainingConfiguration()
        if let tokenizer { c.tokenizer = tokenizer }
        if let data { c.data = data }
        if let valid { c.valid = valid }
        if let output { c.output = output }
        if let epochs { c.epochs = epochs }
        if let maxSteps { c.maxSteps = maxSteps }
        if let lr { c.learningRate = lr }
        if let batchSize { c.batchSize = batchSize }
        if let seqLen { c.sft.maxLength = seqLen }
        if let seed { c.seed = seed }
        if let saveEvery { c.saveEvery = saveEvery }
        c.method = .full
        c.sft.lossOn = .all
        c.sft.packing = true
        if c.architecture == nil { c.architecture = ModelArchitecture() }
        guard c.tokenizer != nil else { throw TrainingError("no tokenizer: give --tokenizer DIR or `tokenizer:` (a folder with tokenizer.json)") }
        if let output = c.output { c.model = output }
        try c.validate()
        return c
    }

    public func validate() throws {
        do { _ = try resolvedConfiguration() } catch { throw ValidationError("\(error)") }
    }

    public func run() throws {
        let c = try resolvedConfiguration()
        MatMul.setThreadCount(threads)
        let output = URL(fileURLWithPath: c.output!)
        if !resume {
            let tokenizerFolder = URL(fileURLWithPath: c.tokenizer!)
            let tokenizer = try BPETokenizer(huggingFaceFolder: tokenizerFolder)
            let model = LlamaModel(config: try c.architecture!.configuration(vocabularySize: tokenizer.vocabularySize))
            model.initializeRandomly(seed: c.seed)
            try ModelExport.writeNewModel(model, tokenizerFolder: tokenizerFolder, bosTokenID: tokenizer.bosTokenID,
                                          eosTokenID: tokenizer.eosTokenID, to: output)
            log("new model: \(String(format: "%.2fM", Double(model.config.parameterCount) / 1e6)) parameters in \(output.path)")
        }
        let trainer = try Trainer(config: c, languageModel: try LanguageModel.load(output.path))
        try trainer.run(resume: resume) { logProgress($0, result: "model") }
    }
}
