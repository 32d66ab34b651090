import Foundation
import LatheTensors
import LatheTokenizers

/// One continuation for a `BatchDecoder` to produce.
public struct DecodeRequest: Sendable {
    public var prompt: [Int]
    public var maxTokens: Int
    /// Its seed starts this request's own random stream.
    public var sampling: SamplingOptions
    /// nil: the base model; else the name of an adapter attached to the model.
    public var adapter: String?
    /// Text that ends the answer (never emitted); the model's stop tokens always apply.
    public var stopStrings: [String]
    /// nil: no log-probabilities; 0...20: the chosen token's and that many alternatives'.
    public var topLogprobs: Int?
    /// Also keep the chosen token's log-probability under the sampling distribution (RL rollouts).
    var keepsSamplingLogprob = false

    public init(prompt: [Int], maxTokens: Int, sampling: SamplingOptions = SamplingOptions(), adapter: String? = nil,
                stopStrings: [String] = [], topLogprobs: Int? = nil) {
        self.prompt = prompt; self.maxTokens = maxTokens; self.sampling = sampling; self.adapter = adapter
        self.stopStrings = stopStrings; self.topLogprobs = topLogprobs
    }
}

/// A token and its log-probability: an alternative the model considered.
public struct TokenLogprob: Sendable, Equatable {
    public var id: Int
    /// The token's own text (a byte of a longer character shows as U+FFFD).
    public var text: String
    public var logprob: Float
}

/// One token of an answer as it is decoded.
public struct DecodedToken: Sendable, Equatable {
    public var id: Int
    /// The text this token adds to the answer: complete characters only, special tokens skipped, stop strings never
    /// emitted, and text held back while it may still be the start of one (so it may be empty, or carry text held
    /// back at earlier tokens).
    public var text: String
    /// log softmax of the raw logits at the chosen token (OpenAI's convention: before the repetition penalty,
    /// temperature, top-k and top-p); nil unless the request asked for log-probabilities.
    public var logprob: Float?
    /// The `topLogprobs` most likely tokens of the raw logits, best first.
    public var top: [TokenLogprob]
    /// log softmax of the sampling distribution (after the penalty and temperature) at the chosen token, for rollouts.
    var samplingLogprob: Float?
}

public enum FinishReason: String, Sendable { case stop, length }

/// What a request's `onEvent` receives: its tokens one by one, then one `finished` (or `failed`).
public enum DecodeEvent: Sendable {
    case token(DecodedToken)
    /// The answer ended on a stop token or stop string (`stop`) or at `maxTokens` (`length`). A stop token is sent as
    /// the last `token` (with no text) and counted in `completionTokens`.
    case finished(FinishReason, promptTokens: Int, completionTokens: Int)
    /// The request could not go on (its adapter was detached while it waited or ran); nothing more follows.
    case failed(String)
}

/// The decode engine that `lathe generate`, evaluation, RL rollouts and the server share: a fixed number of slots,
/// each with its own KV cache row, sampling state, stop strings and adapter, stepped together (llama.cpp's server
/// slots, vLLM's continuous batching). Requests join free slots between steps and leave when done; each step runs
/// one forward pass over every active slot, rows sorted by adapter so that the base product is shared and each
/// adapter's low-rank term is applied to its own rows only.
///
/// A request's answer does not depend on what else is in the batch: each row attends to its own slot only, samples
/// from its own stream, and its adapter touches its rows only. The one coupling left is floating-point: a matrix
/// product's summation order may differ with the number of rows, so logits agree to float noise (about 1e-6
/// relative), not bit for bit; greedy answers are the same unless two logits tie to that precision.
///
/// Submission, cancellation and the counters are thread-safe; `step` runs on one thread at a time (the decoder's own
/// after `start()`), which is also where `onEvent` is called.
public final class BatchDecoder: @unchecked Sendable {
    public let slotCount: Int
    public let contextPerSlot: Int
    let model: DecoderModel
    let languageModel: LanguageModel?
    let tokenizer: Tokenizer?
    let stopTokenIDs: Set<Int>
    /// Tokens of one prefill pass at most: a larger group of equal-length prompts is split, bounding activations.
    public static let prefillTokenBudget = 2048
    private let cache: KVCache

