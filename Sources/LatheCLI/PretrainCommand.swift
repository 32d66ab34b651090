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
    @OptionGroup public var training: TrainingRunOptions
    @Option(name: .customLong("seq-len"), help: "Tokens per training row.") public var seqLen: Int?
    public init() {}

    public func resolvedConfiguration() throws -> TrainingConfiguration {
        var c = try config.map { try TrainingConfiguration.load(yaml: URL(fileURLWithPath: $0)) } ?? TrainingConfiguration()
        if let tokenizer { c.tokenizer = tokenizer }
        training.apply(to: &c)
        if let seqLen { c.sft.maxLength = seqLen }
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
        MatMul.setThreads(c.threads)
        log("compute threads: \(c.threads.resolvedDescription)")
        let output = URL(fileURLWithPath: c.output!)
        if !training.resume {
            let tokenizerFolder = URL(fileURLWithPath: c.tokenizer!)
            let tokenizer = try Tokenizer(huggingFaceFolder: tokenizerFolder)
            let model = DecoderModel(config: try c.architecture!.configuration(vocabularySize: tokenizer.vocabularySize))
            model.initializeRandomly(seed: c.seed)
            try ModelExport.writeNewModel(model, tokenizerFolder: tokenizerFolder, bosTokenID: tokenizer.bosTokenID,
                                          eosTokenID: tokenizer.eosTokenID, to: output)
            log("new model: \(String(format: "%.2fM", Double(model.config.parameterCount) / 1e6)) parameters in \(output.path)")
        }
        let trainer = try Trainer(config: c, languageModel: try LanguageModel.load(output.path))
        try trainer.run(resume: training.resume) { logProgress($0, result: "model") }
    }
}
