import ArgumentParser
import Foundation
import LatheData
import LatheModels
import LatheTraining

/// `lathe reward`: trains a reward model (`lathe reward [config.yaml] --data …`, the default) or scores rows with one
/// (`lathe reward score`).
public struct RewardCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "reward", abstract: "Train a reward model on preference pairs (TRL's RewardTrainer), or score rows with one.",
        subcommands: [RewardTrainCommand.self, RewardScoreCommand.self], defaultSubcommand: RewardTrainCommand.self)
    public init() {}
}

/// `lathe reward [config.yaml] --model M [--adapter SFT_DIR] --data P.jsonl --output DIR …`.
public struct RewardTrainCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train LoRA + a score head on prompt/chosen/rejected pairs with −log σ(r_chosen − r_rejected − margin).",
        discussion: """
            The result is a PEFT SEQ_CLS adapter (LoRA + modules_to_save score) that AutoModelForSequenceClassification \
            (num_labels=1) + PeftModel.from_pretrained load. An optional numeric "margin" column is used as TRL uses it. \
            --adapter starts from an SFT adapter and trains it further as the reward model's LoRA. Flags override the YAML file.
            """)
    @Argument(help: "A YAML run configuration (optional).") public var config: String?
    @Option(help: "Model: a .gguf file, a Hugging Face folder or a known name.") public var model: String?
    @Option(help: "A PEFT adapter to start from (an SFT adapter), trained further as the reward model's LoRA.")
    public var adapter: String?
    @OptionGroup public var training: TrainingRunOptions
    @Option(name: .customLong("max-length"), help: "Pairs with a sequence longer than this (tokens) are dropped, as TRL filters them.")
    public var maxLength: Int?
    @Option(name: .customLong("center-rewards-coefficient"), help: "Weight of mean((r_chosen + r_rejected)²) (TRL recommends 0.01).")
    public var centerRewardsCoefficient: Double?
    public init() {}

    /// Defaults, then the YAML file, then the flags.
    func resolved() throws -> TrainingConfiguration {
        var c = try config.map { try TrainingConfiguration.load(yaml: URL(fileURLWithPath: $0)) } ?? TrainingConfiguration()
        c.rl = .reward
        if let model { c.model = model }
        if let adapter { c.adapter = adapter }
        training.apply(to: &c)
        if let maxLength { c.reward.maxLength = maxLength }
        if let centerRewardsCoefficient { c.reward.centerRewardsCoefficient = centerRewardsCoefficient }
        try c.validate()
        return c
    }

    public func run() throws {
        let c = try resolved()
        let trainer = try Trainer(config: c, languageModel: try loadTrainingModel(c))
        try runReportingHeldOut(trainer, resume: training.resume, keys: ["eval_loss", "eval_accuracy", "eval_margin"])
    }
}

/// `lathe reward score --model M --adapter RM --input F.jsonl`: one `{"score": x}` line per row.
public struct RewardScoreCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "score", abstract: "Print a reward model's score of each JSONL row, one {\"score\": x} line per row.",
        discussion: """
            {"messages": [...]} rows go through the chat template whole (no generation prompt); {"text": ...} rows get \
            EOS appended when they lack it, as the reward model saw text pairs in training. The score is read at the last \
            token that is not the pad token (transformers' rule).
            """)
    @OptionGroup public var model: ModelOptions
    @Option(help: "A JSONL file; each line {\"messages\": [...]} or {\"text\": ...}.") public var input: String
    @Option(name: .customLong("batch-size"), help: "Rows scored per forward pass.") public var batchSize = 8
    public init() {}

    public func validate() throws {
        guard model.adapter != nil else { throw ValidationError("give the reward model with --adapter RM_DIR") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
    }

    public func run() throws {
        let lines = try JSONLines.read(URL(fileURLWithPath: input))
        var base = model
        base.adapter = nil
        let lm = try base.load()
        let reward = try RewardModel(adapter: URL(fileURLWithPath: model.adapter!), on: lm.model)
        let sequences = try lines.map { try Self.sequence(of: $0, lm) }
        for start in stride(from: 0, to: sequences.count, by: batchSize) {
            // A chunk at a time, so that the scores stream out as they come.
            let chunk = Array(sequences[start..<min(start + batchSize, sequences.count)])
            for score in try reward.scores(chunk, padTokenID: lm.padTokenID, rowsPerPass: batchSize) {
                printLine(try jsonLine(["score": Double(score)]))
            }
        }
    }

    /// A row's tokens as the reward model was trained on them.
    static func sequence(of line: JSONLine, _ lm: LanguageModel) throws -> [Int] {
        guard let object = line.value.object else { throw line.error("expected a JSON object, got \(line.value.summary)") }
        if let messages = object["messages"] {
            return try lm.chatTokens(try LanguageModel.chatMessages(messages, line: line), addGenerationPrompt: false)
        }
        guard let text = object["text"] else { throw line.error("expected a \"messages\" or a \"text\" field") }
        guard let string = text.string else { throw line.error("field \"text\" must be a string, got \(text.summary)") }
        let ids = lm.tokenizer.encode(string.hasSuffix(lm.eosToken) ? string : string + lm.eosToken)
        guard !ids.isEmpty else { throw line.error("field \"text\" has no tokens") }
        return ids
    }
}