    // Shared with submitting threads: guarded by `lock`, which also wakes the decoder's thread.
    private let lock = NSCondition()
    private var queue: [Waiting] = []
    private var cancelled: Set<Int> = []
    private var mutations: [@Sendable (LanguageModel) -> Void] = []
    /// The adapter of every request in a slot, by id.
    private var activeAdapters: [Int: String?] = [:]
    private var attachedAdapters: Set<String>
    private var nextID = 0
    private var threadStarted = false

    // The stepping thread's own.
    private let stepLock = NSLock()
    private var slots: [Running?]

    private struct Waiting {
        let id: Int
        let request: DecodeRequest
        let onEvent: @Sendable (DecodeEvent) -> Void
    }

    private struct Running {
        let id: Int
        let request: DecodeRequest
        let onEvent: @Sendable (DecodeEvent) -> Void
        var sampler: TokenSampler
        /// The prompt, then the completion: what the repetition penalty looks at.
        var tokens: [Int]
        var completionCount = 0
        /// The last token chosen, which the next step feeds to the model.
        var next: Int?
        var text: AnswerText?
    }

    public convenience init(model: LanguageModel, slots: Int, contextPerSlot: Int) {
        self.init(model: model.model, languageModel: model, tokenizer: model.tokenizer, stopTokenIDs: model.stopTokenIDs,
                  slots: slots, contextPerSlot: contextPerSlot)
    }

    /// A decoder of token ids alone (no tokenizer: no text, no stop strings), with its own stop tokens: RL rollouts.
    init(model: DecoderModel, languageModel: LanguageModel? = nil, tokenizer: Tokenizer?, stopTokenIDs: Set<Int>,
         slots: Int, contextPerSlot: Int) {
        self.model = model
        self.languageModel = languageModel
        self.tokenizer = tokenizer
        self.stopTokenIDs = stopTokenIDs
        slotCount = max(1, slots)
        self.contextPerSlot = max(1, contextPerSlot)
        cache = KVCache(config: model.config, batchSize: slotCount, capacity: self.contextPerSlot)
        self.slots = Array(repeating: nil, count: slotCount)
        attachedAdapters = Set(model.adapters.map(\.adapterName))
    }

    // MARK: Submission (any thread)

    /// Validates the request and queues it; returns its id. Throws, naming the limit or field, when the prompt is
    /// empty or holds a token outside the vocabulary, when prompt + maxTokens exceed `contextPerSlot`, when the
    /// adapter is not attached, or on bad sampling options. `onEvent` is called on the decoder's thread.
    public func submit(_ request: DecodeRequest, onEvent: @escaping @Sendable (DecodeEvent) -> Void) throws -> Int {
        try request.sampling.validate()
        let promptLength = request.prompt.count, vocabulary = model.config.vocabularySize
        guard promptLength > 0 else { throw ModelError.invalidInput("the prompt has no tokens") }
        guard request.maxTokens >= 0 else { throw ModelError.invalidInput("maxTokens must be ≥ 0, got \(request.maxTokens)") }
        guard promptLength + request.maxTokens <= contextPerSlot else {
            throw ModelError.invalidInput("the prompt (\(promptLength) tokens) and maxTokens (\(request.maxTokens)) need "
                + "\(promptLength + request.maxTokens) positions; the decoder's context is \(contextPerSlot) per slot")
        }
        if let bad = request.prompt.first(where: { !(0..<vocabulary).contains($0) }) {
            throw ModelError.invalidInput("prompt token \(bad) is outside the vocabulary (0..<\(vocabulary))")
        }
        if let count = request.topLogprobs, !(0...20).contains(count) {
            throw ModelError.invalidInput("topLogprobs must be in 0...20, got \(count)")
        }
        if !request.stopStrings.isEmpty {
            guard tokenizer != nil else { throw ModelError.invalidInput("stop strings need the model's tokenizer") }
            guard !request.stopStrings.contains("") else { throw ModelError.invalidInput("a stop string is empty") }
        }
        lock.lock()
        defer { lock.unlock() }
        if let adapter = request.adapter, !attachedAdapters.contains(adapter) {
            let names = attachedAdapters.sorted()
            throw ModelError.invalidInput("no adapter named '\(adapter)' is attached to the model"
                + (names.isEmpty ? "" : " (attached: \(names.joined(separator: ", ")))"))
        }
        let id = nextID
        nextID += 1
        queue.append(Waiting(id: id, request: request, onEvent: onEvent))
        lock.signal()
        return id
    }

