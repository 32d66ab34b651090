import ArgumentParser
import Foundation
import LatheModels
import LatheTensors

/// `lathe bench`: speed measurements, printed as one JSON line.
public struct BenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure speed.", subcommands: [BenchGenerateCommand.self, BenchSFTCommand.self])
    public init() {}
}

/// `lathe bench generate`: prompt processing and KV-cache decoding speed on random tokens.
public struct BenchGenerateCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Tokens/s of prompt processing and of decoding with the KV cache.")
    @OptionGroup public var model: ModelOptions
    @Option(name: .customLong("prompt-tokens"), help: "Prompt length.") public var promptTokens = 512
    @Option(name: .customLong("new-tokens"), help: "Tokens decoded after the prompt.") public var newTokens = 128
    @Option(help: "Timed repetitions; the median is reported.") public var repeats = 3
    public init() {}

    struct Result: Encodable {
        let prompt_tokens: Int, new_tokens: Int, threads: Int, backend: String
        let prompt_tokens_per_s: Double, generate_tokens_per_s: Double
    }

    public func run() throws {
        let lm = try model.load()
        let llama = lm.model
        var random = SeededGenerator(seed: 7)
        let prompt = (0..<promptTokens).map { _ in Int(random.next() % UInt64(llama.config.vocabularySize)) }
        var prefill: [Double] = [], decode: [Double] = []
        for round in 0...repeats {  // round 0 warms up
            let cache = KVCache(config: llama.config, batchSize: 1, capacity: promptTokens + newTokens)
            var start = DispatchTime.now().uptimeNanoseconds
            var logits = try llama.forward(tokens: prompt, cache: cache, logits: .last)
            let prefillSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<newTokens {
                let next = TokenSampler.argmax(logits.pointer, count: llama.config.vocabularySize)
                logits = try llama.forward(tokens: [next], cache: cache, logits: .last)
            }
            let decodeSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if round > 0 { prefill.append(Double(promptTokens) / prefillSeconds); decode.append(Double(newTokens) / decodeSeconds) }
        }
        func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
        printLine(try jsonLine(Result(prompt_tokens: promptTokens, new_tokens: newTokens, threads: model.threads,
                                      backend: MatMul.backend.name, prompt_tokens_per_s: median(prefill),
                                      generate_tokens_per_s: median(decode))))
    }
}
