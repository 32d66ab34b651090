import Foundation
import LatheData
import LatheModels
import LatheTensors

/// PPO (TRL 0.29.1's PPOTrainer) on one base: the policy is the trained adapter ("default"), the value function a
/// head on the policy's final hidden states, the reference the frozen start (`ReferenceSource`), the reward a
/// function of whole sequences (the reward model's adapter). One optimizer step is one minibatch update; the task
/// samples a rollout batch of `batch_size` prompts when its `num_ppo_epochs × num_mini_batches` updates are used,
/// and keeps it in the checkpoint, so that a resume continues exactly.
final class PPOTask: TrainingTask {
    /// The score of each prompt's response (cut after its stop token, which it keeps).
    typealias Score = ([PromptExample], [[Int]]) throws -> [Double]

    /// The rollout batch being trained on and how far its updates have got.
    struct State: Codable, Equatable {
        /// Rollout batches sampled so far (the current one included): with the seed, what the next one samples.
        var rollouts = 0
        var queries: [[Int]] = []
        /// The sampled tokens of each row (the stop token included), unpadded.
        var responses: [[Int]] = []
        var batch: PPOBatch?
        /// This rollout's updates so far.
        var updates: [PPOUpdateStatistics] = []
    }

    let model: DecoderModel
    let objective: PPOObjective
    let reference: ReferenceSource
    let valueHead: ScoreHead
    let score: Score
    let seed: UInt64
    var iterator: BatchIterator<PromptBatchLayout>
    var state = State()
    /// Held-out prompts, answered greedily before and after: the reward model's score and the KL it cost.
    let validation: [PromptExample]
    let summary: String

    /// - Parameter valueHeadWeight: the value head's start ([hidden]); TRL starts the value model from the reward model.
    init(config: TrainingConfiguration, languageModel: LanguageModel, reference: ReferenceSource, valueHeadWeight: [Float]?,
         score: @escaping Score) throws {
        let options = config.ppo
        try options.validate()
        guard config.method == .lora else {
            throw TrainingError("ppo trains a LoRA policy (its reference is the frozen start on the same base); drop method: full")
        }
        guard config.gradientAccumulation == 1 else {
            throw TrainingError("ppo: one optimizer step is one minibatch; set gradient_accumulation to 1 and use ppo.num_mini_batches")
        }
        guard config.batchSize % options.numMiniBatches == 0 else {
            throw TrainingError("ppo: batch_size (\(config.batchSize)) must be a multiple of ppo.num_mini_batches (\(options.numMiniBatches))")
        }
        if options.whitenRewards, config.batchSize / options.numMiniBatches < 8 {
            throw TrainingError("ppo.whiten_rewards needs minibatches of at least 8 rows (TRL's rule); raise batch_size")
        }
        model = languageModel.model
        guard let eos = languageModel.tokenizer.eosTokenID else { throw TrainingError("ppo: the tokenizer has no EOS token") }
        // Lathe's batches need no pad token: a pad that is no token is TRL's setup with a [PAD] of its own (pad ≠ EOS),
        // in which the EOS belongs to the response and its log-probability is trained.
        objective = PPOObjective(options: options, padTokenID: -1, eosTokenID: eos,
                                 stopTokenID: options.stopToken == "eos" ? eos : options.stopTokenID)
        self.reference = reference
        self.score = score
        seed = config.seed
        valueHead = ScoreHead(hiddenSize: model.config.hiddenSize, name: "value_head.weight")
        if let valueHeadWeight {
            guard valueHeadWeight.count == model.config.hiddenSize else {
                throw TrainingError("ppo: the value head's start has \(valueHeadWeight.count) weights for hidden size \(model.config.hiddenSize)")
            }
            for (i, w) in valueHeadWeight.enumerated() { valueHead.weight.tensor[i] = w }
        }
        valueHead.weight.trainable = true
        // TRL disables dropout in every model it is given (disable_dropout_in_model).
        for adapter in model.adapters { adapter.training = false }
        let url = URL(fileURLWithPath: config.data!)
        let prompts = try PromptDataset.load(url, model: languageModel)
        // TRL's DataLoader(drop_last=True): every rollout batch is whole.
        iterator = try BatchIterator(examples: prompts, builder: PromptBatchLayout(batchSize: config.batchSize, dropsPartialBatch: true),
                                     seed: config.seed)
        validation = try config.valid.map { try PromptDataset.load(URL(fileURLWithPath: $0), model: languageModel) } ?? []
        guard iterator.batchesInEpoch > 0 else {
            throw TrainingError("\(url.path): \(prompts.count) prompts make no batch of batch_size \(config.batchSize)")
        }
        summary = "\(prompts.count) prompts: \(iterator.batchesInEpoch) rollout batches of \(config.batchSize) per epoch, "
            + "each trained for \(options.numPPOEpochs) epochs of \(options.numMiniBatches) minibatches"
    }

