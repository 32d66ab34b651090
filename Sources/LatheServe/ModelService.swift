import Foundation
import LatheModels

/// The loaded base, its adapters and the batch decoder every request goes through; what the routes call once the
/// model is ready.
final class ModelService: @unchecked Sendable {
    let lm: LanguageModel
    let decoder: BatchDecoder
    let configuration: ServeConfiguration
    let metrics: ServerMetrics
    private let lock = NSLock()
    /// Adapter name → the folder it came from, as `/v1/models` lists it.
    private var adapters: [String: String]
    let created = Int(Date().timeIntervalSince1970)

    init(lm: LanguageModel, configuration: ServeConfiguration, metrics: ServerMetrics) throws {
        self.lm = lm; self.configuration = configuration; self.metrics = metrics
        var loaded: [String: String] = [:]
        for adapter in configuration.adapters {
            try Self.checkName(adapter.name, base: configuration.modelID, taken: loaded)
            try PEFTAdapter.load(URL(fileURLWithPath: adapter.path), into: lm.model, adapterName: adapter.name)
            loaded[adapter.name] = adapter.path
        }
        adapters = loaded
        decoder = BatchDecoder(model: lm, slots: configuration.slots, contextPerSlot: configuration.contextPerSlot)
        decoder.start()
    }

    static func checkName(_ name: String, base: String, taken: [String: String]) throws {
        guard !name.isEmpty, name != base else {
            throw APIError.invalid("an adapter needs a name other than the base model's (\(base))", param: "lora_name")
        }
        guard taken[name] == nil else {
            throw APIError.invalid("an adapter named \(name) is loaded already", param: "lora_name")
        }
    }

    var adapterNames: [String: String] { lock.withLock { adapters } }

    var modelList: ModelList {
        let base = configuration.modelID
        return ModelList(data: [.init(id: base, created: created, root: lm.files.url.path, parent: Nullable(nil))]
            + adapterNames.sorted { $0.key < $1.key }.map {
                .init(id: $0.key, created: created, root: $0.value, parent: Nullable(base))
            })
    }

    /// The adapter a request's `model` names: nil for the base.
    func adapter(forModel model: String) throws -> String? {
        if model == configuration.modelID { return nil }
        let names = adapterNames
        guard names[model] != nil else {
            throw APIError.unknownModel(model, known: [configuration.modelID] + names.keys.sorted())
        }
        return model
    }

    // MARK: Adapters at run time

    /// `POST /v1/load_lora_adapter`: the folder must lie inside `--adapters-dir` (symbolic links resolved).
    func loadAdapter(name: String, path: String) async throws {
        let folder = try confinedFolder(path)
        try lock.withLock { try Self.checkName(name, base: configuration.modelID, taken: adapters) }
        try await betweenSteps { lm in
            try PEFTAdapter.load(folder, into: lm.model, adapterName: name)
        }
        lock.withLock { adapters[name] = folder.path }
    }

    /// `POST /v1/unload_lora_adapter`: refused while a request still decodes with it.
    func unloadAdapter(name: String) async throws {
        guard adapterNames[name] != nil else {
            throw APIError(.notFound, "no adapter named \(name) is loaded", param: "lora_name", code: "model_not_found")
        }
        guard !decoder.adapterInUse(name) else {
            throw APIError(.conflict, "adapter \(name) is in use by running requests; try again when they finish",
                           param: "lora_name")
        }
        try await betweenSteps { lm in lm.model.detachAdapters(named: name) }
        lock.withLock { adapters[name] = nil }
    }

    private func confinedFolder(_ path: String) throws -> URL {
        guard let root = configuration.adaptersDirectory else {
            throw APIError(.forbidden, "loading adapters at run time needs the server started with --adapters-dir",
                           param: "lora_path")
        }
        let rootPath = root.resolvingSymlinksInPath().standardizedFileURL.path
        let given = path.hasPrefix("/") ? URL(fileURLWithPath: path) : root.appendingPathComponent(path)
        let folder = given.standardizedFileURL.resolvingSymlinksInPath()
        guard folder.path.hasPrefix(rootPath.hasSuffix("/") ? rootPath : rootPath + "/") else {
            throw APIError(.forbidden, "lora_path must be inside the adapters directory \(rootPath)", param: "lora_path")
        }
        guard FileManager.default.fileExists(atPath: folder.appendingPathComponent("adapter_config.json").path) else {
            throw APIError(.notFound, "no PEFT adapter (adapter_config.json) in \(folder.path)", param: "lora_path")
        }
        return folder
    }

