import Foundation
import LatheData
import LatheModels

/// Perplexity on held-out data, computed by the training loss code: exp of the mean token loss over the tokens
/// training would supervise (completions / assistant turns, or whole texts). Texts longer than the window are
/// scored with a sliding window that gives every token at least half a window of context.
public struct PerplexityReport: Encodable, Sendable {
    public let perplexity: Double
    public let meanLoss: Double
    public let tokens: Int
    public let examples: Int

    enum CodingKeys: String, CodingKey { case perplexity, tokens, examples, meanLoss = "mean_loss" }

    public static func evaluate(rows: [DatasetRow], renderer: SFTRenderer, window: Int) throws -> PerplexityReport {
        guard window >= 2 else { throw DatasetError(file: "", line: 0, message: "the window must be at least 2 tokens") }
        var sum = 0.0, count = 0
        for row in rows {
            let example = try renderer.render(row)
            let stride = max(1, window / 2)
            var scoredUpTo = 0  // targets before this index were scored by an earlier window
            var start = 0
            while true {
                let end = min(start + window, example.ids.count)
                let ids = Array(example.ids[start..<end])
                // Target t (predicting ids[t + 1]) counts if supervised and not scored before.
                let targets = (0..<ids.count).map { t -> Int in
                    let next = start + t + 1
                    guard next < end, next > scoredUpTo, example.supervised[next] else { return Batch.ignoredTarget }
                    return example.ids[next]
                }
                let (s, c) = try languageModelLoss(renderer.model.model, batch: Batch(rows: [ids], targets: [targets]))
                sum += s; count += c
                scoredUpTo = end - 1
                if end == example.ids.count { break }
                start += stride
            }
        }
        guard count > 0 else { throw DatasetError(file: "", line: 0, message: "no supervised tokens to score") }
        return PerplexityReport(perplexity: Foundation.exp(sum / Double(count)), meanLoss: sum / Double(count),
                                tokens: count, examples: rows.count)
    }
}
