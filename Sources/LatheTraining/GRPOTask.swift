import Foundation
import LatheData
import LatheEval
import LatheModels
import LatheTensors

/// GRPO (TRL's GRPOTrainer with num_iterations 1): each step samples `num_generations` completions of
/// batch_size × gradient_accumulation / num_generations prompts with the policy, rewards them, turns the rewards
/// into group-relative advantages, and takes the clipped surrogate's gradient over micro-batches of `batch_size`
/// completions. The reference, when beta > 0, is the same model with the adapters switched (no second copy).
final class GRPOTask: TrainingTask {
    let languageModel: LanguageModel
    let options: GRPOOptions
    let objective: GRPOObjective
    let rewards: [(spec: RewardSpec, function: any RewardFunction)]
    let scorer: PreferenceScorer
    var iterator: BatchIterator<PromptBatchLayout>
    let validation: [PromptExample]
    let microBatchSize: Int
    let seed: UInt64
    let summary: String

    var model: DecoderModel { languageModel.model }

    init(config: TrainingConfiguration, languageModel: LanguageModel, reference: ReferenceSource) throws {
        self.languageModel = languageModel
        options = config.grpo
        let prompts = options.promptsPerStep(generationBatch: config.batchSize * config.gradientAccumulation)
        objective = GRPOObjective(options: options)
        rewards = try options.rewards.map { spec in
            do {
                return (spec, try spec.make(rewardModel: { folder in
                    // Each reward model is its own adapter on the shared base.
                    let name = "reward-\(spec.metricsLabel)"
                    return RewardModelReward(label: spec.metricsLabel, rewardModel: try RewardModel(adapter: URL(fileURLWithPath: folder), on: languageModel.model,
                                                                          adapterName: name),
                                             padTokenID: languageModel.padTokenID)
                }))
            } catch let error as EvalError { throw TrainingError("\(error)") }
        }
        scorer = PreferenceScorer(model: languageModel.model, reference: reference)
        let train = try PromptDataset.load(URL(fileURLWithPath: config.data!), model: languageModel)
        validation = try config.valid.map { try PromptDataset.load(URL(fileURLWithPath: $0), model: languageModel) } ?? []
        iterator = try BatchIterator(examples: train, builder: PromptBatchLayout(batchSize: prompts),
                                     seed: config.seed)
        microBatchSize = config.batchSize
        seed = config.seed
        summary = "\(train.count) prompts, \(prompts) per step × \(options.numGenerations) "
            + "completions; rewards " + options.rewards.map { "\($0.metricsLabel)×\($0.weight)" }.joined(separator: " + ")
    }

    var batchesInEpoch: Int { iterator.batchesInEpoch }
    var position: BatchPosition { iterator.position }
    func move(to position: BatchPosition) throws { iterator = try iterator.moved(to: position) }

    func accumulate(microBatches count: Int, activations: (Int, Int) -> TrainingActivations) throws -> StepOutcome {
        // The rollouts' streams follow from the seed and the data position alone, so a resumed run samples the same.
        var streams = SeededGenerator(seed: seed ^ (UInt64(iterator.position.epoch) << 32 | UInt64(iterator.position.index)))
        let prompts = try iterator.next()
        let sampling = SamplingOptions(temperature: options.temperature, topK: options.topK, topP: options.topP,
                                       seed: streams.next())
        let started = Date()
        // Sampling runs with dropout off (TRL generates from the unwrapped model in eval mode).
        let rollouts = try model.withoutDropout {
            try TokenGenerator(model: model, stopTokenIDs: languageModel.stopTokenIDs)
                .sample(prompts: prompts.map(\.ids), sequencesPerPrompt: options.numGenerations,
                        maxTokens: options.maxCompletionLength, sampling: sampling)
        }
        let sampled = Date()
        let examples = prompts.flatMap { Array(repeating: $0, count: options.numGenerations) }
        let (total, metrics) = try score(rollouts, examples: examples, prefix: "")
        let scored = Date()
        let advantages = GRPOObjective.advantages(rewards: total, groupSize: options.numGenerations, scaling: options.scaleRewards)
        let counted = rollouts.map { !options.maskTruncatedCompletions || $0.stopped }
        let generationTokens = zip(rollouts, counted).reduce(0) { $0 + ($1.1 ? $1.0.completion.count : 0) }

        var outcome = StepOutcome(loss: 0, tokens: 0, metrics: metrics)
        var objectiveMetrics: [String: [Double]] = [:]
        let starts = Array(stride(from: 0, to: rollouts.count, by: microBatchSize))
        for start in starts {
            let part = start..<min(start + microBatchSize, rollouts.count)
            let batch = RolloutSequences(queries: rollouts[part].map(\.prompt), responses: rollouts[part].map(\.completion),
                                         width: rollouts[part].map(\.completion.count).max() ?? 0)
            let reference = options.beta == 0 ? nil : try scorer.withReference {
                batch.responseValues(try batch.logProbabilities(model, temperature: options.temperature, saving: nil))
            }
            let saved = activations(batch.batchSize, batch.length)
            let policy = batch.responseValues(try batch.logProbabilities(model, temperature: options.temperature, saving: saved))
            let rows = part.enumerated().map { i, r in
                GRPOCompletion(logProbabilities: policy[i], referenceLogProbabilities: reference?[i],
                               advantage: advantages[r], counted: counted[r])
            }
            let result = objective.evaluate(rows, microBatches: starts.count, generationTokens: generationTokens)
            model.backward(activations: saved, targets: batch.targets, logProbabilityGradient: batch.targetGradient(result.gradients),
                           temperature: options.temperature)
            outcome.loss += result.loss
            outcome.tokens += batch.valid.filter { $0 }.count
            for (key, value) in result.metrics where value.isFinite { objectiveMetrics[key, default: []].append(value) }
        }
        // TRL logs each micro-batch's value and reports their mean.
        for (key, values) in objectiveMetrics { outcome.metrics[key] = values.reduce(0, +) / Double(values.count) }
        // Where the step's time went (TRL's profiling/… timers): sampling, rewarding, the update.
        outcome.metrics["time/rollout_s"] = sampled.timeIntervalSince(started)
        outcome.metrics["time/reward_s"] = scored.timeIntervalSince(sampled)
        outcome.metrics["time/update_s"] = Date().timeIntervalSince(scored)
        outcome.metrics["num_tokens/rollout"] = Double(rollouts.reduce(0) { $0 + $1.completion.count })
        return outcome
    }

