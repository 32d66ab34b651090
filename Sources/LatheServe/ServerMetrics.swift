import Foundation

/// The counters `GET /metrics` shows in Prometheus' text format: requests by endpoint and status, prompt and
/// completion tokens, time to first token, and the generation rate of the last ten seconds. Written by hand: a
/// handful of series need no metrics library.
final class ServerMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var requests: [String: Int] = [:]   // "endpoint\u{0}status" → count
    private var promptTokens = 0, completionTokens = 0
    /// Upper bounds (seconds) of the time-to-first-token histogram's buckets.
    static let firstTokenBuckets: [Double] = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
    private var firstTokenCounts = [Int](repeating: 0, count: firstTokenBuckets.count)
    private var firstTokenSum = 0.0, firstTokenCount = 0
    /// Completion tokens per whole second, for the recent rate.
    private var tokensBySecond: [Int: Int] = [:]
    static let rateWindow = 10

    func countRequest(endpoint: String, status: Int) {
        lock.withLock { requests["\(endpoint)\u{0}\(status)", default: 0] += 1 }
    }

    func countTokens(prompt: Int, completion: Int) {
        lock.withLock { promptTokens += prompt; completionTokens += completion }
    }

    func recordFirstToken(after seconds: Double) {
        lock.withLock {
            firstTokenSum += seconds; firstTokenCount += 1
            for (i, bound) in Self.firstTokenBuckets.enumerated() where seconds <= bound { firstTokenCounts[i] += 1 }
        }
    }

    func recordGeneratedToken(at time: Date = Date()) {
        let second = Int(time.timeIntervalSince1970)
        lock.withLock {
            tokensBySecond[second, default: 0] += 1
            if tokensBySecond.count > 4 * Self.rateWindow { tokensBySecond = tokensBySecond.filter { $0.key > second - Self.rateWindow } }
        }
    }

    /// The exposition text; `queued` and `active` are read from the decoder when asked.
    func exposition(queued: Int, active: Int, slots: Int, now: Date = Date()) -> String {
        lock.withLock {
            var lines: [String] = []
            func metric(_ name: String, _ type: String, _ help: String) {
                lines.append("# HELP \(name) \(help)"); lines.append("# TYPE \(name) \(type)")
            }
            metric("lathe_requests_total", "counter", "HTTP requests by endpoint and status code.")
            for (key, count) in requests.sorted(by: { $0.key < $1.key }) {
                let parts = key.split(separator: "\u{0}", omittingEmptySubsequences: false)
                lines.append("lathe_requests_total{endpoint=\"\(parts[0])\",status=\"\(parts[1])\"} \(count)")
            }
            func scalar(_ name: String, _ type: String, _ help: String, _ value: Int) {
                metric(name, type, help); lines.append("\(name) \(value)")
            }
            scalar("lathe_prompt_tokens_total", "counter", "Prompt tokens of finished requests.", promptTokens)
            scalar("lathe_completion_tokens_total", "counter", "Generated tokens of finished requests.", completionTokens)
            scalar("lathe_queue_length", "gauge", "Requests waiting for a decoding slot.", queued)
            scalar("lathe_active_requests", "gauge", "Requests decoding in a slot.", active)
            scalar("lathe_slots", "gauge", "Decoding slots (--max-concurrency).", slots)
            metric("lathe_time_to_first_token_seconds", "histogram", "From a request's arrival to its first token.")
            for (i, bound) in Self.firstTokenBuckets.enumerated() {
                lines.append("lathe_time_to_first_token_seconds_bucket{le=\"\(bound)\"} \(firstTokenCounts[i])")
            }
            lines.append("lathe_time_to_first_token_seconds_bucket{le=\"+Inf\"} \(firstTokenCount)")
            lines.append("lathe_time_to_first_token_seconds_sum \(firstTokenSum)")
            lines.append("lathe_time_to_first_token_seconds_count \(firstTokenCount)")
            // Whole seconds before the current one, so a second still filling does not pull the rate down.
            let current = Int(now.timeIntervalSince1970)
            let recent = tokensBySecond.filter { $0.key < current && $0.key >= current - Self.rateWindow }.values.reduce(0, +)
            metric("lathe_generation_tokens_per_second", "gauge", "Tokens generated per second over the last \(Self.rateWindow) s, all requests together.")
            lines.append("lathe_generation_tokens_per_second \(Double(recent) / Double(Self.rateWindow))")
            return lines.joined(separator: "\n") + "\n"
        }
    }
}
