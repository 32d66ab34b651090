import Foundation
import LatheModels
import LatheTensors

/// One multiple-choice question, read from a JSON line in one of two shapes:
/// - lettered (MMLU): `{"question": "...", "choices": ["...", ...], "answer": 2 or "C", "subject"?: "..."}` —
///   the prompt lists the choices as "A. ...", and each continuation is " A", " B", ...;
/// - continuation (HellaSwag): `{"context": "...", "endings": ["...", ...], "label": 2}` (or `choices`/`answer`) —
///   each continuation is " " + the ending. Rows of the HellaSwag dataset itself (`activity_label`, `ctx_a`,
///   `ctx_b`, `endings`, `label`) are prepared as the harness's hellaswag task prepares them.
public struct MultipleChoiceItem: Sendable, Equatable {
    /// How the choices enter the prompt: as lettered options, or as continuations of the context.
    public enum Style: Sendable, Equatable { case lettered, continuation }

    public let style: Style
    /// The question (lettered) or the context to continue.
    public let text: String
    public let choices: [String]
    /// The index of the correct choice.
    public let answer: Int
    /// MMLU's subject, which introduces the prompt when present.
    public let subject: String?

    /// Fails unless there are at least two choices (at most 26 when lettered) and `answer` indexes one of them.
    public init(style: Style, text: String, choices: [String], answer: Int, subject: String? = nil) throws {
        let most = style == .lettered ? Self.letters.count : Int.max
        guard choices.count >= 2, choices.count <= most else {
            throw EvalError.invalidInput("an item needs 2 to \(most) choices, got \(choices.count)")
        }
        guard choices.indices.contains(answer) else {
            throw EvalError.invalidInput("the answer must be a choice index 0..<\(choices.count), got \(answer)")
        }
        self.style = style; self.text = text; self.choices = choices; self.answer = answer; self.subject = subject
    }

    static let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ").map(String.init)

    /// The prompt of this item alone, as lm-evaluation-harness writes it for MMLU and HellaSwag.
    public var prompt: String {
        switch style {
        case .lettered:
            let listed = choices.enumerated().map { "\(Self.letters[$0.offset]). \($0.element)" }
            return ([text.trimmingCharacters(in: .whitespacesAndNewlines)] + listed).joined(separator: "\n") + "\nAnswer:"
        case .continuation:
            return text
        }
    }

    /// What each choice adds to the prompt, without the separating space: "A", "B", ... or the endings. The
    /// harness's `acc_norm` divides by the length of these.
    public var choiceTexts: [String] {
        style == .lettered ? Array(Self.letters.prefix(choices.count)) : choices
    }

    /// The continuations scored after the prompt: " " + each choice text (the harness's target delimiter).
    public var continuations: [String] { choiceTexts.map { " " + $0 } }

    /// This item with its answer, as a few-shot example.
    public var solvedExample: String { prompt + continuations[answer] }

    /// The harness's MMLU description line, when the item names a subject.
    var description: String? {
        subject.map { "The following are multiple choice questions (with answers) about \($0.replacingOccurrences(of: "_", with: " ")).\n\n" }
    }

    public static func read(_ lines: [JSONLine]) throws -> [MultipleChoiceItem] {
        try lines.map { line in
            guard let object = line.value.object else { throw line.error("expected a JSON object, got \(line.value.summary)") }
            func string(_ key: String) throws -> String? {
                guard let value = object[key] else { return nil }
                guard let text = value.string else { throw line.error("field \"\(key)\" must be a string, got \(value.summary)") }
                return text
            }
            let style: Style, text: String
            if let question = try string("question") {
                (style, text) = (.lettered, question)
            } else if let context = try string("context") {
                (style, text) = (.continuation, context)
            } else if let first = try string("ctx_a"), let second = try string("ctx_b") {
                // A row of the HellaSwag dataset itself, prepared as the harness's hellaswag task does.
                let label = try string("activity_label") ?? ""
                (style, text) = (.continuation, HellaSwag.preprocess(label + ": " + first + " " + HellaSwag.capitalize(second)))
            } else {
                throw line.error("expected a \"question\" (lettered choices) or a \"context\" (continuations) field")
            }
            let choicesKey = object["choices"] != nil ? "choices" : "endings"
            guard let list = object[choicesKey]?.array else {
                throw line.error("field \"\(choicesKey)\" must be a list of strings, got \(object[choicesKey]?.summary ?? "nothing")")
            }
            let choices = try list.enumerated().map { index, value in
                guard let choice = value.string else {
                    throw line.error("field \"\(choicesKey)\"[\(index)] must be a string, got \(value.summary)")
                }
                return object["ctx_a"] != nil && object["context"] == nil ? HellaSwag.preprocess(choice) : choice
            }
            guard choices.count >= 2, style == .continuation || choices.count <= letters.count else {
                throw line.error("field \"\(choicesKey)\" must hold 2 to \(style == .lettered ? letters.count : Int.max) choices, got \(choices.count)")
            }
            let answerKey = object["answer"] != nil ? "answer" : "label"
            guard let answerValue = object[answerKey] else { throw line.error("missing field \"answer\" (or \"label\")") }
            // An index, a numeric string (HellaSwag's labels) or a letter.
            var answer = answerValue.int ?? answerValue.string.flatMap { Int($0) }
            if answer == nil, let letter = answerValue.string, let index = letters.firstIndex(of: letter.uppercased()) { answer = index }
            guard let answer, choices.indices.contains(answer) else {
                throw line.error("field \"\(answerKey)\" must be a choice index 0..<\(choices.count) or a letter, got \(answerValue.summary)")
            }
            return try MultipleChoiceItem(style: style, text: text, choices: choices, answer: answer, subject: try string("subject"))
        }
    }
}

