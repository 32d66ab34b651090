import Foundation
import Hummingbird
import LatheModels
import Logging

/// `lathe serve`: an OpenAI-compatible HTTP server (Hummingbird) over one base model and its adapters, every
/// request decoded by one continuously batched `BatchDecoder`.
public enum LatheServer {
    /// Listens at once (`/health` answers 503 until the model is in), loads the model with `loadModel` on a thread of
    /// its own, and serves until the task is cancelled or the process gets SIGINT / SIGTERM.
    /// - Parameter onListening: called with the bound port (useful with port 0).
    public static func run(_ configuration: ServeConfiguration, loadModel: @escaping @Sendable () throws -> LanguageModel,
                           onReady: @escaping @Sendable () -> Void = {},
                           onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let state = ServerState()
        let metrics = ServerMetrics()
        Thread.detachNewThread {
            do {
                let lm = try loadModel()
                state.set(.ready(try ModelService(lm: lm, configuration: configuration, metrics: metrics)))
                onReady()
            } catch {
                state.set(.failed("\(error)"))
            }
        }
        var logger = Logger(label: "lathe.serve")
        logger.logLevel = .warning
        let app = Application(router: routes(configuration, state: state, metrics: metrics),
                              configuration: .init(address: .hostname(configuration.host, port: configuration.port),
                                                   serverName: "lathe"),
                              onServerRunning: { channel in onListening(channel.localAddress?.port ?? configuration.port) },
                              logger: logger)
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
    }

    static func routes(_ configuration: ServeConfiguration, state: ServerState, metrics: ServerMetrics) -> Router<BasicRequestContext> {
        let router = Router()
        let handlers = Handlers(configuration: configuration, state: state, metrics: metrics)
        router.get("/health") { _, _ in handlers.health() }
        router.get("/metrics") { _, _ in handlers.metricsText() }
        router.get("/v1/models") { request, _ in await handlers.respond("/v1/models", request) { try handlers.models() } }
        router.post("/v1/chat/completions") { request, _ in
            await handlers.respond("/v1/chat/completions", request) { try await handlers.complete(request, endpoint: .chat) }
        }
        router.post("/v1/completions") { request, _ in
            await handlers.respond("/v1/completions", request) { try await handlers.complete(request, endpoint: .text) }
        }
        router.post("/v1/load_lora_adapter") { request, _ in
            await handlers.respond("/v1/load_lora_adapter", request) { try await handlers.loadAdapter(request) }
        }
        router.post("/v1/unload_lora_adapter") { request, _ in
            await handlers.respond("/v1/unload_lora_adapter", request) { try await handlers.unloadAdapter(request) }
        }
        return router
    }
}

/// Loading, ready or failed: what `/health` reports and what the other routes wait for.
final class ServerState: @unchecked Sendable {
    enum Phase { case loading, ready(ModelService), failed(String) }
    private let lock = NSLock()
    private var phase = Phase.loading
    func set(_ new: Phase) { lock.withLock { phase = new } }
    var current: Phase { lock.withLock { phase } }
}

struct Handlers: Sendable {
    let configuration: ServeConfiguration
    let state: ServerState
    let metrics: ServerMetrics

    // MARK: Plumbing

    /// Checks the bearer key, runs `body`, turns an `APIError` (or any other error) into OpenAI's error object, and
    /// counts the request by its status.
    func respond(_ endpoint: String, _ request: Request, _ body: () async throws -> Response) async -> Response {
        let response: Response
        do {
            try authorize(request)
            response = try await body()
        } catch let error as APIError {
            response = json(error.body, status: error.status)
        } catch {
            response = json(APIError(.internalServerError, "\(error)", type: "server_error").body, status: .internalServerError)
        }
        metrics.countRequest(endpoint: endpoint, status: response.status.code)
        return response
    }

    func authorize(_ request: Request) throws {
        guard let key = configuration.apiKey else { return }
        guard let header = request.headers[.authorization] else {
            throw APIError(.unauthorized, "You didn't provide an API key: send it as `Authorization: Bearer KEY`.",
                           code: "invalid_api_key")
        }
        guard header == "Bearer \(key)" else {
            throw APIError(.unauthorized, "Incorrect API key provided.", code: "invalid_api_key")
        }
    }

