import LatheTensors

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
        try sampling.validate()
        guard !prompts.isEmpty else { return [] }
        guard prompts.allSatisfy({ !$0.isEmpty }) else { throw ModelError.invalidInput("a prompt has no tokens") }
        guard maxTokens > 0 else { return prompts.map { _ in [] } }
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
        var outputs = Array(repeating: [Int](), count: batch)
        var finished = Array(repeating: false, count: batch)
        var logits = try model.forward(tokens: tokens, batchSize: batch, positions: positions, valid: valid,
                                       cache: cache, logits: .last)
        let vocabulary = model.config.vocabularySize
        for _ in 0..<maxTokens {
            var step: [Int] = []
            for row in 0..<batch {
                let token = samplers[row].sample(logits.pointer + row * vocabulary, vocabularySize: vocabulary,
                                                 history: prompts[row] + outputs[row])
                step.append(token)
                if finished[row] { continue }
                if stopTokenIDs.contains(token) { finished[row] = true; continue }
                outputs[row].append(token)
                onToken(row, token)
                if shouldStop(row, outputs[row]) { finished[row] = true }
            }
            if finished.allSatisfy({ $0 }) || cache.remaining == 0 { break }
            logits = try model.forward(tokens: step, batchSize: batch, positions: nextPositions, cache: cache, logits: .last)
            nextPositions = nextPositions.map { $0 + 1 }
        }
        return outputs
    }
}