    /// Forgets a request (its client went away): a waiting one leaves the queue now, a running one's slot is freed at
    /// the next step. No further event is sent for it.
    public func cancel(_ id: Int) {
        lock.lock()
        defer { lock.unlock() }
        if let index = queue.firstIndex(where: { $0.id == id }) {
            queue.remove(at: index)
        } else if activeAdapters[id] != nil {
            cancelled.insert(id)
            lock.signal()
        }
    }

    /// Requests waiting for a slot.
    public var queuedCount: Int { lock.lock(); defer { lock.unlock() }; return queue.count }
    /// Requests in a slot.
    public var activeCount: Int { lock.lock(); defer { lock.unlock() }; return activeAdapters.count }

    /// Runs a mutation of the model (loading or detaching an adapter) between two steps, on the decoder's thread. A
    /// running request whose adapter is gone afterwards fails.
    public func betweenSteps(_ body: @escaping @Sendable (LanguageModel) -> Void) {
        precondition(languageModel != nil, "betweenSteps needs a decoder made from a LanguageModel")
        lock.lock()
        defer { lock.unlock() }
        mutations.append(body)
        lock.signal()
    }

    /// Whether a waiting or running request names the adapter (so it must not be detached yet).
    public func adapterInUse(_ name: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return queue.contains { $0.request.adapter == name } || activeAdapters.values.contains(name)
    }

