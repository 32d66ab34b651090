import Foundation
import LatheModels
import LatheRemote
import LatheTensors
import LatheTemplates

/// The local model answering chats like an endpoint (`ChatCompleting`): its chat template, seeded sampling,
/// stop at EOS — so that synthesis and judging take either.
public struct LocalChatCompleter: ChatCompleting {
    public let model: LanguageModel
    public let sampling: SamplingOptions
    public let maxTokens: Int

    public init(model: LanguageModel, sampling: SamplingOptions = SamplingOptions(temperature: 0.8, topP: 0.95), maxTokens: Int = 256) {
        self.model = model; self.sampling = sampling; self.maxTokens = maxTokens
    }

    public func complete(_ messages: [ChatCompletionMessage], temperature: Double, maxTokens: Int?, seed: Int?) throws -> String {
        var options = sampling
        options.temperature = Float(temperature)
        options.seed = UInt64(truncatingIfNeeded: seed ?? 0)
        let chat = messages.map { ChatMessage(role: $0.role, content: $0.content) }
        return try model.generate(try model.chatTokens(chat, addGenerationPrompt: true), sampling: options,
                                  maxTokens: maxTokens ?? self.maxTokens)
    }
}

/// Self-Instruct-style synthesis: show the model a few seed tasks, ask for a new one, answer it, and keep the pair
/// only if it passes the same checks as any dataset row and is no near-duplicate of a seed or of a kept row.
public struct Synthesizer {
    public struct Options: Sendable {
        public var count: Int
        public var examplesPerPrompt = 3
        public var seed: UInt64 = 0
        /// Word-shingle Jaccard at or above which a new task counts as a near-duplicate.
        public var nearDuplicate = 0.7
        /// Attempts per requested example before giving up.
        public var attemptsPerExample = 4
        /// Sampling temperature of the model asked; some is needed for new tasks.
        public var temperature = 0.8
        public init(count: Int) { self.count = count }
    }

    /// What happened to each attempt.
    public struct Report: Codable, Sendable, CustomStringConvertible {
        public var kept = 0
        public var empty = 0
        public var duplicates = 0
        public var attempts = 0
        public var description: String {
            "\(kept) examples kept of \(attempts) attempts (\(empty) empty or unusable, \(duplicates) near-duplicates)"
        }
    }

    public let completer: ChatCompleting
    public let options: Options

    public init(completer: ChatCompleting, options: Options) {
        self.completer = completer
        self.options = options
    }

    /// The (task, answer) pairs of the seed rows: a user turn and the assistant's answer to it.
    public static func seedTasks(_ rows: [DatasetRow]) -> [(task: String, answer: String)] {
        rows.compactMap { row in
            switch row.record {
            case .messages(let messages):
                guard let user = messages.first(where: { $0.role == "user" }),
                      let answer = messages.last(where: { $0.role == "assistant" }) else { return nil }
                return (user.content, answer.content)
            case .promptCompletion(let prompt, let completion): return (prompt, completion)
            default: return nil
            }
        }
    }

    /// New `{"messages": [user, assistant]}` rows, and what was rejected.
    public func generate(seeds rows: [DatasetRow]) throws -> (rows: [JSONValue], report: Report) {
        let seeds = Self.seedTasks(rows)
        guard !seeds.isEmpty else {
            throw DatasetError(file: rows.first?.line.file ?? "", line: 0,
                               message: "no seed tasks: give messages or prompt/completion rows")
        }
        var random = SeededGenerator(seed: options.seed)
        var known = seeds.map { WordShingles.hashes(TextNormalizer.normalize($0.task)) }
        var output: [JSONValue] = [], report = Report()
        while report.kept < options.count && report.attempts < options.count * options.attemptsPerExample {
            report.attempts += 1
            let shown = (0..<min(options.examplesPerPrompt, seeds.count)).map { _ in seeds[Int(random.next() % UInt64(seeds.count))] }
            let request = "Here are examples of tasks:\n\n"
                + shown.enumerated().map { "Task \($0.offset + 1): \($0.element.task)" }.joined(separator: "\n\n")
                + "\n\nWrite one new task of the same kind, different from these. Reply with the task only."
            let task = Self.clean(try ask(request, &random))
            guard !task.isEmpty else { report.empty += 1; continue }
            let shingles = WordShingles.hashes(TextNormalizer.normalize(task))
            if known.contains(where: { WordShingles.jaccard($0, shingles) >= options.nearDuplicate }) {
                report.duplicates += 1
                continue
            }
            let answer = Self.clean(try ask(task, &random))
            guard !answer.isEmpty else { report.empty += 1; continue }
            known.append(shingles)
            output.append(.object(["messages": .array([
                .object(["role": .string("user"), "content": .string(task)]),
                .object(["role": .string("assistant"), "content": .string(answer)]),
            ])]))
            report.kept += 1
        }
        return (output, report)
    }

    private func ask(_ text: String, _ random: inout SeededGenerator) throws -> String {
        try completer.complete([ChatCompletionMessage(role: "user", content: text)], temperature: options.temperature,
                               maxTokens: nil, seed: Int(truncatingIfNeeded: random.next() >> 1))
    }

    /// Trims whitespace and a leading "Task:" / "Task 4:" label the model may copy from the prompt.
    static func clean(_ text: String) -> String {
        var t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if let range = t.range(of: #"^(New )?[Tt]ask( \d+)?:\s*"#, options: .regularExpression) { t.removeSubrange(range) }
        return t.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
