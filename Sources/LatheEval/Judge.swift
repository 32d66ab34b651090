import Foundation
import LatheModels
import LatheRemote

/// One answer to grade: a line `{"prompt", "answer"}` of the input.
public struct JudgeGradingItem: Sendable, Equatable {
    public var prompt: String
    public var answer: String
    /// Where the item came from ("file:line"), for naming it in failures.
    public var source: String

    public init(prompt: String, answer: String, source: String = "") {
        self.prompt = prompt; self.answer = answer; self.source = source
    }

    public static func read(_ lines: [JSONLine]) throws -> [JudgeGradingItem] {
        try lines.map { line in
            JudgeGradingItem(prompt: try requiredString(line, "prompt"), answer: try requiredString(line, "answer"),
                             source: "\(line.file):\(line.line)")
        }
    }
}

/// Two answers to one prompt to compare: a line `{"prompt", "base", "tuned"}` of the input.
public struct JudgePairItem: Sendable, Equatable {
    public var prompt: String
    public var base: String
    public var tuned: String
    public var source: String

    public init(prompt: String, base: String, tuned: String, source: String = "") {
        self.prompt = prompt; self.base = base; self.tuned = tuned; self.source = source
    }

    public static func read(_ lines: [JSONLine]) throws -> [JudgePairItem] {
        try lines.map { line in
            JudgePairItem(prompt: try requiredString(line, "prompt"), base: try requiredString(line, "base"),
                          tuned: try requiredString(line, "tuned"), source: "\(line.file):\(line.line)")
        }
    }
}

private func requiredString(_ line: JSONLine, _ key: String) throws -> String {
    guard let value = line.value[key] else { throw line.error("missing the \"\(key)\" field") }
    guard let text = value.string else { throw line.error("\"\(key)\" must be a string, got \(value.summary)") }
    return text
}

/// An item the judge could not score — the endpoint failed after its retries, or the reply had no rating or
/// verdict. Failures are reported apart and left out of every score, never counted as a loss.
public struct JudgeFailure: Sendable, Equatable, Codable {
    public let source: String
    public let reason: String
}

/// The outcome of one base-versus-tuned pair, from the tuned answer's side.
public enum PairOutcome: String, Sendable, Equatable, Codable {
    case win, tie, loss

    /// The outcome of asking with base shown as A and tuned as B, then tuned as A and base as B. Verdicts that
    /// disagree (the judge followed the position, not the answer) make a tie, as MT-Bench counts "inconsistent".
    public static func combining(baseFirst: JudgeVerdict, tunedFirst: JudgeVerdict) -> (outcome: PairOutcome, consistent: Bool) {
        let first: PairOutcome = baseFirst == .second ? .win : baseFirst == .first ? .loss : .tie
        let second: PairOutcome = tunedFirst == .first ? .win : tunedFirst == .second ? .loss : .tie
        return first == second ? (first, true) : (.tie, false)
    }
}

/// An LLM judge behind any chat-completion endpoint: grades single answers 1–10 and compares base against tuned
/// answers with the positions swapped.
public struct Judge {
    public var backend: ChatCompleting
    public var rubric: String
    /// Sent with each request; endpoints that honour it repeat their answers.
    public var seed: Int?
    public var maxTokens: Int?

    public init(backend: ChatCompleting, rubric: String = JudgePrompts.defaultRubric, seed: Int? = nil, maxTokens: Int? = nil) {
        self.backend = backend; self.rubric = rubric; self.seed = seed; self.maxTokens = maxTokens
    }

    func ask(_ messages: [ChatCompletionMessage]) throws -> String {
        // Temperature 0: the judge should be as repeatable as the endpoint allows.
        try backend.complete(messages, temperature: 0, maxTokens: maxTokens, seed: seed)
    }

    /// Grades each answer; `progress` gets the number of items done.
    public func grade(_ items: [JudgeGradingItem], bootstrap: Bootstrap = Bootstrap(),
                      progress: (Int) -> Void = { _ in }) -> JudgeGradingReport {
        var ratings: [JudgeGradingReport.Rating] = [], failures: [JudgeFailure] = []
        for (index, item) in items.enumerated() {
            defer { progress(index + 1) }
            let reply: String
            do { reply = try ask(JudgePrompts.grading(prompt: item.prompt, answer: item.answer, rubric: rubric)) } catch {
                failures.append(JudgeFailure(source: item.source, reason: "\(error)"))
                continue
            }
            guard let rating = JudgeReplyParser.rating(reply) else {
                failures.append(JudgeFailure(source: item.source, reason: "no rating [[1-10]] in the reply: \(Self.excerpt(reply))"))
                continue
            }
            ratings.append(.init(source: item.source, rating: rating))
        }
        return JudgeGradingReport(ratings: ratings, failures: failures, meanRating: bootstrap.mean(ratings.map(\.rating)))
    }