    /// Starts a dedicated thread that steps while there is work and sleeps otherwise; it runs for the decoder's life.
    public func start() {
        lock.lock()
        defer { lock.unlock() }
        guard !threadStarted else { return }
        threadStarted = true
        let thread = Thread { [self] in
            while true {
                lock.lock()
                while queue.isEmpty && mutations.isEmpty && cancelled.isEmpty && activeAdapters.isEmpty { lock.wait() }
                lock.unlock()
                do {
                    while try step() {}
                } catch {
                    // The failed pass's requests were told (`failed`); the others carry on.
                    FileHandle.standardError.write(Data("batch decoder: \(error)\n".utf8))
                }
            }
        }
        thread.name = "lathe batch decoder"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Submits `requests`, steps on the caller's thread until every one has finished, and hands each event to
    /// `onEvent` with the request's index. For a decoder of its own (not one that `start()`ed a thread). A failed
    /// request, or an error from `onEvent`, cancels the rest and is thrown.
    public func decodeAll(_ requests: [DecodeRequest], onEvent: (Int, DecodeEvent) throws -> Void) throws {
        final class Inbox: @unchecked Sendable { var events: [(Int, DecodeEvent)] = [] }
        let inbox = Inbox()
        var ids: [Int] = []
        defer { for id in ids { cancel(id) } }
        for (index, request) in requests.enumerated() {
            ids.append(try submit(request) { inbox.events.append((index, $0)) })
        }
        var working = true
        while working {
            working = try step()
            let events = inbox.events
            inbox.events.removeAll()
            for (index, event) in events {
                if case .failed(let message) = event { throw ModelError.invalidInput(message) }
                try onEvent(index, event)
            }
        }
        ids.removeAll()
    }

    // MARK: Stepping (the decoder's thread)

    /// One step on the caller's thread: applies pending model mutations, frees cancelled slots, admits waiting requests
    /// into free slots (one prefill pass per prompt length, adapters mixed), decodes one token for every active slot,
    /// sends the events and frees finished slots. Returns false when there was nothing to do.
    public func step() throws -> Bool {
        stepLock.lock()
        defer { stepLock.unlock() }
        lock.lock()
        let mutations = self.mutations, cancelled = self.cancelled
        self.mutations.removeAll()
        self.cancelled.removeAll()
        lock.unlock()
        if let languageModel, !mutations.isEmpty {
            for mutation in mutations { mutation(languageModel) }
            let attached = Set(model.adapters.map(\.adapterName))
            lock.lock()
            attachedAdapters = attached
            lock.unlock()
            for slot in slots.indices {
                if let running = slots[slot], let adapter = running.request.adapter, !attached.contains(adapter) {
                    release(slot)
                    running.onEvent(.failed("the adapter '\(adapter)' was detached while the request ran"))
                }
            }
        }
        for slot in slots.indices where slots[slot].map({ cancelled.contains($0.id) }) == true { release(slot) }
        let admitted = admit()
        let decoding = slots.indices.filter { slots[$0]?.next != nil }
        try model.withoutDropout {
            try prefill(admitted)
            try decode(decoding + admitted.filter { slots[$0]?.next != nil })
        }
        return !(mutations.isEmpty && cancelled.isEmpty && admitted.isEmpty && decoding.isEmpty)
    }

    /// Moves waiting requests into free slots; returns the slots to prefill.
    private func admit() -> [Int] {
        let free = slots.indices.filter { slots[$0] == nil }
        lock.lock()
        let taken = Array(queue.prefix(free.count))
        queue.removeFirst(taken.count)
        let attached = attachedAdapters
        for waiting in taken { activeAdapters[waiting.id] = waiting.request.adapter }
        lock.unlock()
        var admitted: [Int] = []
        for (slot, waiting) in zip(free, taken) {
            let request = waiting.request
            if let adapter = request.adapter, !attached.contains(adapter) {
                forget(waiting.id)
                waiting.onEvent(.failed("the adapter '\(adapter)' was detached before the request started"))
                continue
            }
            guard request.maxTokens > 0 else {
                forget(waiting.id)
                waiting.onEvent(.finished(.length, promptTokens: request.prompt.count, completionTokens: 0))
                continue
            }
            slots[slot] = Running(id: waiting.id, request: request, onEvent: waiting.onEvent,
                                  sampler: TokenSampler(options: request.sampling), tokens: request.prompt,
                                  text: tokenizer.map { AnswerText(tokenizer: $0, stopStrings: request.stopStrings) })
            admitted.append(slot)
        }
        return admitted
    }

    /// The prompts of newly admitted slots, equal lengths together, and each one's first token.
    private func prefill(_ admitted: [Int]) throws {
        let byLength = Dictionary(grouping: admitted) { slots[$0]!.request.prompt.count }
        for length in byLength.keys.sorted() {
            let group = byLength[length]!
            let rowsPerPass = max(1, Self.prefillTokenBudget / length)
            for start in stride(from: 0, to: group.count, by: rowsPerPass) {
                let part = Array(group[start..<min(start + rowsPerPass, group.count)])
                try pass(part, length: length) { slots[$0]!.request.prompt }
            }
        }
    }

    /// Feeds every given slot's last token and chooses its next.
    private func decode(_ decoding: [Int]) throws {
        guard !decoding.isEmpty else { return }
        try pass(decoding, length: 1) { [slots[$0]!.next!] }
    }

    /// One forward pass of `length` tokens per slot, rows sorted by adapter, each adapter on its own rows; then one
    /// token chosen per slot. The pass's requests fail if it throws.
    private func pass(_ passSlots: [Int], length: Int, tokens: (Int) -> [Int]) throws {
        let rows = passSlots.sorted { (slots[$0]!.request.adapter ?? "", $0) < (slots[$1]!.request.adapter ?? "", $1) }
        var adapterRows: [String: Range<Int>] = [:]
        for (b, slot) in rows.enumerated() {
            guard let name = slots[slot]!.request.adapter else { continue }
            let lower = adapterRows[name]?.lowerBound ?? b * length
            adapterRows[name] = lower..<(b + 1) * length
        }
        let adapters = model.adapters
        let logits: Tensor
        do {
            logits = try model.withAdapters(where: { adapterRows[$0.adapterName] != nil }) {
                for adapter in adapters { adapter.rows = adapterRows[adapter.adapterName] }
                defer { for adapter in adapters { adapter.rows = nil } }
                return try model.forward(tokens: rows.flatMap(tokens), batchSize: rows.count, cache: cache, slots: rows,
                                         logits: .last)
            }
        } catch {
            for slot in rows {
                let running = slots[slot]!
                release(slot)
                running.onEvent(.failed("decoding failed: \(error)"))
            }
            throw error
        }
        for (b, slot) in rows.enumerated() {
            choose(slot, logits: logits.pointer + b * model.config.vocabularySize)
        }
    }

    /// Samples the slot's next token from its logits row, sends it, and ends the request when it is done.
    private func choose(_ slot: Int, logits: UnsafeMutablePointer<Float>) {
        var running = slots[slot]!
        let request = running.request, vocabulary = model.config.vocabularySize
        // The sampler rescales the row in place: what OpenAI's log-probabilities need is read first.
        var raw: [Float] = []
        if request.topLogprobs != nil { raw = Array(UnsafeBufferPointer(start: logits, count: vocabulary)) }
        let id = running.sampler.sample(logits, vocabularySize: vocabulary, history: running.tokens)
        var token = DecodedToken(id: id, text: "", logprob: nil, top: [])
        if request.keepsSamplingLogprob { token.samplingLogprob = logits[id] - logSumExp(logits, count: vocabulary) }
        if let count = request.topLogprobs {
            raw.withUnsafeBufferPointer { row in
                let total = logSumExp(row.baseAddress!, count: vocabulary)
                token.logprob = row[id] - total
                token.top = Self.largest(row, count: count).map {
                    TokenLogprob(id: $0, text: tokenizer?.decode([$0]) ?? "", logprob: row[$0] - total)
                }
            }
        }
        running.tokens.append(id)
        running.completionCount += 1
        let stoppedByToken = stopTokenIDs.contains(id), isLast = running.completionCount == request.maxTokens
        var stoppedByString = false
        if var text = running.text {
            // A stop token adds no text; at the end, whatever was held back is released.
            if !stoppedByToken { (token.text, stoppedByString) = text.feed(id) }
            if stoppedByToken || (isLast && !stoppedByString) { token.text += text.finish() }
            running.text = text
        }
        let finish: FinishReason? = stoppedByToken || stoppedByString ? .stop : isLast ? .length : nil
        running.next = id
        slots[slot] = running
        running.onEvent(.token(token))
        if let finish {
            release(slot)
            running.onEvent(.finished(finish, promptTokens: request.prompt.count, completionTokens: running.completionCount))
        }
    }

    /// Frees a slot for the next request, without reallocating its cache row.
    private func release(_ slot: Int) {
        if let running = slots[slot] { forget(running.id) }
        slots[slot] = nil
        cache.clear(slot: slot)
    }

    private func forget(_ id: Int) {
        lock.lock()
        activeAdapters[id] = nil
        lock.unlock()
    }

    /// The ids of the `count` largest values, best first (ties: the lower id first).
    static func largest(_ values: UnsafeBufferPointer<Float>, count: Int) -> [Int] {
        var best: [Int] = []
        guard count > 0 else { return best }
        for i in values.indices where best.count < count || values[i] > values[best[best.count - 1]] {
            let position = best.firstIndex { values[i] > values[$0] } ?? best.count
            best.insert(i, at: position)
            if best.count > count { best.removeLast() }
        }
        return best
    }
}

/// The answer's text as its tokens arrive: complete characters, special tokens skipped, cut before the first stop
/// string, and held back while its end may still be the start of one.
struct AnswerText {
    private var decoder: StreamingDecoder
    private let stopStrings: [String]
    private var held = ""

