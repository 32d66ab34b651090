import Foundation
import LatheData
import LatheModels

/// Where a preference objective's reference log-probabilities come from. None needs a second copy of the base.
public enum ReferenceSource: Equatable, Sendable {
    /// The same model with every adapter switched off: the base (TRL's reference for a new PEFT adapter).
    case adaptersOff
    /// The same model with only this (frozen) adapter on: the SFT adapter training started from.
    case adapter(String)

    /// Runs `body` on `model` with the reference's adapters on (none: the base; or the frozen adapter), then restores
    /// every switch.
    func run<T>(on model: DecoderModel, _ body: () throws -> T) throws -> T {
        switch self {
        case .adaptersOff: return try model.withAdapters(where: { _ in false }, body)
        case .adapter(let name): return try model.withAdapters(where: { $0.adapterName == name }, body)
        }
    }
}

/// Preference training (DPO, ORPO, SimPO, KTO): each micro-batch's rows go through the policy once with their
/// activations kept; the objective turns the log-probabilities into a loss and per-token weights, which the backward
/// pass takes from there. The reference runs first, without gradient, on the same weights (adapters switched).
final class PreferenceTask: TrainingTask {
    let model: DecoderModel
    let objective: PreferenceObjective
    let reference: ReferenceSource?
    var iterator: BatchIterator<PreferenceBatchBuilder>
    let validationBatches: [PreferenceBatch]
    let summary: String

    /// - Parameter precompute: compute the reference once for every item now (full fine-tuning always does: the
    ///   weights move, and there is no second copy to keep).
    init(config: TrainingConfiguration, languageModel: LanguageModel, method: PreferenceMethod,
         reference: ReferenceSource?) throws {
        model = languageModel.model
        objective = PreferenceObjective(method: method, options: config.preference)
        self.reference = method.needsReference ? reference : nil
        let builder = try PreferenceBatchBuilder(batchSize: config.batchSize, paddingID: languageModel.tokenizer.eosTokenID ?? 0,
                                                 scoresPrompt: objective.scoresPrompt)
        let renderer = PreferenceRenderer(model: languageModel, maxLength: config.preference.maxLength)
        let (train, report) = try Self.loadItems(URL(fileURLWithPath: config.data!), method: method, renderer: renderer,
                                                 batchSize: config.batchSize, maxLength: config.preference.maxLength)
        summary = report.description
        var validation = try config.valid.map {
            try Self.loadItems(URL(fileURLWithPath: $0), method: method, renderer: renderer, batchSize: config.batchSize,
                               maxLength: config.preference.maxLength).items
        } ?? []
        var items = train
        if method.needsReference, config.preference.precomputeReferenceLogProbabilities || config.method == .full {
            let precompute = PreferenceScorer(model: model, reference: reference)
            items = try precompute.withReferenceLogProbabilities(items, builder: builder)
            validation = try precompute.withReferenceLogProbabilities(validation, builder: builder)
        }
        iterator = try BatchIterator(examples: items, builder: builder, seed: config.seed)
        validationBatches = try builder.batches(validation)
    }

    var scorer: PreferenceScorer { PreferenceScorer(model: model, reference: reference) }
    var batchesInEpoch: Int { iterator.batchesInEpoch }
    var position: BatchPosition { iterator.position }
    func move(to position: BatchPosition) throws { iterator = try iterator.moved(to: position) }

    /// Rows of the file as training items: pairs, or (KTO) unpaired rows, each with a mismatched completion: the
    /// completions rotated by one within consecutive groups of `batchSize` rows in file order, TRL's KL pairing
    /// (fixed per row here, so that it can be precomputed and survives shuffling).
    static func loadItems(_ url: URL, method: PreferenceMethod, renderer: PreferenceRenderer, batchSize: Int,
                          maxLength: Int) throws -> (items: [PreferenceItem], report: PreferenceReport) {
        guard method.isUnpaired else {
            let (pairs, report) = try PreferenceDataset.loadPairs(url, renderer: renderer)
            return (pairs.map(PreferenceItem.init), report)
        }
        let (rows, report) = try PreferenceDataset.loadUnpaired(url, renderer: renderer)
        var items = rows.map(PreferenceItem.init)
        for start in stride(from: 0, to: items.count, by: batchSize) {
            let group = start..<min(start + batchSize, items.count)
            for i in group {
                let from = i == group.lowerBound ? group.upperBound - 1 : i - 1
                items[i].mismatched = Array(rows[from].completion.prefix(max(1, maxLength - items[i].prompt.count)))
            }
        }
        return (items, report)
    }

