import Foundation
import LatheData
import LatheModels
import LatheTensors

/// Reward-model training (TRL's RewardTrainer): a scalar head `score` on the final normed hidden states, trained
/// with the LoRA adapter on preference pairs. Each micro-batch's chosen and rejected rows go through the model once
/// with their activations kept; the objective turns the two scores of each pair into a loss and a gradient per score,
/// which flows through the head into the hidden states and from there through the model.
///
/// Started from an SFT adapter (`adapter:`), that adapter is trained further as the reward model's LoRA (the
/// Trainer's path): the result is then one self-contained PEFT adapter (LoRA + score) on the untouched base, which
/// is what `PeftModel.from_pretrained(AutoModelForSequenceClassification…(base), RM)` loads and what PPO attaches
/// beside the policy on the same base. Freezing the SFT adapter under a new one would make the reward model two
/// adapters deep, which PEFT cannot load as one.
final class RewardTask: TrainingTask {
    let model: DecoderModel
    let head: ScoreHead
    let objective: RewardObjective
    var iterator: BatchIterator<RewardBatchBuilder>
    let validationBatches: [RewardBatch]
    let summary: String

    init(config: TrainingConfiguration, languageModel: LanguageModel) throws {
        model = languageModel.model
        objective = RewardObjective(centerRewardsCoefficient: config.reward.centerRewardsCoefficient)
        head = ScoreHead(hiddenSize: model.config.hiddenSize, name: "score.weight")
        // Its own stream: the LoRA A matrices draw from seed + small offsets.
        head.initialize(seed: config.seed &+ 0x5C0E_5EED)
        head.weight.trainable = true
        guard let pad = languageModel.padTokenID else {
            throw TrainingError("\(languageModel.name) declares neither a pad nor an EOS token, which a reward model needs to find each row's last token")
        }
        let builder = try RewardBatchBuilder(batchSize: config.batchSize, paddingID: pad)
        let renderer = PreferenceRenderer(model: languageModel, maxLength: nil)
        func load(_ path: String) throws -> (pairs: [RewardPair], report: PreferenceReport) {
            try PreferenceDataset.loadRewardPairs(URL(fileURLWithPath: path), renderer: renderer, maxLength: config.reward.maxLength)
        }
        let (train, report) = try load(config.data!)
        summary = report.description
        iterator = try BatchIterator(examples: train, builder: builder, seed: config.seed)
        validationBatches = try builder.batches(try config.valid.map { try load($0).pairs } ?? [])
    }

    var taskParameters: [Parameter] { [head.weight] }
    var adapterHeads: [Parameter] { [head.weight] }
    var batchesInEpoch: Int { iterator.batchesInEpoch }
    var position: BatchPosition { iterator.position }
    func move(to position: BatchPosition) throws { iterator = try iterator.moved(to: position) }

    func accumulate(microBatches count: Int, activations: (Int, Int) -> TrainingActivations) throws -> StepOutcome {
        var batches: [RewardBatch] = []
        for _ in 0..<count { batches.append(try iterator.next()) }
        return try itemWeighted(batches, items: \.pairs, tokens: { $0.sequences.valid.filter { $0 }.count }) { batch, share in
            let result = try lossAndGradient(batch, scale: Float(share),
                                             activations: activations(batch.sequences.batchSize, batch.sequences.length))
            return (result.loss, result.metrics)
        }
    }

    func evaluate() throws -> [String: Double]? {
        guard !validationBatches.isEmpty else { return nil }
        let outcome = try itemWeighted(validationBatches, items: \.pairs, tokens: { _ in 0 }) { batch, _ in
            let result = try lossAndGradient(batch, scale: 0, activations: nil)
            return (result.loss, result.metrics)
        }
        return outcome.heldOutMetrics
    }

    /// The objective on one micro-batch; with `activations`, adds `scale`·its gradient into the adapter and the head.
    func lossAndGradient(_ batch: RewardBatch, scale: Float, activations: TrainingActivations?) throws -> RewardResult {
        let s = batch.sequences
        let hidden = try model.finalHiddenStates(tokens: s.inputs, batchSize: s.batchSize, positions: s.positions, valid: s.valid,
                                                 segments: s.segments, saving: activations)
        let scores = head.scores(hidden, rows: batch.scoredPositions)
        let result = objective.evaluate(chosen: Array(scores[..<batch.pairs]), rejected: Array(scores[batch.pairs...]),
                                        margins: batch.margins)
        if let activations {
            let dHidden = Tensor(zeros: hidden.shape)
            head.backward(hidden: hidden, rows: batch.scoredPositions,
                          scoreGradient: (result.chosenGradient + result.rejectedGradient).map { $0 * scale }, dHidden: dHidden)
            model.backward(activations: activations, finalHiddenGradient: dHidden)
        }
        return result
    }
}