    /// Compares base and tuned on each pair, asking twice with the positions swapped; `progress` gets the
    /// number of pairs done.
    public func compare(_ items: [JudgePairItem], bootstrap: Bootstrap = Bootstrap(),
                        progress: (Int) -> Void = { _ in }) -> JudgePairwiseReport {
        var outcomes: [JudgePairwiseReport.Pair] = [], failures: [JudgeFailure] = []
        for (index, item) in items.enumerated() {
            defer { progress(index + 1) }
            do {
                let baseFirst = try verdict(JudgePrompts.pairwise(prompt: item.prompt, answerA: item.base, answerB: item.tuned, rubric: rubric))
                let tunedFirst = try verdict(JudgePrompts.pairwise(prompt: item.prompt, answerA: item.tuned, answerB: item.base, rubric: rubric))
                let combined = PairOutcome.combining(baseFirst: baseFirst, tunedFirst: tunedFirst)
                outcomes.append(.init(source: item.source, outcome: combined.outcome, consistent: combined.consistent,
                                      baseFirst: baseFirst, tunedFirst: tunedFirst))
            } catch {
                failures.append(JudgeFailure(source: item.source, reason: "\(error)"))
            }
        }
        return JudgePairwiseReport(pairs: outcomes, failures: failures, bootstrap: bootstrap)
    }

    struct MissingVerdict: Error, CustomStringConvertible {
        let reply: String
        var description: String { "no verdict [[A]], [[B]] or [[C]] in the reply: \(Judge.excerpt(reply))" }
    }

    private func verdict(_ messages: [ChatCompletionMessage]) throws -> JudgeVerdict {
        let reply = try ask(messages)
        guard let verdict = JudgeReplyParser.verdict(reply) else { throw MissingVerdict(reply: reply) }
        return verdict
    }

    static func excerpt(_ text: String) -> String {
        let flat = text.replacingOccurrences(of: "\n", with: " ")
        return flat.count > 160 ? "…" + String(flat.suffix(160)) : flat
    }
}

/// Ratings of single answers, their mean with a bootstrap interval, and the items that could not be rated.
public struct JudgeGradingReport: Sendable, Equatable, Codable {
    public struct Rating: Sendable, Equatable, Codable {
        public let source: String
        public let rating: Double
    }
    public let ratings: [Rating]
    public let failures: [JudgeFailure]
    /// Over rated items only.
    public let meanRating: ConfidenceInterval

    // snake_case, as the other `lathe eval --json` outputs.
    enum CodingKeys: String, CodingKey { case ratings, failures, meanRating = "mean_rating" }
}

/// Win/tie/loss of the tuned answers against the base answers, with bootstrap intervals, and the pairs that
/// could not be judged (left out of every count and rate).
public struct JudgePairwiseReport: Sendable, Equatable, Codable {
    public struct Pair: Sendable, Equatable, Codable {
        public let source: String
        public let outcome: PairOutcome
        /// Whether both orders gave the same verdict.
        public let consistent: Bool
        public let baseFirst: JudgeVerdict
        public let tunedFirst: JudgeVerdict

        enum CodingKeys: String, CodingKey {
            case source, outcome, consistent, baseFirst = "base_first", tunedFirst = "tuned_first"
        }
    }
    public let pairs: [Pair]
    public let failures: [JudgeFailure]
    public let wins: Int, ties: Int, losses: Int
    /// Pairs whose verdict flipped with the order (counted as ties).
    public let inconsistent: Int
    public let winRate: ConfidenceInterval
    public let tieRate: Double, lossRate: Double
    /// (wins + ties / 2) / judged pairs: above 0.5 means the tuned answers are preferred.
    public let score: ConfidenceInterval

    enum CodingKeys: String, CodingKey {
        case pairs, failures, wins, ties, losses, inconsistent, score
        case winRate = "win_rate", tieRate = "tie_rate", lossRate = "loss_rate"
    }

    public init(pairs: [Pair], failures: [JudgeFailure], bootstrap: Bootstrap) {
        self.pairs = pairs; self.failures = failures
        wins = pairs.filter { $0.outcome == .win }.count
        ties = pairs.filter { $0.outcome == .tie }.count
        losses = pairs.filter { $0.outcome == .loss }.count
        inconsistent = pairs.filter { !$0.consistent }.count
        let judged = Double(max(pairs.count, 1))
        tieRate = pairs.isEmpty ? 0 : Double(ties) / judged
        lossRate = pairs.isEmpty ? 0 : Double(losses) / judged
        winRate = bootstrap.mean(pairs.map { $0.outcome == .win ? 1 : 0 })
        score = bootstrap.mean(pairs.map { $0.outcome == .win ? 1 : $0.outcome == .tie ? 0.5 : 0 })
    }
}