    init(tokenizer: Tokenizer, stopStrings: [String]) {
        decoder = StreamingDecoder(tokenizer: tokenizer, skipSpecialTokens: true)
        self.stopStrings = stopStrings
    }

    /// The text that token adds to the answer, and whether a stop string now ends it.
    mutating func feed(_ token: Int) -> (text: String, stopped: Bool) {
        held += decoder.feed(token)
        return release()
    }

    /// What is still held back, at the end of the answer (cut at a stop string it completes).
    mutating func finish() -> String {
        held += decoder.finish()
        let (text, stopped) = release()
        return stopped ? text : text + held
    }

    private mutating func release() -> (text: String, stopped: Bool) {
        guard !stopStrings.isEmpty else { defer { held = "" }; return (held, false) }
        if let cut = stopStrings.compactMap({ held.range(of: $0)?.lowerBound }).min() {
            defer { held = "" }
            return (String(held[..<cut]), true)
        }
        // Keep the longest end of the text that a stop string starts with.
        let longest = min(held.count, (stopStrings.map(\.count).max() ?? 1) - 1)
        let kept = (0...longest).reversed().first { k in stopStrings.contains { $0.hasPrefix(held.suffix(k)) } } ?? 0
        let text = String(held.dropLast(kept))
        held = String(held.suffix(kept))
        return (text, false)
    }
}
