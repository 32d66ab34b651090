import ArgumentParser
import Foundation
import LatheModels
import LatheTensors
import LatheTraining
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `lathe bench`: speed measurements, printed as one JSON line.
public struct BenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure speed.", subcommands: [BenchGenerateCommand.self, BenchSFTCommand.self, BenchKernelsCommand.self])
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
        /// `threads` is the count `threads_setting` (auto or a number) resolved to.
        let prompt_tokens: Int, new_tokens: Int, threads: Int, threads_setting: String, backend: String, weights: String
        let bf16_products: String
        let prompt_tokens_per_s: Double, generate_tokens_per_s: Double, peak_rss_mib: Double
        /// Matrix-product work per second of prompt processing and of decoding, and the backend's rate on the
        /// model's MLP shape for the prompt's rows: decoding is bound by reading the weights, not by arithmetic.
        let prompt_gflops: Double, generate_gflops: Double, matmul_peak_gflops: Double
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
        let c = llama.config
        let promptFLOPs = ForwardFLOPs(c, rows: promptTokens, headRows: 1, attendedPairs: promptTokens * promptTokens / 2).total
        // Each decoded token attends to the prompt and to the tokens before it: on average the middle of the run.
        let decodeFLOPs = ForwardFLOPs(c, rows: 1, headRows: 1, attendedPairs: promptTokens + newTokens / 2).total
        printLine(try jsonLine(Result(prompt_tokens: promptTokens, new_tokens: newTokens, threads: model.threads.resolvedCount,
                                      threads_setting: model.threads.description,
                                      backend: MatMul.backend.name, weights: llama.compactWeightSummary?.format ?? "f32",
                                      bf16_products: BF16Products.current.description,
                                      prompt_tokens_per_s: median(prefill), generate_tokens_per_s: median(decode),
                                      peak_rss_mib: peakResidentMebibytes(),
                                      prompt_gflops: promptFLOPs * median(prefill) / Double(promptTokens) / 1e9,
                                      generate_gflops: decodeFLOPs * median(decode) / 1e9,
                                      matmul_peak_gflops: try MatMulRate.measure(
                                        rows: promptTokens, c, format: WeightFormat(rawValue: llama.compactWeightSummary?.format ?? "") ?? .float32) / 1e9)))
    }
}

/// Multiply-adds ×2 of a forward pass over `rows` tokens: the block linears, the LM head over `headRows` rows, and
/// attention's two products (QKᵀ and PV) over `attendedPairs` query–key pairs.
struct ForwardFLOPs {
    let linear: Double, head: Double, attention: Double
    var total: Double { linear + head + attention }

    init(_ c: DecoderConfiguration, rows: Int, headRows: Int, attendedPairs: Int) {
        let blockLinearWeights = c.parameterCount - c.vocabularySize * c.hiddenSize * (c.tieWordEmbeddings ? 1 : 2)
            - c.layerCount * 2 * c.hiddenSize - c.hiddenSize
        linear = 2 * Double(rows) * Double(blockLinearWeights)
        head = 2 * Double(headRows) * Double(c.vocabularySize * c.hiddenSize)
        attention = 2 * 2 * Double(c.layerCount * c.headCount * c.headDim) * Double(attendedPairs)
    }
}

/// The process's peak resident memory so far, in MiB.
func peakResidentMebibytes() -> Double {
    var usage = rusage()
    #if os(Linux)
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024  // kilobytes on Linux
    #else
    getrusage(RUSAGE_SELF, &usage)
    return Double(usage.ru_maxrss) / 1_048_576  // bytes on macOS
    #endif
}