/// Scores continuations by their log-likelihood under a model, the lm-evaluation-harness way.
public struct LogLikelihoodScorer {
    public let lm: LanguageModel
    /// The most logits held at once (rows × vocabulary); choices that would need more are scored one at a time.
    public var maxLogitCount = 16 * 1_048_576

    public init(lm: LanguageModel) { self.lm = lm }

    /// The harness's `_encode_pair`: trailing whitespace of the context moves to the continuation, the two are
    /// encoded together, and the continuation's tokens are those after the context's own encoding. An empty
    /// context becomes the end-of-text token, as in the harness.
    public func encodePair(context: String, continuation: String) -> (context: [Int], continuation: [Int]) {
        var context = context, continuation = continuation
        let trimmed = context.unicodeScalars.reversed().drop(while: { PythonText.isWhitespace($0) }).count
        let spaces = context.unicodeScalars.count - trimmed
        if spaces > 0 {
            let scalars = Array(context.unicodeScalars)
            continuation = PythonText.string(Array(scalars[trimmed...])) + continuation
            context = PythonText.string(Array(scalars[..<trimmed]))
        }
        let whole = lm.tokenizer.encode(context + continuation, addSpecialTokens: false)
        var contextIDs = lm.tokenizer.encode(context, addSpecialTokens: false)
        let continuationIDs = Array(whole.dropFirst(contextIDs.count))
        if contextIDs.isEmpty, let eos = lm.tokenizer.eosTokenID { contextIDs = [eos] }
        return (contextIDs, continuationIDs)
    }

    /// The summed log-probability of each continuation's tokens after `context`. Choices share one forward pass
    /// (a batch of right-padded rows: causal attention keeps padding out of the real positions).
    public func logLikelihoods(context: String, continuations: [String]) throws -> [Double] {
        let maxPositions = lm.model.config.maxPositions
        let rows: [(tokens: [Int], continuationCount: Int)] = try continuations.map { continuation in
            let (contextIDs, continuationIDs) = encodePair(context: context, continuation: continuation)
            guard !continuationIDs.isEmpty else {
                throw EvalError.invalidInput("the continuation '\(continuation)' adds no token to its context")
            }
            guard continuationIDs.count < maxPositions else {
                throw EvalError.invalidInput("the continuation '\(continuation.prefix(40))' is longer than the model's context (\(maxPositions))")
            }
            // Like the harness, keep the last positions of a sequence longer than the context window.
            return (Array((contextIDs + continuationIDs).suffix(maxPositions)), continuationIDs.count)
        }
        let vocabulary = lm.model.config.vocabularySize
        // One-token continuations after one shared context (MMLU's " A", " B", ...): a single pass over the context
        // gives every choice's log-probability from its last position.
        if let context = rows.first?.tokens.dropLast(), context.count > 0,
           rows.allSatisfy({ $0.continuationCount == 1 && $0.tokens.dropLast() == context }) {
            let logits = try lm.model.forward(tokens: Array(context), logits: .last)
            return rows.map { Softmax.logProbability(logits.pointer, count: vocabulary, index: $0.tokens[$0.tokens.count - 1]) }
        }
        let length = rows.map(\.tokens.count).max() ?? 0
        var groups: [[Int]] = []
        if rows.count * length * vocabulary <= maxLogitCount { groups = [Array(rows.indices)] } else { groups = rows.indices.map { [$0] } }
        var results = [Double](repeating: 0, count: rows.count)
        for group in groups {
            let width = group.map { rows[$0].tokens.count }.max() ?? 0
            var tokens: [Int] = []
            for r in group { tokens += rows[r].tokens + [Int](repeating: rows[r].tokens[0], count: width - rows[r].tokens.count) }
            let logits = try lm.model.forward(tokens: tokens, batchSize: group.count)
            for (b, r) in group.enumerated() {
                let row = rows[r], end = row.tokens.count
                var sum = 0.0
                for i in (end - row.continuationCount)..<end {
                    sum += Softmax.logProbability(logits.pointer + (b * width + i - 1) * vocabulary, count: vocabulary,
                                                  index: row.tokens[i])
                }
                results[r] = sum
            }
        }
        return results
    }
}

/// The outcome of one item.
public struct ChoiceOutcome: Sendable, Equatable, Codable {
    public let logLikelihoods: [Double]
    public let answer: Int
    /// argmax of the log-likelihoods (`acc`).
    public let predicted: Int
    /// argmax of the log-likelihoods divided by each choice text's length (`acc_norm`).
    public let predictedNormalized: Int
}