    /// Greedy completions of the held-out prompts, rewarded: `eval_reward`, `eval_rewards/<label>/mean`, …
    func evaluate() throws -> [String: Double]? {
        guard !validation.isEmpty else { return nil }
        var all: [Rollout] = []
        let generator = TokenGenerator(model: model, stopTokenIDs: languageModel.stopTokenIDs)
        for start in stride(from: 0, to: validation.count, by: 16) {
            let part = validation[start..<min(start + 16, validation.count)]
            all += try generator.sample(prompts: part.map(\.ids), sequencesPerPrompt: 1, maxTokens: options.maxCompletionLength,
                                        sampling: SamplingOptions())
        }
        let (total, metrics) = try score(all, examples: validation, prefix: "eval_")
        var result = metrics.filter { !$0.key.hasPrefix("eval_reward_std") && !$0.key.hasPrefix("eval_frac_") }
        let scored = total.compactMap { $0 }
        result["eval_reward"] = GRPOObjective.mean(scored)
        return result
    }

    /// Every reward of every rollout, their weighted sums (nil: no reward scored it), and TRL's reward and
    /// completion metrics.
    func score(_ rollouts: [Rollout], examples: [PromptExample], prefix: String) throws -> ([Double?], [String: Double]) {
        let stops = languageModel.stopTokenIDs
        let inputs = try zip(rollouts, examples).map { rollout, example in
            let body = rollout.stopped ? Array(rollout.completion.dropLast()) : rollout.completion
            let completion = languageModel.tokenizer.decode(body, skipSpecialTokens: true)
            return RewardInput(prompt: example.text, completion: completion, completionTokenCount: body.count, row: example.fields,
                               sequence: try example.sequence(completion: completion, model: languageModel))
        }
        var total = [Double?](repeating: nil, count: rollouts.count)
        var metrics: [String: Double] = [:]
        for (spec, function) in rewards {
            let values: [Double?]
            do { values = try function.rewards(inputs) } catch let error as EvalError { throw TrainingError("\(error)") }
            guard values.count == inputs.count else {
                throw TrainingError("reward \(spec.metricsLabel) gave \(values.count) values for \(inputs.count) completions")
            }
            for (i, value) in values.enumerated() { if let value { total[i] = (total[i] ?? 0) + spec.weight * value } }
            let scored = values.compactMap { $0 }
            metrics["\(prefix)rewards/\(spec.metricsLabel)/mean"] = GRPOObjective.mean(scored)
            metrics["\(prefix)rewards/\(spec.metricsLabel)/std"] = GRPOObjective.standardDeviation(scored)
        }
        let groups = stride(from: 0, to: total.count, by: options.numGenerations).map {
            total[$0..<min($0 + options.numGenerations, total.count)].compactMap { $0 }
        }
        metrics["\(prefix)reward"] = GRPOObjective.mean(groups.map(GRPOObjective.mean))
        metrics["\(prefix)reward_std"] = GRPOObjective.mean(groups.map(GRPOObjective.standardDeviation))
        metrics["\(prefix)frac_reward_zero_std"] = GRPOObjective.mean(groups.map { GRPOObjective.standardDeviation($0) == 0 ? 1 : 0 })
        let lengths = rollouts.map { Double($0.completion.count) }
        let terminated = rollouts.filter { $0.completion.last.map(stops.contains) ?? false }.map { Double($0.completion.count) }
        metrics["\(prefix)completions/mean_length"] = GRPOObjective.mean(lengths)
        metrics["\(prefix)completions/min_length"] = lengths.min() ?? 0
        metrics["\(prefix)completions/max_length"] = lengths.max() ?? 0
        metrics["\(prefix)completions/clipped_ratio"] = 1 - Double(terminated.count) / Double(max(1, rollouts.count))
        metrics["\(prefix)completions/mean_terminated_length"] = terminated.isEmpty ? 0 : GRPOObjective.mean(terminated)
        return (total, metrics.filter { $0.value.isFinite })
    }
}
