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

/// Decodes continuations of a batch of prompts on a `BatchDecoder` with one slot per prompt, the model's adapters as
/// they are switched now (at most one). Deterministic for a given seed.
public struct TokenGenerator {
    public let model: DecoderModel
    public var stopTokenIDs: Set<Int>

    public init(model: DecoderModel, stopTokenIDs: Set<Int>) {
        self.model = model
        self.stopTokenIDs = stopTokenIDs
    }

    /// Generates up to `maxTokens` tokens after each prompt; a row ends at a stop token (not included in the
    /// result). Row r draws from its own stream, seeded `sampling.seed + r`.
    public func generate(prompts: [[Int]], maxTokens: Int, sampling: SamplingOptions) throws -> [[Int]] {
        try decode(prompts: prompts, maxTokens: maxTokens, sampling: sampling, keepsLogProbabilities: false)
            .map { $0.stopped ? Array($0.completion.dropLast()) : $0.completion }
    }

    /// `sequencesPerPrompt` samples of each prompt, in one batch: `result[p · sequencesPerPrompt + k]` is prompt p's
    /// k-th. Row r draws from its own stream, seeded `sampling.seed + r`, so a seed gives the same rollouts.
    public func sample(prompts: [[Int]], sequencesPerPrompt: Int, maxTokens: Int, sampling: SamplingOptions) throws -> [Rollout] {
        guard sequencesPerPrompt >= 1 else {
            throw ModelError.invalidInput("sequences per prompt must be at least 1, got \(sequencesPerPrompt)")
        }
        let rows = prompts.flatMap { Array(repeating: $0, count: sequencesPerPrompt) }
        return try decode(prompts: rows, maxTokens: maxTokens, sampling: sampling, keepsLogProbabilities: true)
    }

    private func decode(prompts: [[Int]], maxTokens: Int, sampling: SamplingOptions, keepsLogProbabilities: Bool) throws -> [Rollout] {
        try sampling.validate()
        guard prompts.allSatisfy({ !$0.isEmpty }) else { throw ModelError.invalidInput("a prompt has no tokens") }
        var rollouts = prompts.map { Rollout(prompt: $0, completion: [], logProbabilities: [], stopped: false) }
        guard maxTokens > 0, !prompts.isEmpty else { return rollouts }
        let adapter = try model.switchedOnAdapter()
        let requests = prompts.indices.map { row in
            var options = sampling
            options.seed = sampling.seed &+ UInt64(row)
            var request = DecodeRequest(prompt: prompts[row], maxTokens: maxTokens, sampling: options, adapter: adapter)
            request.keepsSamplingLogprob = keepsLogProbabilities
            return request
        }
        let decoder = BatchDecoder(model: model, tokenizer: nil, stopTokenIDs: stopTokenIDs, slots: prompts.count,
                                   contextPerSlot: prompts.map(\.count).max()! + maxTokens)
        try decoder.decodeAll(requests) { row, event in
            switch event {
            case .token(let token):
                rollouts[row].completion.append(token.id)
                // log softmax(logits / temperature) after the penalty: the distribution the token was drawn from.
                if let logprob = token.samplingLogprob { rollouts[row].logProbabilities.append(logprob) }
            case .finished(let reason, _, _):
                rollouts[row].stopped = reason == .stop
            case .failed: break  // decodeAll throws first
            }
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