/// Multiple-choice accuracy (`acc`, `acc_norm`) over a set of items, with bootstrap intervals.
public struct MultipleChoiceReport: Sendable {
    public let outcomes: [ChoiceOutcome]
    public let accuracy: ConfidenceInterval
    public let normalizedAccuracy: ConfidenceInterval

    /// Scores `items` with `shots` solved examples drawn from `fewShotPool` for each (seeded by `seed`).
    public static func evaluate(_ items: [MultipleChoiceItem], scorer: LogLikelihoodScorer, fewShotPool: [MultipleChoiceItem] = [],
                                shots: Int = 0, seed: UInt64 = 0, bootstrap: Bootstrap = Bootstrap(),
                                progress: (Int) -> Void = { _ in }) throws -> MultipleChoiceReport {
        guard shots >= 0, shots <= fewShotPool.count else {
            throw EvalError.invalidInput("\(shots) few-shot examples were asked for, but the pool holds \(fewShotPool.count)")
        }
        var random = SeededGenerator(seed: seed)
        var outcomes: [ChoiceOutcome] = []
        for (index, item) in items.enumerated() {
            // An item never serves as its own example (the harness's rule when the pool is the evaluated split).
            let pool = fewShotPool.contains(item) ? fewShotPool.filter { $0 != item } : fewShotPool
            guard shots <= pool.count else {
                throw EvalError.invalidInput("\(shots) few-shot examples were asked for, but the pool holds \(pool.count) besides item \(index + 1)")
            }
            let context = fewShotContext(item, examples: sample(pool, count: shots, using: &random))
            let scores = try scorer.logLikelihoods(context: context, continuations: item.continuations)
            let lengths = item.choiceTexts.map { Double(max($0.unicodeScalars.count, 1)) }
            outcomes.append(ChoiceOutcome(logLikelihoods: scores, answer: item.answer, predicted: argmax(scores),
                                          predictedNormalized: argmax(zip(scores, lengths).map { $0 / $1 })))
            progress(index + 1)
        }
        return MultipleChoiceReport(
            outcomes: outcomes,
            accuracy: bootstrap.mean(outcomes.map { $0.predicted == $0.answer ? 1 : 0 }),
            normalizedAccuracy: bootstrap.mean(outcomes.map { $0.predictedNormalized == $0.answer ? 1 : 0 }))
    }

    /// The harness's layout: description, then the solved examples and the item's prompt, separated by blank lines.
    public static func fewShotContext(_ item: MultipleChoiceItem, examples: [MultipleChoiceItem]) -> String {
        (item.description ?? "") + (examples.map(\.solvedExample) + [item.prompt]).joined(separator: "\n\n")
    }

    /// `count` distinct items of `pool`, by a partial Fisher–Yates shuffle.
    static func sample(_ pool: [MultipleChoiceItem], count: Int, using random: inout SeededGenerator) -> [MultipleChoiceItem] {
        var indices = Array(pool.indices)
        for i in 0..<count {
            let j = i + Int(UInt64(indices.count - i).multipliedFullWidth(by: random.next()).high)
            indices.swapAt(i, j)
        }
        return indices.prefix(count).map { pool[$0] }
    }

    /// The first index of the largest value (numpy's argmax).
    static func argmax(_ values: [Double]) -> Int {
        var best = 0
        for i in values.indices where values[i] > values[best] { best = i }
        return best
    }
}

/// The text clean-up of lm-evaluation-harness's hellaswag task, in Python's string semantics.
enum HellaSwag {
    /// `preprocess`: strip, " [title]" → ". ", drop every "[...]" (not across lines), "  " → " ".
    static func preprocess(_ text: String) -> String {
        var s = Array(text.unicodeScalars)
        while let c = s.first, PythonText.isWhitespace(c) { s.removeFirst() }
        while let c = s.last, PythonText.isWhitespace(c) { s.removeLast() }
        s = PythonText.replace(s, " [title]", ". ")
        var kept: CodePoints = []
        var i = 0
        while i < s.count {
            // re.sub("\\[.*?\\]", "", text): the shortest bracketed run; "." does not match a newline.
            if s[i] == "[", let close = s[(i + 1)...].prefix(while: { $0 != "\n" }).firstIndex(of: "]") {
                i = close + 1
            } else {
                kept.append(s[i])
                i += 1
            }
        }
        return PythonText.string(PythonText.replace(kept, "  ", " "))
    }

    /// `str.capitalize()`: the first character in title case, the rest in lower case.
    static func capitalize(_ text: String) -> String {
        let s = Array(text.unicodeScalars)
        guard let first = s.first else { return text }
        let rest = PythonText.lower(s)
        // Lowering the whole text keeps Python's final-sigma context; only the first character's mapping is replaced.
        let firstLowered = first.properties.lowercaseMapping.unicodeScalars.count
        return PythonText.string(Array(first.properties.titlecaseMapping.unicodeScalars) + rest.dropFirst(firstLowered))
    }
}