    /// PPO against the reward model adapter at `ppo.reward_model_path`, attached to the same base; the value head
    /// starts from its score head, as TRL's value model starts from the reward model.
    convenience init(config: TrainingConfiguration, languageModel: LanguageModel, reference: ReferenceSource) throws {
        guard let path = config.ppo.rewardModelPath else {
            throw TrainingError("ppo needs a reward model: give --reward-model DIR or ppo.reward_model_path")
        }
        let rewardModel = try RewardModel(adapter: URL(fileURLWithPath: path), on: languageModel.model)
        let stops = languageModel.stopTokenIDs
        // Scored as the reward model was trained: the response as the assistant's turn of the prompt's conversation.
        try self.init(config: config, languageModel: languageModel, reference: reference,
                      valueHeadWeight: rewardModel.head.weight.tensor.array) { prompts, responses in
            let sequences = try zip(prompts, responses).map { prompt, response in
                let text = languageModel.tokenizer.decode(response.filter { !stops.contains($0) }, skipSpecialTokens: true)
                return try prompt.sequence(completion: text, model: languageModel)
            }
            return try rewardModel.scores(sequences, padTokenID: languageModel.padTokenID).map(Double.init)
        }
    }

    var options: PPOOptions { objective.options }
    var updatesPerRollout: Int { options.numPPOEpochs * options.numMiniBatches }
    var batchesInEpoch: Int { iterator.batchesInEpoch * updatesPerRollout }
    var position: BatchPosition { iterator.position }
    func move(to position: BatchPosition) throws { iterator = try iterator.moved(to: position) }
    var taskParameters: [Parameter] { [valueHead.weight] }
    func checkpointState() throws -> Data? { try JSONEncoder().encode(state) }
    func restore(checkpointState: Data) throws { state = try JSONDecoder().decode(State.self, from: checkpointState) }

    /// Greedy responses to the held-out prompts with the policy: `eval_objective/scores` (the reward model's mean),
    /// `eval_objective/kl` (Σ log π − log π_ref over each response, at the sampling temperature, averaged) and
    /// `eval_objective/rlhf_reward` (score − kl_coef · KL), TRL's objective/… on held-out prompts.
    func evaluate() throws -> [String: Double]? {
        guard !validation.isEmpty else { return nil }
        let generator = TokenGenerator(model: model, stopTokenIDs: objective.stopTokenID.map { [$0] } ?? [])
        let temperature = Float(options.temperature)
        var scores: [Double] = [], divergences: [Double] = [], lengths: [Double] = []
        for start in stride(from: 0, to: validation.count, by: 8) {
            let prompts = Array(validation[start..<min(start + 8, validation.count)])
            let rollouts = try withPolicy {
                try generator.sample(prompts: prompts.map(\.ids), sequencesPerPrompt: 1, maxTokens: options.responseLength,
                                     sampling: SamplingOptions())
            }
            scores += try score(prompts, rollouts.map(\.completion))
            let sequences = RolloutSequences(queries: rollouts.map(\.prompt), responses: rollouts.map(\.completion),
                                             width: rollouts.map(\.completion.count).max() ?? 0)
            let policy = sequences.responseValues(try withPolicy { try sequences.logProbabilities(model, temperature: temperature, saving: nil) })
            let reference = sequences.responseValues(try withReference {
                try sequences.logProbabilities(model, temperature: temperature, saving: nil)
            })
            divergences += zip(policy, reference).map { zip($0, $1).reduce(0) { $0 + Double($1.0 - $1.1) } }
            lengths += rollouts.map { Double($0.completion.count) }
        }
        return ["eval_objective/scores": mean(scores), "eval_objective/kl": mean(divergences),
                "eval_objective/rlhf_reward": mean(scores) - options.klCoef * mean(divergences),
                "eval_completions/mean_length": mean(lengths)]
    }

