import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tiny OpenAI-compatible HTTP server on 127.0.0.1 (an ephemeral port) that answers each request as a test
/// scripts it, for testing chat-completion clients over real HTTP. One thread per connection, `Connection: close`.
public final class ChatCompletionTestServer: @unchecked Sendable {
    /// What to do with one request.
    public enum Reply: Sendable {
        /// 200 with a well-formed chat completion whose `choices[0].message.content` is the text.
        case answer(String)
        /// Any status and raw body, with extra headers (e.g. `Retry-After`).
        case raw(status: Int, body: String, headers: [String: String] = [:])
        /// Wait this many seconds, then answer.
        case late(TimeInterval, String)
        /// Say nothing for this many seconds, then close the connection (a client timeout should fire first).
        case stall(TimeInterval)
    }

    /// One request as received.
    public struct Request: Sendable {
        public let method: String
        public let path: String
        /// Header names lowercased.
        public let headers: [String: String]
        public let body: Data
    }

    public private(set) var port: UInt16 = 0
    public var baseURL: URL { URL(string: "http://127.0.0.1:\(port)/v1")! }
    private let listener: Int32
    private let respond: @Sendable (Request, Int) -> Reply
    private let lock = NSLock()
    private var _requests: [Request] = []
    private var stopped = false

    /// Starts serving; `respond` gets each request and its 0-based index.
    public init(respond: @escaping @Sendable (Request, Int) -> Reply) throws {
        self.respond = respond
        #if canImport(Glibc)
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        listener = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard listener >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_in()
        #if canImport(Darwin)
        address.sin_len = UInt8(MemoryLayout<sockaddr_in>.size)
        #endif
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress -> Bool in
                bind(listener, socketAddress, length) == 0 && listen(listener, 16) == 0
                    && getsockname(listener, socketAddress, &length) == 0
            }
        }
        guard bound else { close(listener); throw POSIXError(.EADDRNOTAVAIL) }
        port = UInt16(bigEndian: address.sin_port)
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    /// Replies from a fixed script: request i gets `script[i]`, later requests get the last entry.
    public convenience init(script: [Reply]) throws {
        try self.init { _, index in script[min(index, script.count - 1)] }
    }

    deinit { stop() }

    /// The requests received so far, in order of arrival.
    public var requests: [Request] { lock.lock(); defer { lock.unlock() }; return _requests }

    /// Stops accepting connections. Closing only once matters: a second close could hit a descriptor number the
    /// process has since given to another socket.
    public func stop() {
        lock.lock(); defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    /// The body of a completion that says `text`, as OpenAI formats it.
    public static func completionBody(_ text: String) -> String {
        let object: [String: Any] = ["id": "test", "object": "chat.completion", "model": "test",
                                     "choices": [["index": 0, "finish_reason": "stop",
                                                  "message": ["role": "assistant", "content": text]]]]
        let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    private func acceptLoop() {
        while true {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { return }
            Thread { [self] in serve(connection) }.start()
        }
    }

    private func serve(_ connection: Int32) {
        defer { close(connection) }
        guard let request = read(connection) else { return }
        let index: Int = { lock.lock(); defer { lock.unlock() }; _requests.append(request); return _requests.count - 1 }()
        switch respond(request, index) {
        case .answer(let text):
            write(connection, status: 200, body: Self.completionBody(text), headers: ["Content-Type": "application/json"])
        case .raw(let status, let body, let headers):
            write(connection, status: status, body: body, headers: headers)
        case .late(let seconds, let text):
            Thread.sleep(forTimeInterval: seconds)
            write(connection, status: 200, body: Self.completionBody(text), headers: ["Content-Type": "application/json"])
        case .stall(let seconds):
            Thread.sleep(forTimeInterval: seconds)
        }
    }

    /// Reads the head up to the blank line, then `Content-Length` bytes of body.
    private func read(_ connection: Int32) -> Request? {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        let separator = Data("\r\n\r\n".utf8)
        var headEnd: Range<Data.Index>?
        var expected = Int.max
        while data.count < expected {
            let count = recv(connection, &buffer, buffer.count, 0)
            guard count > 0 else { return nil }
            data.append(buffer, count: count)
            if headEnd == nil, let found = data.range(of: separator) {
                headEnd = found
                let head = String(decoding: data[..<found.lowerBound], as: UTF8.self)
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                expected = found.upperBound + length
            }
        }
        guard let headEnd else { return nil }
        let lines = String(decoding: data[..<headEnd.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let requestLine = lines[0].split(separator: " ")
        guard requestLine.count >= 2 else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Request(method: String(requestLine[0]), path: String(requestLine[1]), headers: headers,
                       body: Data(data[headEnd.upperBound...]))
    }

    private func write(_ connection: Int32, status: Int, body: String, headers: [String: String]) {
        var head = "HTTP/1.1 \(status) Status\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        let bytes = Array((head + "\r\n" + body).utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { send(connection, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return }
            sent += count
        }
    }
}
