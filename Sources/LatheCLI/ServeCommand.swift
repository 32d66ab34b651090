import ArgumentParser
import Foundation
import LatheModels
import LatheServe

/// `lathe serve`: the OpenAI-compatible server, several adapters live on one base.
public struct ServeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the model over OpenAI's API (chat/completions, completions, models), adapters chosen per request by `model`.")
    @OptionGroup public var base: BaseModelOptions
    @Option(name: .customLong("adapter"), help: ArgumentHelp("A LoRA adapter to serve, named as requests will call it (repeatable).",
                                                             valueName: "NAME=DIR"))
    public var adapters: [String] = []
    @Option(help: "Address to listen on.") public var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port, printed at start).") public var port = 8080
    @Option(name: .customLong("api-key"), help: "Require `Authorization: Bearer KEY` on /v1 routes.")
    public var apiKey: String?
    @Option(name: .customLong("max-concurrency"), help: "Requests decoded at once (decoder slots, one KV cache each).")
    public var maxConcurrency = 8
    @Option(help: "Tokens per request, prompt and completion together (each slot's KV cache).")
    public var context = 2048
    @Option(name: .customLong("max-queue"), help: "Requests that may wait for a slot; more get 429.")
    public var maxQueue = 64
    @Option(name: .customLong("adapters-dir"), help: "The folder /v1/load_lora_adapter may load adapters from (off without it).")
    public var adaptersDir: String?
    public init() {}

    public func validate() throws {
        for adapter in adapters where parseAdapter(adapter) == nil {
            throw ValidationError("--adapter takes NAME=DIR, got '\(adapter)'")
        }
        guard maxConcurrency >= 1 else { throw ValidationError("--max-concurrency must be at least 1") }
        guard context >= 2 else { throw ValidationError("--context must be at least 2") }
        guard maxQueue >= 0 else { throw ValidationError("--max-queue must be at least 0") }
    }

    private func parseAdapter(_ text: String) -> ServeConfiguration.Adapter? {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex, text.index(after: eq) != text.endIndex else { return nil }
        return .init(name: String(text[..<eq]), path: String(text[text.index(after: eq)...]))
    }

    public func run() throws {
        var settings = ServeConfiguration(modelID: base.model)
        settings.host = host; settings.port = port; settings.apiKey = apiKey
        settings.slots = maxConcurrency; settings.contextPerSlot = context; settings.maxQueue = maxQueue
        settings.adapters = adapters.compactMap(parseAdapter)
        settings.adaptersDirectory = adaptersDir.map { URL(fileURLWithPath: $0, isDirectory: true) }
        let base = self.base, host = self.host, configuration = settings
        let format = try base.weightFormat(for: .inference)
        let finished = DispatchSemaphore(value: 0)
        let outcome = ServeOutcome()
        Task {
            do {
                try await LatheServer.run(configuration, loadModel: {
                    log("loading \(base.model)…")
                    return try base.load(format)
                }, onReady: {
                    log("ready: \(configuration.slots) slots of \(configuration.contextPerSlot) tokens")
                }, onListening: { port in
                    log("listening on http://\(host):\(port)")
                })
            } catch { outcome.error = error }
            finished.signal()
        }
        finished.wait()
        if let error = outcome.error { throw error }
    }
}

private final class ServeOutcome: @unchecked Sendable { var error: Error? }
