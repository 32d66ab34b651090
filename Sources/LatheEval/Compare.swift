import Foundation
import LatheData
import LatheModels
import LatheTokenizers

/// How a comparison generates and how it computes its intervals.
public struct CompareSettings: Sendable {
    public var maxTokens: Int
    /// Prompts per forward pass.
    public var batchSize: Int
    /// Example i is sampled with seed `sampling.seed + i`, whatever the batch it falls in.
    public var sampling: SamplingOptions
    public var bootstrap: Bootstrap
    public var normalization: AnswerNormalization

    public init(maxTokens: Int = 128, batchSize: Int = 4, sampling: SamplingOptions = SamplingOptions(),
                bootstrap: Bootstrap = Bootstrap(), normalization: AnswerNormalization = .squad) {
        self.maxTokens = maxTokens; self.batchSize = batchSize; self.sampling = sampling
        self.bootstrap = bootstrap; self.normalization = normalization
    }

    func validate() throws {
        guard maxTokens >= 1 else { throw EvalError.invalidInput("max tokens must be at least 1, got \(maxTokens)") }
        guard batchSize >= 1 else { throw EvalError.invalidInput("batch size must be at least 1, got \(batchSize)") }
        try sampling.validate()
    }
}

/// What one system (the base, or the base with its adapters) did on the comparison set.
public struct SystemResult: Sendable {
    public let answers: [String]
    public let scores: GenerationReport
    /// Per-example BLEU statistics, which add up to the corpus BLEU of any resample.
    public let bleuStatistics: [BLEUStatistics]
    /// Per-example perplexity of the first reference after the prompt (its summed loss is meanLoss × tokens).
    public let referenceLosses: [PerplexityReport]

    /// exp of the mean token loss over the references of `indices` (every example when nil): corpus perplexity.
    /// Every reference has at least one scored token (PerplexityReport throws otherwise), so the count is positive.
    public func perplexity(of indices: [Int]? = nil) -> Double {
        var sum = 0.0, count = 0
        for i in indices ?? Array(referenceLosses.indices) {
            sum += referenceLosses[i].meanLoss * Double(referenceLosses[i].tokens)
            count += referenceLosses[i].tokens
        }
        return Foundation.exp(sum / Double(count))
    }

    public func bleu(of indices: [Int]) -> Double { BLEU.score(indices.reduce(BLEUStatistics()) { $0 + bleuStatistics[$1] }) }
}

/// One metric of the two systems side by side: tuned − base, with the bootstrap interval of that difference.
public struct MetricComparison: Sendable, Equatable {
    public let name: String
    public let base: Double
    public let tuned: Double
    public let delta: Double
    public let interval: ConfidenceInterval
}

/// The base model against the same model with its LoRA adapters on, on the same prompts.
public struct ComparisonReport: Sendable {
    public let examples: [CompareExample]
    public let base: SystemResult
    public let tuned: SystemResult
    /// exact_match, f1, bleu, rouge1, rouge2, rougeL, perplexity, in that order.
    public let metrics: [MetricComparison]
    public let settings: CompareSettings

    /// The per-example metrics, by their JSON names.
    static let exampleMetrics: [(String, KeyPath<ExampleScores, Double>)] = [
        ("exact_match", \.exactMatch), ("f1", \.f1), ("rouge1", \.rouge1), ("rouge2", \.rouge2), ("rougeL", \.rougeL)]

