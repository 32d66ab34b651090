import Foundation
import LatheTensors

/// One sampled continuation, with what an RL update needs of it.
public struct Rollout: Sendable, Equatable {
    /// The prompt's tokens.
    public var prompt: [Int]
    /// The sampled tokens, including the stop token when the row ended on one.
    public var completion: [Int]
    /// Per completion token: log softmax(logits / temperature) of the token drawn (greedy: temperature 1), over the
    /// whole vocabulary, as TRL scores rollouts (top-k and top-p only narrow what the draw picked from).
    public var logProbabilities: [Float]
    /// Whether the row ended on a stop token (otherwise it ran out of tokens).
    public var stopped: Bool

    public init(prompt: [Int], completion: [Int], logProbabilities: [Float], stopped: Bool) {
        self.prompt = prompt; self.completion = completion; self.logProbabilities = logProbabilities; self.stopped = stopped
    }
}

/// Decodes continuations of a batch of prompts with a KV cache: one prefill of the left-padded prompts, then one
/// token per row per step. Deterministic for a given seed.
public struct TokenGenerator {
    public let model: LlamaModel
    public var stopTokenIDs: Set<Int>

    public init(model: LlamaModel, stopTokenIDs: Set<Int>) {
        self.model = model
        self.stopTokenIDs = stopTokenIDs
    }

    /// Generates up to `maxTokens` tokens after each prompt; a row ends at a stop token (not included in the
    /// result) or when `shouldStop(row, tokensSoFar)` says so.
    /// - Parameter onToken: called with (row, token) as each token is chosen, for streaming.
    public func generate(prompts: [[Int]], maxTokens: Int, sampling: SamplingOptions,
                         onToken: (Int, Int) -> Void = { _, _ in },
                         shouldStop: (Int, [Int]) -> Bool = { _, _ in false }) throws -> [[Int]] {
        try decode(prompts: prompts, maxTokens: maxTokens, sampling: sampling, keepsLogProbabilities: false,
                   onToken: onToken, shouldStop: shouldStop).map { $0.stopped ? Array($0.completion.dropLast()) : $0.completion }
    }

    /// `sequencesPerPrompt` samples of each prompt, in one batch: `result[p · sequencesPerPrompt + k]` is prompt p's
    /// k-th. Row r draws from its own stream, seeded `sampling.seed + r`, so a seed gives the same rollouts.
    public func sample(prompts: [[Int]], sequencesPerPrompt: Int, maxTokens: Int, sampling: SamplingOptions) throws -> [Rollout] {
        guard sequencesPerPrompt >= 1 else {
            throw ModelError.invalidInput("sequences per prompt must be at least 1, got \(sequencesPerPrompt)")
        }
        let rows = prompts.flatMap { Array(repeating: $0, count: sequencesPerPrompt) }
        return try decode(prompts: rows, maxTokens: maxTokens, sampling: sampling, keepsLogProbabilities: true,
                          onToken: { _, _ in }, shouldStop: { _, _ in false })
    }

    private func decode(prompts: [[Int]], maxTokens: Int, sampling: SamplingOptions, keepsLogProbabilities: Bool,
                        onToken: (Int, Int) -> Void, shouldStop: (Int, [Int]) -> Bool) throws -> [Rollout] {
        try sampling.validate()
        guard !prompts.isEmpty else { return [] }
        guard prompts.allSatisfy({ !$0.isEmpty }) else { throw ModelError.invalidInput("a prompt has no tokens") }
        var rollouts = prompts.map { Rollout(prompt: $0, completion: [], logProbabilities: [], stopped: false) }
        guard maxTokens > 0 else { return rollouts }
        let batch = prompts.count
        let width = prompts.map(\.count).max()!
        let cache = KVCache(config: model.config, batchSize: batch, capacity: width + maxTokens)

        // Left padding keeps every row's last prompt token in the same column; positions count real tokens only.
        var tokens: [Int] = [], valid: [Bool] = [], positions: [Int] = []
        for prompt in prompts {
            let pad = width - prompt.count
            tokens += Array(repeating: prompt[0], count: pad) + prompt
            valid += Array(repeating: false, count: pad) + Array(repeating: true, count: prompt.count)
            positions += Array(repeating: 0, count: pad) + Array(0..<prompt.count)
        }
        var nextPositions = prompts.map(\.count)
        var samplers = (0..<batch).map { row in
            TokenSampler(options: SamplingOptions(temperature: sampling.temperature, topK: sampling.topK, topP: sampling.topP,
                                                  repetitionPenalty: sampling.repetitionPenalty,
                                                  seed: sampling.seed &+ UInt64(row)))
        }
        var finished = Array(repeating: false, count: batch)
        var logits = try model.forward(tokens: tokens, batchSize: batch, positions: positions, valid: valid,
                                       cache: cache, logits: .last)
        let vocabulary = model.config.vocabularySize
        for _ in 0..<maxTokens {
            var step: [Int] = []
            for row in 0..<batch {
                let rowLogits = logits.pointer + row * vocabulary
                let token = samplers[row].sample(rowLogits, vocabularySize: vocabulary,
                                                 history: prompts[row] + rollouts[row].completion)
                step.append(token)
                if finished[row] { continue }
                rollouts[row].completion.append(token)
                if keepsLogProbabilities {
                    // The sampler left the row divided by the temperature: its log-softmax is the sampling distribution.
                    rollouts[row].logProbabilities.append(rowLogits[token] - logSumExp(rowLogits, count: vocabulary))
                }
                if stopTokenIDs.contains(token) { finished[row] = true; rollouts[row].stopped = true; continue }
                onToken(row, token)
                if shouldStop(row, rollouts[row].completion) { finished[row] = true }
            }
            if finished.allSatisfy({ $0 }) || cache.remaining == 0 { break }
            logits = try model.forward(tokens: step, batchSize: batch, positions: nextPositions, cache: cache, logits: .last)
            nextPositions = nextPositions.map { $0 + 1 }
        }
        return rollouts
    }
}

/// log Σ exp(values), shifted by the maximum so that it cannot overflow.
func logSumExp(_ values: UnsafePointer<Float>, count: Int) -> Float {
    var maximum = -Float.infinity
    for i in 0..<count { maximum = max(maximum, values[i]) }
    var sum = 0.0
    for i in 0..<count { sum += Double(exp(values[i] - maximum)) }
    return maximum + Float(log(sum))
}