    func service() throws -> ModelService {
        switch state.current {
        case .ready(let service): return service
        case .loading: throw APIError(.serviceUnavailable, "the model is still loading; retry shortly", type: "server_error")
        case .failed(let why): throw APIError(.serviceUnavailable, "the model failed to load: \(why)", type: "server_error")
        }
    }

    func body(of request: Request) async throws -> Data {
        let limit = configuration.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIError(.contentTooLarge, "the request body is \(length) bytes; the limit is \(limit)")
        }
        var request = request
        do {
            let buffer = try await request.collectBody(upTo: limit)
            return Data(buffer.readableBytesView)
        } catch {
            throw APIError(.contentTooLarge, "the request body is over the limit of \(limit) bytes")
        }
    }

    func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: encodeJSON(value))))
    }

    // MARK: Routes

    func health() -> Response {
        switch state.current {
        case .ready: return json(["status": "ok"])
        case .loading: return json(["status": "loading"], status: .serviceUnavailable)
        case .failed(let why): return json(["status": "failed", "error": why], status: .serviceUnavailable)
        }
    }

    func metricsText() -> Response {
        let service = try? service()
        let text = metrics.exposition(queued: service?.decoder.queuedCount ?? 0, active: service?.decoder.activeCount ?? 0,
                                      slots: configuration.slots)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                        body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    func models() throws -> Response { json(try service().modelList) }

    func loadAdapter(_ request: Request) async throws -> Response {
        let service = try service()
        let fields = try adapterFields(try await body(of: request), allowed: ["lora_name", "lora_path"])
        let name = try fields.string("lora_name"), path = try fields.string("lora_path")
        try await service.loadAdapter(name: name, path: path)
        return json(["status": "ok", "message": "adapter \(name) loaded"])
    }

    func unloadAdapter(_ request: Request) async throws -> Response {
        let service = try service()
        let fields = try adapterFields(try await body(of: request), allowed: ["lora_name", "lora_int_id"])
        let name = try fields.string("lora_name")
        try await service.unloadAdapter(name: name)
        return json(["status": "ok", "message": "adapter \(name) unloaded"])
    }

    private func adapterFields(_ data: Data, allowed: Set<String>) throws -> JSONFields {
        guard case .object(let object)? = try? JSONValue.parse(data) else {
            throw APIError.invalid("The body must be a JSON object")
        }
        if let unknown = object.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw APIError.invalid("Unrecognized request argument supplied: \(unknown)", param: unknown)
        }
        return CompletionRequest.requestFields(object)
    }

    func complete(_ request: Request, endpoint: CompletionRequest.Endpoint) async throws -> Response {
        let service = try service()
        let parsed = try CompletionRequest.parse(try await body(of: request), endpoint: endpoint)
        let answer = CompletionAnswer(request: parsed, service: service)
        let (id, events) = try service.events(of: try service.decodeRequest(parsed))
        if parsed.stream {
            let body = ResponseBody { writer in
                var answer = answer
                do {
                    for chunk in answer.openingChunks() { try await writer.write(ByteBuffer(bytes: sse(chunk))) }
                    for await event in events {
                        for chunk in answer.chunks(for: event) { try await writer.write(ByteBuffer(bytes: sse(chunk))) }
                    }
                    try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                    try await writer.finish(nil)
                } catch {
                    // The client went away: free its slot.
                    service.decoder.cancel(id)
                    throw error
                }
            }
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
        }
        return try await withTaskCancellationHandler {
            var answer = answer
            for await event in events { answer.add(event) }
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(bytes: try answer.whole())))
        } onCancel: {
            service.decoder.cancel(id)
        }
    }
}

/// One server-sent event carrying a JSON chunk.
private func sse(_ json: Data) -> Data { Data("data: ".utf8) + json + Data("\n\n".utf8) }
