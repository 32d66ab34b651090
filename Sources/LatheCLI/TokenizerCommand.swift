import ArgumentParser
import Foundation
import LatheModels
import LatheTokenizers

/// `lathe tokenizer`: tokenizer tools; `train` learns a new byte-level BPE vocabulary.
public struct TokenizerCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tokenizer", abstract: "Train a new tokenizer.", subcommands: [TokenizerTrainCommand.self])
    public init() {}
}

/// `lathe tokenizer train`: byte-level BPE on a text or JSONL corpus, saved as Hugging Face files.
public struct TokenizerTrainCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Learn a byte-level BPE tokenizer and write tokenizer.json and tokenizer_config.json.")

    @Option(help: "A .txt file (the whole file is one document) or a .jsonl file of {\"text\": ...} lines.")
    public var input: String
    @Option(name: .customLong("vocab-size"), help: "Tokens in the vocabulary, special tokens included.")
    public var vocabularySize: Int
    @Option(help: "The folder to write the tokenizer files into (created if needed).")
    public var output: String
    @Option(name: .customLong("min-frequency"), help: "Stop when no pair occurs this often.")
    public var minimumFrequency: Int = 2
    @Option(name: .customLong("special-tokens"), parsing: .upToNextOption,
            help: "Special tokens, given ids 0, 1, … in this order.")
    public var specialTokens: [String] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    @Option(name: .customLong("pre-tokenizer"), help: "How text is cut into words: smollm, gpt2, llama3 or qwen2.")
    public var preTokenizerName: String = "smollm"
    @Option(name: .customLong("chat-template"), help: "Write a chat template into tokenizer_config.json: chatml.")
    public var chatTemplate: String?
    @Option(name: .customLong("model-max-length"), help: "model_max_length in tokenizer_config.json.")
    public var modelMaxLength: Int = 2048

    public init() {}

    public func validate() throws {
        guard vocabularySize >= 256 + specialTokens.count else {
            throw ValidationError("--vocab-size must be at least \(256 + specialTokens.count) "
                                  + "(256 byte symbols + \(specialTokens.count) special tokens), got \(vocabularySize)")
        }
        guard minimumFrequency >= 0 else { throw ValidationError("--min-frequency must be 0 or more") }
        guard modelMaxLength >= 1 else { throw ValidationError("--model-max-length must be at least 1") }
        guard ["smollm", "gpt2", "llama3", "qwen2"].contains(preTokenizerName) else {
            throw ValidationError("--pre-tokenizer must be smollm, gpt2, llama3 or qwen2, got \(preTokenizerName)")
        }
        if let chatTemplate {
            guard chatTemplate == "chatml" else { throw ValidationError("--chat-template must be chatml") }
            for token in TokenizerConfigOptions.chatMLTokens where !specialTokens.contains(token) {
                throw ValidationError("--chat-template chatml needs \(token) among --special-tokens")
            }
        }
    }

    /// The tokenizer_config.json fields: the first special token is BOS, EOS and unknown, except that a
    /// ChatML tokenizer ends a turn (EOS) with `<|im_end|>`.
    var configOptions: TokenizerConfigOptions {
        let first = specialTokens.first
        let chatML = chatTemplate == "chatml"
        return TokenizerConfigOptions(bosToken: first, eosToken: chatML ? "<|im_end|>" : first, unknownToken: first,
                                      modelMaxLength: modelMaxLength,
                                      chatTemplate: chatML ? TokenizerConfigOptions.chatMLTemplate : nil)
    }

    public func run() throws {
        let started = Date()
        var trainer = try BPETrainer(options: .init(vocabularySize: vocabularySize, minimumFrequency: minimumFrequency,
                                                    specialTokens: specialTokens,
                                                    preTokenizer: try PreTokenizer(ggufName: preTokenizerName)))
        for document in try TrainingCorpus.documents(at: URL(fileURLWithPath: input)) {
            trainer.add(document: document)
        }
        printError("read \(trainer.documentCount) documents, \(trainer.wordTotal) words")
        let trained = try trainer.train { done, most in
            FileHandle.standardError.write(Data("\rmerges: \(done)/\(most)".utf8))
        }
        printError("")
        let folder = URL(fileURLWithPath: output)
        try trained.save(to: folder, config: configOptions)
        let seconds = Date().timeIntervalSince(started)
        printLine("vocabulary \(trained.vocabulary.count) tokens (\(specialTokens.count) special, 256 bytes, "
                  + "\(trained.merges.count) merges) written to \(folder.path) in \(String(format: "%.1f", seconds)) s")
        if trained.vocabulary.count < vocabularySize {
            printLine("stopped early: no pair occurs \(max(minimumFrequency, 1)) times or more")
        }
    }
}

/// The documents of a training corpus file.
enum TrainingCorpus {
    /// A `.jsonl` file gives one document per line's `"text"`; any other file is one document, read whole.
    static func documents(at url: URL) throws -> [String] {
        if url.pathExtension.lowercased() == "jsonl" {
            return try JSONLines.read(url).map { line in
                guard let text = line.value["text"] else { throw line.error("expected an object with a \"text\" field") }
                guard let string = text.string else { throw line.error("field \"text\" must be a string") }
                return string
            }
        }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TrainingCorpusError(path: url.path, message: "cannot read the file (\(error.localizedDescription))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TrainingCorpusError(path: url.path, message: "the file is not valid UTF-8 text")
        }
        return [text]
    }
}

/// A corpus file that cannot be read as text.
struct TrainingCorpusError: Error, CustomStringConvertible {
    let path: String
    let message: String
    var description: String { "\(path): \(message)" }
}

/// Progress and notes go to standard error, so that standard output holds only the summary.
private func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
