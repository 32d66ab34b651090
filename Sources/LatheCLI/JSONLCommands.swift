import ArgumentParser
import Foundation
import LatheModels
import LatheTemplates

// The three JSON Lines commands: each input line is {"text": ...} (tokenized as is) or {"messages": [...]}
// (rendered with the model's chat template and its generation prompt), and each gives one output line.

/// `lathe tokenize`: token ids of each input line.
public struct TokenizeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tokenize", abstract: "Print the token ids of each JSONL line ({\"text\"} or {\"messages\"}).")
    @OptionGroup public var model: ModelOptions
    @Option(help: "A JSONL file; each line {\"text\": ...} or {\"messages\": [...]}.") public var input: String
    public init() {}

    public func run() throws {
        let lines = try JSONLines.read(URL(fileURLWithPath: input))
        let lm = try model.load()
        for line in lines { printLine(try jsonLine(["ids": try lm.promptTokens(line)])) }
    }
}

/// `lathe logprobs`: log p(ids[i] | ids[..<i]) of each input line's tokens.
public struct LogprobsCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "logprobs", abstract: "Print each token's log-probability given the tokens before it.")
    @OptionGroup public var model: ModelOptions
    @Option(help: "A JSONL file; each line {\"text\": ...} or {\"messages\": [...]}.") public var input: String
    public init() {}

    struct Output: Encodable { let ids: [Int]; let logprobs: [Double?] }

    public func run() throws {
        let lines = try JSONLines.read(URL(fileURLWithPath: input))
        let lm = try model.load()
        for line in lines {
            let ids = try lm.promptTokens(line)
            printLine(try jsonLine(Output(ids: ids, logprobs: try lm.logProbabilities(of: ids))))
        }
    }
}

/// `lathe generate`: the continuation of each input line.
public struct GenerateCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Generate a continuation for each JSONL line, or for --prompt.")
    @OptionGroup public var model: ModelOptions
    @OptionGroup public var sampling: SamplingFlags
    @Option(help: "A JSONL file; each line {\"text\": ...} or {\"messages\": [...]}.") public var input: String?
    @Option(help: "One prompt, sent as a user message through the chat template; the answer streams to the terminal.")
    public var prompt: String?
    @Option(name: .customLong("batch-size"),
            help: "How many --input lines are decoded at once (slots of the batch decoder; lines join as others finish).")
    public var batchSize = 8
    public init() {}

    public func validate() throws {
        guard (input == nil) != (prompt == nil) else { throw ValidationError("give exactly one of --input and --prompt") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
    }

    public func run() throws {
        if let prompt {
            let lm = try model.load()
            let ids = try lm.chatTokens([ChatMessage(role: "user", content: prompt)], addGenerationPrompt: true)
            _ = try lm.generate(ids, sampling: sampling.options, maxTokens: sampling.maxTokens,
                                stopStrings: sampling.stopStrings) { piece in
                FileHandle.standardOutput.write(Data(piece.utf8))
            }
            printLine("")
            return
        }
        let lines = try JSONLines.read(URL(fileURLWithPath: input!))
        let lm = try model.load()
        let prompts = try lines.map { try lm.promptTokens($0) }
        guard !prompts.isEmpty else { return }
        // Every line with the same seed: each answer is the one `--prompt`-style decoding alone would give.
        let adapter = try lm.model.switchedOnAdapter()
        let requests = prompts.map {
            DecodeRequest(prompt: $0, maxTokens: sampling.maxTokens, sampling: sampling.options, adapter: adapter,
                          stopStrings: sampling.stopStrings)
        }
        let decoder = BatchDecoder(model: lm, slots: batchSize, contextPerSlot: prompts.map(\.count).max()! + sampling.maxTokens)
        var answers = Array(repeating: "", count: prompts.count), finished = Array(repeating: false, count: prompts.count)
        var printed = 0
        try decoder.decodeAll(requests) { line, event in
            switch event {
            case .token(let token): answers[line] += token.text
            case .finished: finished[line] = true
            case .failed: break  // decodeAll throws first
            }
            // Lines come out in input order, each as soon as it and every line before it are done.
            while printed < prompts.count && finished[printed] {
                printLine(try jsonLine(["text": answers[printed]]))
                printed += 1
            }
        }
    }
}
