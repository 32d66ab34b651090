import Foundation
import LatheTensors

/// How the next token is chosen from the logits, with Hugging Face's order of processing:
/// repetition penalty, temperature, top-k, top-p, then a draw (or the argmax when temperature is 0).
public struct SamplingOptions: Sendable, Equatable {
    public var temperature: Float = 0
    public var topK: Int = 0
    public var topP: Float = 1
    public var repetitionPenalty: Float = 1
    public var seed: UInt64 = 0

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, repetitionPenalty: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature; self.topK = topK; self.topP = topP
        self.repetitionPenalty = repetitionPenalty; self.seed = seed
    }

    /// Rejects values that have no meaning, naming the option.
    public func validate() throws {
        if !(temperature >= 0) { throw ModelError.invalidInput("temperature must be ≥ 0, got \(temperature)") }
        if topK < 0 { throw ModelError.invalidInput("top-k must be ≥ 0 (0 turns it off), got \(topK)") }
        if !(topP > 0 && topP <= 1) { throw ModelError.invalidInput("top-p must be in (0, 1], got \(topP)") }
        if !(repetitionPenalty > 0) { throw ModelError.invalidInput("repetition penalty must be > 0, got \(repetitionPenalty)") }
    }
}

/// Chooses tokens from logits rows according to `SamplingOptions`, with its own seeded random stream.
public struct TokenSampler: Sendable {
    public let options: SamplingOptions
    var random: SeededGenerator

    public init(options: SamplingOptions) {
        self.options = options
        random = SeededGenerator(seed: options.seed)
    }

    /// Picks one token from `logits` (one row of the vocabulary); `history` holds the tokens seen so far,
    /// which the repetition penalty discourages.
    public mutating func sample(_ logits: UnsafeMutablePointer<Float>, vocabularySize n: Int, history: [Int]) -> Int {
        if options.repetitionPenalty != 1 {
            for token in Set(history) where token < n {
                let v = logits[token]
                logits[token] = v < 0 ? v * options.repetitionPenalty : v / options.repetitionPenalty
            }
        }
        if options.temperature == 0 { return Self.argmax(logits, count: n) }
        for i in 0..<n { logits[i] /= options.temperature }
        if options.topK == 0 || options.topK >= n, options.topP >= 1 { return drawFromAll(logits, count: n) }

        // Candidates in decreasing order of logit; top-k and top-p only ever shorten this list.
        var candidates = Array(0..<n)
        if options.topK > 0 && options.topK < n {
            let threshold = Self.kthLargest(logits, count: n, k: options.topK)
            candidates = candidates.filter { logits[$0] >= threshold }
        }
        candidates.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        let maximum = logits[candidates[0]]
        var probabilities = candidates.map { Double(exp(logits[$0] - maximum)) }
        let total = probabilities.reduce(0, +)
        probabilities = probabilities.map { $0 / total }
        if options.topP < 1 {
            // Keep the smallest head whose mass reaches top-p (always at least one token), as transformers does.
            var mass = 0.0, keep = 0
            while keep < probabilities.count { mass += probabilities[keep]; keep += 1; if mass >= Double(options.topP) { break } }
            candidates = Array(candidates.prefix(keep))
            let kept = probabilities.prefix(keep).reduce(0, +)
            probabilities = probabilities.prefix(keep).map { $0 / kept }
        }
        let draw = Double(random.nextUnitFloat())
        var cumulative = 0.0
        for (i, p) in probabilities.enumerated() {
            cumulative += p
            if draw < cumulative { return candidates[i] }
        }
        return candidates[candidates.count - 1]
    }

    /// A draw from the softmax of every logit, in vocabulary order: no candidate list to sort when nothing is cut
    /// (RL rollouts sample this way, a token at a time for every row).
    mutating func drawFromAll(_ logits: UnsafeMutablePointer<Float>, count n: Int) -> Int {
        var maximum = -Float.infinity
        for i in 0..<n { maximum = max(maximum, logits[i]) }
        var total = 0.0
        for i in 0..<n { total += Double(exp(logits[i] - maximum)) }
        let draw = Double(random.nextUnitFloat()) * total
        var cumulative = 0.0
        for i in 0..<n {
            cumulative += Double(exp(logits[i] - maximum))
            if draw < cumulative { return i }
        }
        return Self.argmax(logits, count: n)
    }

    /// The first index of the largest value.
    public static func argmax(_ values: UnsafePointer<Float>, count: Int) -> Int {
        var best = 0
        for i in 1..<count where values[i] > values[best] { best = i }
        return best
    }

    static func kthLargest(_ values: UnsafePointer<Float>, count: Int, k: Int) -> Float {
        var sorted = Array(UnsafeBufferPointer(start: values, count: count))
        sorted.sort(by: >)
        return sorted[k - 1]
    }
}
