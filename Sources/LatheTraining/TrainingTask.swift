import Foundation
import LatheData
import LatheModels

/// What one optimizer step's micro-batches gave: the step's loss, the tokens the model read, the method's metrics.
struct StepOutcome {
    var loss: Double
    var tokens: Int
    var metrics: [String: Double] = [:]

    /// The numbers as held-out ones, with TRL's names: `eval_loss` and each metric prefixed `eval_`.
    var heldOutMetrics: [String: Double] {
        Dictionary(uniqueKeysWithValues: metrics.map { ("eval_" + $0.key, $0.value) }).merging(["eval_loss": loss]) { $1 }
    }
}

/// What the training loop draws micro-batches from and how they become a loss and its gradient: the one place
/// where SFT and the preference objectives differ. The loop itself (steps, clipping, schedule, validation,
/// checkpoints, resume) is `Trainer`'s alone.
protocol TrainingTask: AnyObject {
    /// What loading the data did, for the first progress line.
    var summary: String { get }
    var batchesInEpoch: Int { get }
    /// Where the data stands, for checkpoints.
    var position: BatchPosition { get }
    func move(to position: BatchPosition) throws
    /// Draws `count` micro-batches and adds the gradient of the step's loss into the trainable parameters: each
    /// micro-batch weighs by its supervised tokens (SFT) or its pairs / rows (preferences).
    func accumulate(microBatches count: Int, activations: (Int, Int) -> TrainingActivations) throws -> StepOutcome
    /// The held-out numbers with TRL's names (`eval_loss`, `eval_rewards/…`), nil without held-out data.
    func evaluate() throws -> [String: Double]?
    /// Weights the task trains beside the model's (a reward model's score head, PPO's value head): optimised,
    /// clipped and checkpointed with them.
    var taskParameters: [Parameter] { get }
    /// The task's weights saved inside the PEFT adapter as `modules_to_save` (a reward model's `score`), making it
    /// a sequence-classification adapter.
    var adapterHeads: [Parameter] { get }
    /// What a resume needs beyond the data position and the weights (a rollout buffer), nil when nothing.
    func checkpointState() throws -> Data?
    func restore(checkpointState: Data) throws
    /// Writes what the task adds to the result folder, after the adapter or model is saved there.
    func writeResult(to folder: URL) throws
}

extension TrainingTask {
    var taskParameters: [Parameter] { [] }
    var adapterHeads: [Parameter] { [] }
    func checkpointState() throws -> Data? { nil }
    func restore(checkpointState: Data) throws {}
    func writeResult(to folder: URL) throws {}
}

/// The micro-batches of a step (or the held-out batches), each weighing by its items — pairs or rows — as TRL's
/// per-batch means averaged over equal micro-batches: `body` gets a batch and its share of the items and gives its
/// loss and metrics; the result is their share-weighted sums, the batches' token count beside them.
func itemWeighted<Batch>(_ batches: [Batch], items: (Batch) -> Int, tokens: (Batch) -> Int,
                         _ body: (Batch, Double) throws -> (loss: Double, metrics: [String: Double])) rethrows -> StepOutcome {
    let total = Double(batches.reduce(0) { $0 + items($1) })
    var outcome = StepOutcome(loss: 0, tokens: 0)
    for batch in batches {
        let share = Double(items(batch)) / total
        let result = try body(batch, share)
        outcome.loss += share * result.loss
        for (key, value) in result.metrics { outcome.metrics[key, default: 0] += share * value }
        outcome.tokens += tokens(batch)
    }
    return outcome
}

/// Supervised fine-tuning and pretraining: token-weighted cross-entropy on the supervised tokens.
final class SFTTask: TrainingTask {
    let model: DecoderModel
    var iterator: BatchIterator<BatchBuilder>
    let validationBatches: [Batch]
    let report: SFTReport

    init(config: TrainingConfiguration, languageModel: LanguageModel) throws {
        model = languageModel.model
        let renderer = SFTRenderer(model: languageModel, options: config.sft)
        let (examples, report) = try Self.loadExamples(URL(fileURLWithPath: config.data!), renderer: renderer)
        self.report = report
        let builder = try BatchBuilder(batchSize: config.batchSize, options: config.sft,
                                       paddingID: languageModel.tokenizer.eosTokenID ?? 0)
        iterator = try BatchIterator(examples: examples, builder: builder, seed: config.seed)
        if let valid = config.valid {
            validationBatches = try builder.batches(try Self.loadExamples(URL(fileURLWithPath: valid), renderer: renderer).examples)
        } else {
            validationBatches = []
        }
    }

    var summary: String { report.description }
    var batchesInEpoch: Int { iterator.batchesInEpoch }
    var position: BatchPosition { iterator.position }
    func move(to position: BatchPosition) throws { iterator = try iterator.moved(to: position) }

    func accumulate(microBatches count: Int, activations: (Int, Int) -> TrainingActivations) throws -> StepOutcome {
        var batches: [Batch] = []
        for _ in 0..<count { batches.append(try iterator.next()) }
        let supervised = batches.reduce(0) { $0 + $1.tokenCount }
        var lossSum = 0.0, tokens = 0
        if supervised > 0 {
            for batch in batches {
                let (sum, _) = try languageModelLoss(model, batch: batch, activations: activations(batch.batchSize, batch.length),
                                                     scale: 1 / Float(supervised))
                lossSum += sum
                tokens += batch.valid.filter { $0 }.count
            }
        }
        return StepOutcome(loss: supervised > 0 ? lossSum / Double(supervised) : 0, tokens: tokens)
    }

    func evaluate() throws -> [String: Double]? {
        guard !validationBatches.isEmpty else { return nil }
        var sum = 0.0, count = 0
        for batch in validationBatches {
            let (s, c) = try languageModelLoss(model, batch: batch)
            sum += s; count += c
        }
        return count == 0 ? nil : ["eval_loss": sum / Double(count)]
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
}