    func accumulate(microBatches count: Int, activations: (Int, Int) -> TrainingActivations) throws -> StepOutcome {
        var batches: [PreferenceBatch] = []
        for _ in 0..<count { batches.append(try iterator.next()) }
        return try itemWeighted(batches, items: \.items, tokens: { $0.sequences.valid.filter { $0 }.count }) { batch, share in
            let result = try scorer.lossAndGradient(objective, batch, scale: Float(share),
                                                    activations: activations(batch.sequences.batchSize, batch.sequences.length))
            return (result.loss, result.metrics)
        }
    }

    func evaluate() throws -> [String: Double]? {
        guard !validationBatches.isEmpty else { return nil }
        let outcome = try itemWeighted(validationBatches, items: \.items, tokens: { _ in 0 }) { batch, _ in
            let result = try scorer.lossAndGradient(objective, batch, scale: 0, activations: nil)
            return (result.loss, result.metrics)
        }
        return outcome.heldOutMetrics
    }
}

/// Summed completion log-probabilities of batches, by the policy or the reference, and an objective's loss and
/// gradient on a batch.
public struct PreferenceScorer {
    public let model: DecoderModel
    public let reference: ReferenceSource?

    public init(model: DecoderModel, reference: ReferenceSource?) {
        self.model = model
        self.reference = reference
    }

    /// The objective on one micro-batch; with `activations`, adds `scale`·its gradient into the trainable parameters.
    public func lossAndGradient(_ objective: PreferenceObjective, _ batch: PreferenceBatch, scale: Float,
                         activations: TrainingActivations?) throws -> ObjectiveResult {
        // The no-gradient passes first: the policy pass below keeps its activations for the backward pass.
        var referenceSums = batch.reference, mismatchedPolicy: [Double]?, mismatchedReference = batch.mismatchedReference
        // The reference pass runs in the training activations (the policy pass overwrites them next): no second set.
        if objective.method.needsReference, referenceSums == nil { referenceSums = try self.referenceSums(batch, scratch: activations) }
        if let mismatched = batch.mismatched {
            // In the training activations too where the shapes agree (else the model's own forward buffers).
            mismatchedPolicy = try sums(mismatched, scratch: activations)
            if mismatchedReference == nil { mismatchedReference = try withReference { try sums(mismatched, scratch: activations) } }
        }
        let s = batch.sequences
        let logProbabilities = try model.targetLogProbabilities(tokens: s.inputs, batchSize: s.batchSize, positions: s.positions,
                                                                valid: s.valid, segments: s.segments, targets: s.targets,
                                                                saving: activations)
        let result = try objective.evaluate(ObjectiveInput(batch: batch, logProbabilities: logProbabilities, reference: referenceSums,
                                                           mismatchedPolicy: mismatchedPolicy,
                                                           mismatchedReference: mismatchedReference))
        if let activations {
            model.backward(activations: activations, targets: s.targets, logProbabilityGradient: result.gradient.map { $0 * scale })
        }
        return result
    }

    /// Runs `body` with the reference's adapters on (none: the base; or the frozen adapter), then restores the switches.
    func withReference<T>(_ body: () throws -> T) throws -> T { try (reference ?? .adaptersOff).run(on: model, body) }

    func sums(_ batch: Batch, kinds: [TargetKind]? = nil, scratch: TrainingActivations? = nil) throws -> [Double] {
        try summedLogProbabilities(model, batch: batch, kinds: kinds, scratch: scratch)
    }

    func referenceSums(_ batch: PreferenceBatch, scratch: TrainingActivations? = nil) throws -> [Double] {
        try withReference { try sums(batch.sequences, kinds: batch.kinds, scratch: scratch) }
    }

    /// The items with their reference log-probabilities filled in (completions, then the mismatched one).
    func withReferenceLogProbabilities(_ items: [PreferenceItem], builder: PreferenceBatchBuilder) throws -> [PreferenceItem] {
        var result = items
        for (index, batch) in try builder.batches(items).enumerated() {
            let rows = try referenceSums(batch)
            let mismatched = try batch.mismatched.map { m in try withReference { try sums(m) } }
            for i in 0..<batch.items {
                let item = index * builder.batchSize + i
                result[item].reference = (0..<batch.completionsPerItem).map { rows[$0 * batch.items + i] } + (mismatched.map { [$0[i]] } ?? [])
            }
        }
        return result
    }
}
