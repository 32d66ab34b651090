import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import LatheModels
import LatheTensors
import LatheServe
import LatheTestSupport
import XCTest

/// A tiny model with two random LoRA adapters (`alpha`, `beta`, their B non-zero so that each changes the answers)
/// served on 127.0.0.1 at a free port, and a plain HTTP client for it.
final class ServerFixture: @unchecked Sendable {
    let folder: TinyModelFolder
    let adaptersDirectory: URL
    private(set) var port = 0
    private var task: Task<Void, Error>?
    let configuration: ServeConfiguration

    /// - Parameter hidden: the model's width; wider models decode slower (a queue test needs requests to overlap).
    init(apiKey: String? = nil, slots: Int = 4, context: Int = 64, maxQueue: Int = 64, maxBodyBytes: Int = 1 << 20,
         hidden: Int = 32) throws {
        folder = try TinyModelFolder()
        if hidden != 32 {
            try TinyModel.write(to: URL(fileURLWithPath: folder.modelPath), hidden: hidden, layers: 4, intermediate: 4 * hidden)
        }
        let adaptersDirectory = folder.file("adapters")
        self.adaptersDirectory = adaptersDirectory
        for (name, seed) in [("alpha", UInt64(7)), ("beta", 8), ("gamma", 9)] {
            try Self.writeAdapter(base: folder.modelPath, seed: seed, to: adaptersDirectory.appendingPathComponent(name))
        }
        var c = ServeConfiguration(modelID: "tiny")
        c.port = 0; c.apiKey = apiKey; c.slots = slots; c.contextPerSlot = context; c.maxQueue = maxQueue
        c.maxBodyBytes = maxBodyBytes; c.adaptersDirectory = adaptersDirectory
        c.adapters = ["alpha", "beta"].map { .init(name: $0, path: adaptersDirectory.appendingPathComponent($0).path) }
        configuration = c
    }

    static func writeAdapter(base: String, seed: UInt64, to folder: URL) throws {
        let lm = try LanguageModel.load(base)
        let config = LoRAConfiguration(rank: 4, alpha: 8, targets: ["q_proj", "v_proj", "down_proj"])
        let adapters = try lm.model.attachLoRA(config, seed: seed)
        var random = SeededGenerator(seed: seed)
        for adapter in adapters { for i in 0..<adapter.b.tensor.count { adapter.b.tensor[i] = (random.nextUnitFloat() - 0.5) * 0.3 } }
        try PEFTAdapter.save(lm.model, config: config, baseModel: "tiny", to: folder)
    }

    /// Starts the server and waits until `/health` says it is ready.
    func start() throws {
        let listening = Handover<Int>()
        let modelPath = folder.modelPath
        let configuration = configuration
        task = Task {
            try await LatheServer.run(configuration, loadModel: { try LanguageModel.load(modelPath) },
                                      onListening: { port in listening.fulfil(port) })
        }
        port = try listening.wait(seconds: 30)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if (try? get("/health").status) == 200 { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw TimedOut(seconds: 30)
    }

    func stop() {
        task?.cancel()
        folder.remove()
    }

    // MARK: HTTP

    struct Reply {
        let status: Int
        let body: Data
        let headers: [String: String]
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
        var errorParam: String? { (json["error"] as? [String: Any])?["param"] as? String }
        var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    }

    func get(_ path: String, key: String? = nil) throws -> Reply {
        try send(path, method: "GET", body: nil, key: key)
    }

    func post(_ path: String, _ body: [String: Any], key: String? = nil) throws -> Reply {
        try send(path, method: "POST", body: try JSONSerialization.data(withJSONObject: body), key: key)
    }

    func send(_ path: String, method: String, body: Data?, key: String? = nil) throws -> Reply {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        request.httpBody = body
        request.timeoutInterval = 120
        if body != nil { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        if let key { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
        let done = Handover<Reply>()
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let error { done.fail(error); return }
            let http = response as! HTTPURLResponse
            var headers: [String: String] = [:]
            for (k, v) in http.allHeaderFields { headers["\(k)".lowercased()] = "\(v)" }
            done.fulfil(Reply(status: http.statusCode, body: data ?? Data(), headers: headers))
        }.resume()
        return try done.wait(seconds: 180)
    }

    /// The `data:` payloads of a server-sent event stream, in order.
    static func events(_ text: String) -> [String] {
        text.components(separatedBy: "\n\n").compactMap { event in
            event.hasPrefix("data: ") ? String(event.dropFirst(6)) : nil
        }
    }
}

/// A value handed over from another thread, waited for with a timeout.
final class Handover<Value>: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private var result: Result<Value, Error>?
    func fulfil(_ value: Value) { result = .success(value); semaphore.signal() }
    func fail(_ error: Error) { result = .failure(error); semaphore.signal() }
    func wait(seconds: Double) throws -> Value {
        guard semaphore.wait(timeout: .now() + seconds) == .success, let result else {
            throw TimedOut(seconds: seconds)
        }
        return try result.get()
    }
}

struct TimedOut: Error, CustomStringConvertible {
    let seconds: Double
    var description: String { "timed out after \(seconds) s" }
}

/// Runs `body(i)` for every i on threads of its own, all at once (`concurrentPerform` would run only as many at
/// a time as there are cores), and waits for them.
func concurrently(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        Thread.detachNewThread { body(i); group.leave() }
    }
    group.wait()
}