    /// Runs a change of the model on the decoder's thread, between two decoding steps.
    private func betweenSteps(_ change: @escaping @Sendable (LanguageModel) throws -> Void) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            decoder.betweenSteps { lm in
                do { try change(lm); continuation.resume() } catch {
                    continuation.resume(throwing: APIError.invalid("\(error)", param: "lora_path"))
                }
            }
        }
    }

    // MARK: Completions

    /// The decoder's request for a parsed body: the prompt's tokens (chat through the model's template), the adapter,
    /// and max_tokens (by default the rest of the context). Errors are 4xx.
    func decodeRequest(_ request: CompletionRequest) throws -> DecodeRequest {
        let adapter = try adapter(forModel: request.model)
        let prompt: [Int]
        switch request.prompt {
        case .messages(let messages):
            do { prompt = try lm.chatTokens(messages, addGenerationPrompt: true) } catch {
                throw APIError.invalid("the messages cannot be rendered with the model's chat template: \(error)", param: "messages")
            }
        case .text(let text): prompt = lm.tokenizer.encode(text, addSpecialTokens: true)
        case .tokens(let ids):
            let vocabulary = lm.model.config.vocabularySize
            if let bad = ids.first(where: { !(0..<vocabulary).contains($0) }) {
                throw APIError.invalid("token id \(bad) is outside the vocabulary (0..<\(vocabulary))", param: "prompt")
            }
            prompt = ids
        }
        let context = configuration.contextPerSlot
        let param = request.endpoint == .chat ? "messages" : "prompt"
        guard !prompt.isEmpty else { throw APIError.invalid("the prompt has no tokens", param: param) }
        let maxTokens = request.maxTokens ?? (context - prompt.count)
        guard prompt.count + maxTokens <= context else {
            throw APIError(.badRequest, "This model's context is \(context) tokens per request. However, you requested "
                           + "\(prompt.count + maxTokens) tokens (\(prompt.count) in the \(param), \(maxTokens) for the completion).",
                           param: param, code: "context_length_exceeded")
        }
        return DecodeRequest(prompt: prompt, maxTokens: maxTokens, sampling: request.sampling, adapter: adapter,
                             stopStrings: request.stop, topLogprobs: request.topLogprobs)
    }

    /// Queues a request and streams its events; cancelling the stream's consumer cancels the request. A full queue
    /// is a 429.
    func events(of request: DecodeRequest) throws -> (id: Int, stream: AsyncStream<DecodeEvent>) {
        guard decoder.queuedCount + decoder.activeCount < configuration.slots + configuration.maxQueue else {
            throw APIError(.tooManyRequests, "the server's queue is full (\(configuration.maxQueue) requests waiting); retry later",
                           type: "server_overloaded", code: "queue_full")
        }
        let (stream, continuation) = AsyncStream<DecodeEvent>.makeStream()
        let arrival = Date()
        let firstToken = FirstTokenClock()
        let id: Int
        do {
            id = try decoder.submit(request) { [metrics] event in
                switch event {
                case .token:
                    if firstToken.mark() { metrics.recordFirstToken(after: Date().timeIntervalSince(arrival)) }
                    metrics.recordGeneratedToken()
                    continuation.yield(event)
                case .finished(_, let promptTokens, let completionTokens):
                    metrics.countTokens(prompt: promptTokens, completion: completionTokens)
                    continuation.yield(event)
                    continuation.finish()
                case .failed:
                    continuation.yield(event)
                    continuation.finish()
                }
            }
        } catch let error as APIError { throw error } catch {
            throw APIError.invalid("\(error)")
        }
        continuation.onTermination = { [decoder] termination in
            if case .cancelled = termination { decoder.cancel(id) }
        }
        return (id, stream)
    }

    /// Text of one token for log-probability listings (its own decoding, special tokens included).
    func tokenText(_ id: Int) -> String { lm.tokenizer.decode([id]) }
}

/// Whether a request's first token has come (set once, from the decoder's thread).
private final class FirstTokenClock: @unchecked Sendable {
    private var seen = false
    func mark() -> Bool { defer { seen = true }; return !seen }
}

/// How `lathe serve` was asked to run.
public struct ServeConfiguration: Sendable {
    public struct Adapter: Sendable { public var name: String; public var path: String
        public init(name: String, path: String) { self.name = name; self.path = path } }

    public var host = "127.0.0.1"
    public var port = 8080
    /// The id `/v1/models` gives the base; requests name it (or an adapter) in `model`.
    public var modelID: String
    public var apiKey: String?
    /// Requests decoded at once (slots of the batch decoder).
    public var slots = 8
    /// Prompt plus completion tokens of one request.
    public var contextPerSlot = 2048
    /// Requests that may wait for a slot (beyond those in a slot) before new ones get a 429.
    public var maxQueue = 64
    public var adapters: [Adapter] = []
    public var adaptersDirectory: URL?
    /// Largest request body accepted (a 413 beyond).
    public var maxBodyBytes = 4 << 20

    public init(modelID: String) { self.modelID = modelID }
}
