import Foundation

/// `--threads` and the YAML key `threads`: a fixed number of compute threads, or `auto`, which resolves to one
/// thread or every core: every core unless a model-shaped workload measures slower on them (`AutoThreads`).
public enum ThreadSetting: Equatable, Sendable, Codable, LosslessStringConvertible {
    case auto
    case count(Int)

    /// "auto" or a whole number of at least 1.
    public init?(_ text: String) {
        if text == "auto" {
            self = .auto
        } else if let count = Int(text), count >= 1 {
            self = .count(count)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .count(let count): return String(count)
        }
    }

    /// The thread count this setting stands for; `auto` measures the first time it is asked (`AutoThreads`).
    public var resolvedCount: Int {
        switch self {
        case .auto: return AutoThreads.measurement.chosen
        case .count(let count): return count
        }
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let count = try? container.decode(Int.self) {
            guard count >= 1 else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "threads must be auto or at least 1, got \(count)")
            }
            self = .count(count)
            return
        }
        let text = try container.decode(String.self)
        guard let setting = ThreadSetting(text) else {
            throw DecodingError.dataCorruptedError(in: container,
                                                   debugDescription: "threads must be auto or a whole number of at least 1, got '\(text)'")
        }
        self = setting
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .auto: try container.encode("auto")
        case .count(let count): try container.encode(count)
        }
    }
}

extension MatMul {
    /// Resolves `setting` (measuring once for `auto`) and sets that many threads for everything; returns the count.
    @discardableResult
    public static func setThreads(_ setting: ThreadSetting) -> Int {
        let count = setting.resolvedCount
        setThreadCount(count)
        return count
    }
}

/// What `--threads auto` picks: how much a second core gives varies by machine (from nothing to nearly 2× on the
/// products) and with what else runs there, so it is measured, once per process, on a model-shaped workload: a
/// product of SmolLM2's MLP shape (512 × 576 × 1536) with one thread and with every core, alternately, best of five
/// each (about 50–100 ms in all). Every core is kept unless it is slower than one thread by `margin`. The product alone, not the row kernels: it is
/// most of a step, the kernels split only above the size where they scale as it does, and it runs at the same speed
/// in a debug build (where the Swift kernels would make the measurement take seconds).
public enum AutoThreads {
    /// The times of one measurement and what they chose.
    public struct Measurement: Sendable, Equatable, CustomStringConvertible {
        /// Cores the process may use (`ProcessInfo.activeProcessorCount`).
        public let cores: Int
        /// Seconds of the workload, the best of five, on one thread and on `cores` threads.
        public let oneThread: Double
        public let allCores: Double
        public let chosen: Int

        public var description: String {
            guard cores > 1 else { return "1 (one core)" }
            return String(format: "%d (workload %.2f ms on 1 thread, %.2f ms on %d)", chosen, oneThread * 1e3, allCores * 1e3, cores)
        }
    }

    /// How much slower every core must measure before one thread is chosen. The error is lopsided: a core that
    /// is busy for a moment at start-up (the kernel freeing a previous process's memory) made a margin the other way
    /// pick one thread for a whole run that two threads made 1.6× faster (`bench/sft.sh`, LoRA (8, 256)); with
    /// OpenMP's threads waiting passively, two threads on a core that stays busy cost far less than that.
    public static let margin = 0.05

    /// The thread count for the measured times: `cores` unless they are slower than one thread by more than `margin`.
    public static func choose(oneThread: Double, allCores: Double, cores: Int) -> Int {
        guard cores > 1, oneThread > 0, allCores > 0, oneThread.isFinite, allCores.isFinite else { return 1 }
        return allCores <= oneThread * (1 + margin) ? cores : 1
    }

    /// This process's measurement, made the first time it is asked.
    public static let measurement = measure(cores: ProcessInfo.processInfo.activeProcessorCount)

    /// Times the workload on one thread and on `cores`, and restores the thread count it found.
    public static func measure(cores: Int) -> Measurement {
        guard cores > 1 else { return Measurement(cores: cores, oneThread: 0, allCores: 0, chosen: 1) }
        let rows = 512, hidden = 576, inner = 1536
        let input = UnsafeMutablePointer<Float>.allocate(capacity: rows * hidden)
        let weight = UnsafeMutablePointer<Float>.allocate(capacity: inner * hidden)
        let projected = UnsafeMutablePointer<Float>.allocate(capacity: rows * inner)
        defer { for buffer in [input, weight, projected] { buffer.deallocate() } }
        // Values of a trained model's size; the speed of the product does not depend on them.
        input.initialize(repeating: 0.25, count: rows * hidden)
        weight.initialize(repeating: -0.01, count: inner * hidden)

        func seconds(threads: Int) -> Double {
            MatMul.setThreadCount(threads)
            let start = DispatchTime.now().uptimeNanoseconds
            MatMul.multiply(input, weight, into: projected, m: rows, n: inner, k: hidden, transposeB: true)
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        let previous = Parallel.threadCount
        // The first runs compile oneDNN's kernels and start OpenMP's threads.
        _ = seconds(threads: 1)
        _ = seconds(threads: cores)
        var one = Double.infinity, all = Double.infinity
        for _ in 0..<5 {
            one = min(one, seconds(threads: 1))
            all = min(all, seconds(threads: cores))
        }
        MatMul.setThreadCount(previous)
        return Measurement(cores: cores, oneThread: one, allCores: all, chosen: choose(oneThread: one, allCores: all, cores: cores))
    }
}