    /// Generates for every example with the adapters of `lm` off (the base) and then on (tuned), in one load, and
    /// scores both: exact match, F1, ROUGE (per example, paired bootstrap of the difference), corpus BLEU and the
    /// perplexity of the references (bootstrap over resampled examples). Leaves every adapter on.
    /// - Parameter progress: called with a line of text as each batch or scoring step finishes.
    public static func evaluate(_ examples: [CompareExample], lm: LanguageModel, settings: CompareSettings,
                                progress: (String) -> Void = { _ in }) throws -> ComparisonReport {
        try settings.validate()
        guard !examples.isEmpty else { throw EvalError.invalidInput("no examples to compare") }
        guard !lm.model.adapters.isEmpty else {
            throw EvalError.invalidInput("the model has no LoRA adapter attached: give --adapter to compare base and tuned")
        }
        let prompts = try examples.map { try $0.promptTokens(lm) }
        defer { lm.model.setAdapters(enabled: true) }
        lm.model.setAdapters(enabled: false)
        let base = try system("base", examples, prompts: prompts, lm: lm, settings: settings, progress: progress)
        lm.model.setAdapters(enabled: true)
        let tuned = try system("tuned", examples, prompts: prompts, lm: lm, settings: settings, progress: progress)

        let bootstrap = settings.bootstrap
        var metrics: [MetricComparison] = []
        for (name, metric) in exampleMetrics {
            let baseScores = base.scores.examples.map { $0[keyPath: metric] }
            let tunedScores = tuned.scores.examples.map { $0[keyPath: metric] }
            let b = base.scores.mean(metric), t = tuned.scores.mean(metric)
            metrics.append(MetricComparison(name: name, base: b, tuned: t, delta: t - b,
                                            interval: try bootstrap.pairedDifference(tunedScores, baseScores)))
        }
        let all = Array(examples.indices)
        let bleuBase = base.bleu(of: all), bleuTuned = tuned.bleu(of: all)
        metrics.insert(MetricComparison(
            name: "bleu", base: bleuBase, tuned: bleuTuned, delta: bleuTuned - bleuBase,
            interval: bootstrap.interval(estimate: bleuTuned - bleuBase, count: examples.count) { tuned.bleu(of: $0) - base.bleu(of: $0) }),
            at: 2)
        let perplexityBase = base.perplexity(), perplexityTuned = tuned.perplexity()
        metrics.append(MetricComparison(
            name: "perplexity", base: perplexityBase, tuned: perplexityTuned, delta: perplexityTuned - perplexityBase,
            interval: bootstrap.interval(estimate: perplexityTuned - perplexityBase, count: examples.count) {
                tuned.perplexity(of: $0) - base.perplexity(of: $0)
            }))
        return ComparisonReport(examples: examples, base: base, tuned: tuned, metrics: metrics, settings: settings)
    }

    /// Generates and scores with the adapters as they are now.
    static func system(_ label: String, _ examples: [CompareExample], prompts: [[Int]], lm: LanguageModel,
                       settings: CompareSettings, progress: (String) -> Void) throws -> SystemResult {
        let answers = try generate(prompts, firstIndex: 0, lm: lm, settings: settings) { done in
            if done % settings.batchSize == 0 || done == prompts.count { progress("\(label): generated \(done)/\(prompts.count)") }
        }
        let pairs = zip(answers, examples).map { GenerationPair(prediction: $0, references: $1.references) }
        // No truncation: PerplexityReport's sliding window covers long examples.
        let renderer = SFTRenderer(model: lm, options: try SFTOptions(maxLength: Int(Int32.max), lossOn: .completion))
        let window = max(2, lm.model.config.maxPositions)
        let losses = try examples.map { example -> PerplexityReport in
            try PerplexityReport.evaluate(rows: [example.referenceRow(hasChatTemplate: lm.chatTemplate != nil)],
                                          renderer: renderer, window: window)
        }
        progress("\(label): scored the references")
        return SystemResult(answers: answers,
                            scores: GenerationReport(pairs: pairs, options: GenerationMetricOptions(normalization: settings.normalization)),
                            bleuStatistics: pairs.map { BLEUStatistics(hypothesis: $0.prediction, references: $0.references) },
                            referenceLosses: losses)
    }

    /// The answers to `prompts` on a batch decoder of `settings.batchSize` slots, with the adapter switched on now;
    /// prompt i is sampled with seed `sampling.seed + firstIndex + i`, so each answer is what `LanguageModel.generate`
    /// gives for the same prompt and seed. `onFinished` gets the number of answers done so far.
    public static func generate(_ prompts: [[Int]], firstIndex: Int, lm: LanguageModel, settings: CompareSettings,
                                onFinished: (Int) -> Void = { _ in }) throws -> [String] {
        guard !prompts.isEmpty else { return [] }
        let adapter = try lm.model.switchedOnAdapter()
        let requests = prompts.indices.map { i in
            var sampling = settings.sampling
            sampling.seed = settings.sampling.seed &+ UInt64(firstIndex + i)
            return DecodeRequest(prompt: prompts[i], maxTokens: settings.maxTokens, sampling: sampling, adapter: adapter)
        }
        let decoder = BatchDecoder(model: lm, slots: settings.batchSize,
                                   contextPerSlot: prompts.map(\.count).max()! + settings.maxTokens)
        var answers = Array(repeating: "", count: prompts.count), done = 0
        try decoder.decodeAll(requests) { i, event in
            switch event {
            case .token(let token): answers[i] += token.text
            case .finished: done += 1; onFinished(done)
            case .failed: break  // decodeAll throws first
            }
        }
        return answers
    }
}
