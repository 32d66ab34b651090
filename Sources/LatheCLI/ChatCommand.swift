import ArgumentParser
import Foundation
import LatheModels
import LatheTemplates
import LatheTensors

/// `lathe chat`: an interactive conversation through the model's chat template, answers streamed as they come.
public struct ChatCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "chat", abstract: "Chat with a model in the terminal (/reset starts over, /exit or Ctrl-D leaves).")
    @OptionGroup public var model: ModelOptions
    @OptionGroup public var sampling: SamplingFlags
    @Option(help: "A system prompt (otherwise the template's own default, if it has one).") public var system: String?
    public init() {}

    public func run() throws {
        let lm = try model.load()
        var turns: [ChatMessage] = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
        let interactive = isatty(STDIN_FILENO) != 0
        if interactive { print("Chatting with \(lm.name). /reset starts over, /exit leaves.") }
        while true {
            if interactive { FileHandle.standardOutput.write(Data("\n> ".utf8)) }
            guard let line = readLine() else { break }
            let message = line.trimmingCharacters(in: .whitespaces)
            if message.isEmpty { continue }
            if message == "/exit" { break }
            if message == "/reset" { turns = system.map { [ChatMessage(role: "system", content: $0)] } ?? []; continue }
            turns.append(ChatMessage(role: "user", content: message))
            let ids = try lm.chatTokens(turns, addGenerationPrompt: true)
            var options = sampling.options
            options.seed &+= UInt64(turns.count)
            let answer = try lm.generate(ids, sampling: options, maxTokens: sampling.maxTokens,
                                         stopStrings: sampling.stopStrings) { piece in
                FileHandle.standardOutput.write(Data(piece.utf8))
            }
            printLine("")
            turns.append(ChatMessage(role: "assistant", content: answer))
        }
    }
}

/// `lathe inspect`: what a model file holds.
public struct InspectCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Show a model's architecture, parameter count, storage types and memory.")
    @OptionGroup public var model: ModelOptions
    public init() {}

    public func run() throws {
        let lm = try model.load()
        let products = BF16Products.current
        let auto = "\(WeightFormat.auto(for: .inference, products: products)) to score and generate, "
            + "\(WeightFormat.auto(for: .frozenBase, products: products)) to train"
        // Loading resolved the thread count; for auto, what the start-up measurement chose and why.
        let rows = lm.summary + [("bf16 products", products.description), ("dtype auto", auto),
                                 ("compute threads", model.threads.resolvedDescription)]
        for (key, value) in rows { print("\(key.padding(toLength: 22, withPad: " ", startingAt: 0)) \(value)") }
    }
}