    func accumulate(microBatches count: Int, activations: (Int, Int) -> TrainingActivations) throws -> StepOutcome {
        let started = Date()
        var timing: [String: Double] = [:]
        if state.batch == nil || state.updates.count == updatesPerRollout {
            try sampleRollout()
            // Where the time goes: sampling and scoring a rollout batch, then each update.
            timing["time/rollout_s"] = Date().timeIntervalSince(started)
            timing["num_tokens/rollout"] = Double(state.responses.reduce(0) { $0 + $1.count })
        }
        let updating = Date()
        guard let batch = state.batch else { throw TrainingError("ppo: no rollout batch") }
        let epoch = state.updates.count / options.numMiniBatches, minibatch = state.updates.count % options.numMiniBatches
        let size = batch.rows / options.numMiniBatches
        let rows = Array(Self.permutation(batch.rows, seed: seed, rollout: state.rollouts, epoch: epoch)[minibatch * size..<(minibatch + 1) * size])

        let sequences = RolloutSequences(queries: rows.map { state.queries[$0] }, responses: rows.map { state.responses[$0] },
                                     width: batch.width)
        let saved = activations(sequences.batchSize, sequences.length)
        let (logProbabilities, values, hidden) = try withPolicy {
            let logProbabilities = try sequences.logProbabilities(model, temperature: Float(options.temperature), saving: saved)
            let hidden = model.finalHiddenStates(of: saved)
            return (logProbabilities, sequences.values(valueHead, hidden: hidden), hidden)
        }
        let update = try objective.update(batch, rows: rows, logProbabilities: logProbabilities, values: values)
        // d loss / d log p of each response token at its target position; d loss / d value into the hidden states.
        var logProbabilityGradient = [Float](repeating: 0, count: sequences.tokens.count)
        var valueRows: [Int] = [], valueGradient: [Float] = []
        for (i, position) in sequences.readAt.enumerated() {
            guard let position else { continue }
            if sequences.targets[position] >= 0 { logProbabilityGradient[position] = update.logProbabilityGradient[i] }
            valueRows.append(position)
            valueGradient.append(update.valueGradient[i])
        }
        let dHidden = Tensor(zeros: [sequences.tokens.count, model.config.hiddenSize])
        valueHead.backward(hidden: hidden, rows: valueRows, scoreGradient: valueGradient, dHidden: dHidden)
        try withPolicy {
            model.backward(activations: saved, targets: sequences.targets, logProbabilityGradient: logProbabilityGradient,
                           temperature: Float(options.temperature), finalHiddenGradient: dHidden)
        }
        state.updates.append(update.statistics)
        timing["time/update_s"] = Date().timeIntervalSince(updating)
        return StepOutcome(loss: update.loss, tokens: sequences.valid.filter { $0 }.count,
                           metrics: objective.metrics(batch, updates: state.updates).merging(timing) { $1 })
    }

    /// Samples the next `batch_size` prompts' responses with the policy and scores them: log-probabilities (the
    /// sampler's), the reference's, the values, the reward model's scores; then TRL's rollout processing.
    func sampleRollout() throws {
        let prompts = try iterator.next()
        let queries = prompts.map(\.ids)
        let sampling = SamplingOptions(temperature: Float(options.temperature),
                                       seed: seed &+ UInt64(state.rollouts + 1) &* 0x9E37_79B9_7F4A_7C15)
        let generator = TokenGenerator(model: model, stopTokenIDs: objective.stopTokenID.map { [$0] } ?? [])
        let rollouts = try withPolicy {
            try generator.sample(prompts: queries, sequencesPerPrompt: 1, maxTokens: options.responseLength, sampling: sampling)
        }
        let width = max(1, rollouts.map(\.completion.count).max() ?? 1)
        var responses: [Int] = [], logProbabilities: [Double] = [], referenceLogProbabilities: [Double] = [], values: [Double] = []
        for chunk in stride(from: 0, to: rollouts.count, by: options.localRolloutForwardBatchSize) {
            let part = Array(rollouts[chunk..<min(chunk + options.localRolloutForwardBatchSize, rollouts.count)])
            let sequences = RolloutSequences(queries: part.map(\.prompt), responses: part.map(\.completion), width: width)
            referenceLogProbabilities += try withReference {
                try sequences.logProbabilities(model, temperature: Float(options.temperature), saving: nil)
            }
            values += try withPolicy {
                sequences.values(valueHead, hidden: try model.finalHiddenStates(
                    tokens: sequences.tokens, batchSize: sequences.batchSize, positions: sequences.positions, valid: sequences.valid))
            }
            for rollout in part {
                let padding = width - rollout.completion.count
                responses += rollout.completion + Array(repeating: objective.padTokenID, count: padding)
                logProbabilities += rollout.logProbabilities.map(Double.init) + Array(repeating: 0, count: padding)
            }
        }
        // The reward model reads each sequence up to its last response token (TRL's get_reward on the truncated rows).
        let truncated = objective.truncated(responses, width: width)
        let scored = (0..<rollouts.count).map { row in
            Array(truncated[row * width..<(row + 1) * width].prefix { $0 != objective.padTokenID })
        }
        let scores = try score(prompts, scored)
        state.batch = try objective.batch(responses: responses, width: width, logProbabilities: logProbabilities,
                                          referenceLogProbabilities: referenceLogProbabilities, values: values, scores: scores)
        state.queries = queries
        state.responses = rollouts.map(\.completion)
        state.updates = []
        state.rollouts += 1
    }

    func withPolicy<T>(_ body: () throws -> T) throws -> T {
        try model.withAdapters(where: { $0.adapterName == "default" }, body)
    }

    func withReference<T>(_ body: () throws -> T) throws -> T { try reference.run(on: model, body) }

    /// A PPO epoch's minibatch order (TRL: np.random.permutation), from the seed, rollout and epoch alone.
    static func permutation(_ count: Int, seed: UInt64, rollout: Int, epoch: Int) -> [Int] {
        var order = Array(0..<count)
        var random = SeededGenerator(seed: seed ^ (UInt64(rollout) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(epoch) &* 0xBF58_476D_1CE4_E5B9))
        for i in stride(from: count - 1, to: 0, by: -1) {
            order.swapAt(i, Int(UInt64(i + 1).multipliedFullWidth(by: random.next()).high))
        }
        return order
    }
}
