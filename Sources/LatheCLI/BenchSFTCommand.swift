import ArgumentParser
import Foundation
import LatheData
import LatheModels
import LatheTensors
import LatheTraining
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `lathe bench sft`: training speed and peak memory on random tokens, the shape of a real LoRA (or full) SFT step.
public struct BenchSFTCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "sft", abstract: "Tokens/s and peak memory of fine-tuning steps on random tokens (one JSON line).")
    @OptionGroup public var model: ModelOptions
    @Option(name: .customLong("batch-size")) public var batchSize = 4
    @Option(name: .customLong("seq-len")) public var seqLen = 128
    @Option(help: "Timed optimizer steps (after one warm-up step).") public var steps = 5
    @Flag(help: "Train every weight instead of LoRA.") public var full = false
    @Option(help: "Quantize the frozen base (nf4).") public var quantize: String?
    @Option(name: .customLong("lora-rank")) public var loraRank = 8
    @Flag(name: .customLong("gradient-checkpointing")) public var gradientCheckpointing = false
    public init() {}

    struct Result: Encodable {
        let tokens_per_s: Double, peak_rss_mib: Double
        let method: String, batch_size: Int, seq_len: Int, steps: Int, threads: Int, backend: String, seconds: Double
    }

    public func validate() throws {
        if let quantize { throw ValidationError("--quantize \(quantize) is not implemented yet (QLoRA is a later milestone)") }
        guard batchSize > 0, seqLen > 1, steps > 0 else { throw ValidationError("--batch-size, --seq-len and --steps must be positive") }
    }

    public func run() throws {
        let lm = try model.load()
        let llama = lm.model
        let trainable: [Parameter]
        if full {
            for p in llama.parameters { p.trainable = true }
            trainable = llama.parameters
        } else {
            trainable = try llama.attachLoRA(LoRAConfiguration(rank: loraRank, alpha: Float(2 * loraRank), targets: ["all-linear"]),
                                             seed: 1).flatMap(\.parameters)
        }
        let optimizer = try OptimizerConfiguration(kind: .adamw).make()
        var random = SeededGenerator(seed: 7)
        let rows = (0..<batchSize).map { _ in (0..<seqLen).map { _ in Int(random.next() % UInt64(llama.config.vocabularySize)) } }
        let targets = rows.map { Array($0.dropFirst()) + [-1] }
        let batch = Batch(rows: rows, targets: targets)
        let activations = TrainingActivations(config: llama.config, batchSize: batchSize, length: seqLen,
                                              checkpointing: gradientCheckpointing)
        var seconds = 0.0
        for step in 0...steps {  // step 0 warms up
            let start = DispatchTime.now().uptimeNanoseconds
            for p in trainable { p.zeroGradient() }
            _ = try languageModelLoss(llama, batch: batch, activations: activations, scale: 1 / Float(batch.tokenCount))
            _ = clipGradientNorm(trainable, maxNorm: 1)
            try optimizer.step(trainable, learningRate: 1e-4)
            if step > 0 { seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        }
        var usage = rusage()
        #if os(Linux)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let peakMiB = Double(usage.ru_maxrss) / 1024  // kilobytes on Linux
        #else
        getrusage(RUSAGE_SELF, &usage)
        let peakMiB = Double(usage.ru_maxrss) / 1_048_576  // bytes on macOS
        #endif
        printLine(try jsonLine(Result(tokens_per_s: Double(batchSize * seqLen * steps) / seconds, peak_rss_mib: peakMiB,
                                      method: full ? "full" : "lora", batch_size: batchSize, seq_len: seqLen, steps: steps,
                                      threads: model.threads, backend: MatMul.backend.name, seconds: seconds)))
    }
}
