import ArgumentParser
import Foundation
import LatheData
import LatheModels
import LatheTensors
import LatheTraining

/// `lathe bench sft`: training speed and peak memory on random tokens, the shape of a real LoRA (or full) SFT step.
public struct BenchSFTCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "sft", abstract: "Tokens/s and peak memory of fine-tuning steps on random tokens (one JSON line).")
    @OptionGroup public var model: ModelOptions
    @Option(name: .customLong("batch-size")) public var batchSize = 4
    @Option(name: .customLong("seq-len")) public var seqLen = 128
    @Option(help: "Timed optimizer steps (after one warm-up step).") public var steps = 5
    @Flag(help: "Train every weight instead of LoRA.") public var full = false
    @Option(name: .customLong("lora-rank")) public var loraRank = 8
    @Option(help: "Optimizer: adamw, adamw8bit or sgd.") public var optimizer = OptimizerKind.adamw
    @Flag(name: .customLong("gradient-checkpointing")) public var gradientCheckpointing = false
    @Option(help: "A preference objective's step instead (dpo, orpo, simpo, kto): --batch-size pairs of --seq-len-token rows sharing a prompt of half that; DPO and KTO score the reference (adapter off) too.")
    public var objective: PreferenceMethod?
    public init() {}

    var use: WeightUse { full ? .masterWeights : .frozenBase }

    struct Result: Encodable {
        let tokens_per_s: Double, peak_rss_mib: Double
        let method: String, objective: String, weights: String, optimizer: String, batch_size: Int, seq_len: Int, steps: Int, threads: Int, backend: String, seconds: Double
        /// The CPU's bf16 products (`BF16Products`), which `--dtype auto` is decided from.
        let bf16_products: String
        /// auto or a number: what `threads` was resolved from.
        let threads_setting: String
        /// Matrix-product work per second over the whole step, and the backend's rate on one of the model's own
        /// shapes measured just before: how much of the machine the step uses.
        let achieved_gflops: Double, matmul_peak_gflops: Double
        /// `lathe plan`'s estimate for the same flags, and the most bytes live tensors held at once (load included).
        let planned_mib: Double, peak_tensor_mib: Double
    }

    /// Multiply-adds ×2 of one step's matrix products: the forward pass, the input gradients, and (full
    /// fine-tuning) the weight gradients; attention counted causally (half the square).
    static func stepFLOPs(_ c: DecoderConfiguration, batchSize: Int, length: Int, full: Bool, loraRank: Int) -> Double {
        let tokens = Double(batchSize * length)
        let forward = ForwardFLOPs(c, rows: batchSize * length, headRows: batchSize * length,
                                   attendedPairs: batchSize * length * length / 2)
        let lora = full ? 0 : 2 * tokens * Double(c.layerCount * loraRank * 7 * (c.hiddenSize + c.intermediateSize)) * 3
        // Backward: input gradients repeat the forward's products (attention twice: scores are recomputed); full
        // fine-tuning adds the weight gradients.
        return 2 * forward.total + forward.attention + (full ? forward.linear + forward.head : 0) + lora
    }

    public func validate() throws {
        do { _ = try model.weightFormat(for: use) } catch { throw ValidationError("\(error)") }
        guard batchSize > 0, seqLen > 1, steps > 0 else { throw ValidationError("--batch-size, --seq-len and --steps must be positive") }
    }

    public func run() throws {
        let lm = try model.load(for: use)
        let llama = lm.model
        let trainable: [Parameter]
        // Full fine-tuning in bf16 multiplies by bf16 copies of the float32 master weights, re-rounded every step.
        let compactCopies = full ? try model.weightFormat(for: .masterWeights) : .float32
        if full {
            for p in llama.parameters { p.trainable = true }
            trainable = llama.parameters
        } else {
            trainable = try llama.attachLoRA(LoRAConfiguration(rank: loraRank, alpha: Float(2 * loraRank), targets: ["all-linear"]),
                                             seed: 1).flatMap(\.parameters)
        }
        let optimizer = try OptimizerConfiguration(kind: self.optimizer).make()
        var random = SeededGenerator(seed: 7)
        let rows = (0..<batchSize).map { _ in (0..<seqLen).map { _ in Int(random.next() % UInt64(llama.config.vocabularySize)) } }
        let targets = rows.map { Array($0.dropFirst()) + [-1] }
        let batch = Batch(rows: rows, targets: targets)
        // A preference batch: rows of the same length, each pair's second completion drawn afresh after the prompt.
        let preference = try objective.map { method in
            let items = rows.map { row in
                PreferenceItem(prompt: Array(row.prefix(seqLen / 2)), completions: method.isUnpaired ? [Array(row.dropFirst(seqLen / 2))]
                                : [Array(row.dropFirst(seqLen / 2)), (seqLen / 2..<seqLen).map { _ in Int(random.next() % UInt64(llama.config.vocabularySize)) }],
                               label: method.isUnpaired ? true : nil, mismatched: method.isUnpaired ? Array(row.dropFirst(seqLen / 2)) : nil,
                               source: "bench")
            }
            let objective = PreferenceObjective(method: method, options: PreferenceOptions())
            let batch = try PreferenceBatchBuilder(batchSize: batchSize, paddingID: 0, scoresPrompt: objective.scoresPrompt)
                .batch(items.map { [$0] })
            return (objective, batch)
        }
        let sequences = batchSize * (objective?.sequencesPerItem ?? 1)
        let activations = TrainingActivations(config: llama.config, batchSize: sequences, length: seqLen,
                                              checkpointing: gradientCheckpointing)
        let scorer = PreferenceScorer(model: llama, reference: .adaptersOff)
        var seconds = 0.0
        for step in 0...steps {  // step 0 warms up
            let start = DispatchTime.now().uptimeNanoseconds
            if compactCopies != .float32 { try llama.keepCompactCopies(compactCopies) }
            for p in trainable { p.zeroGradient() }
            if let (objective, batch) = preference {
                _ = try scorer.lossAndGradient(objective, batch, scale: 1, activations: activations)
            } else {
                _ = try languageModelLoss(llama, batch: batch, activations: activations, scale: 1 / Float(batch.tokenCount))
            }
            _ = clipGradientNorm(trainable, maxNorm: 1)
            try optimizer.step(trainable, learningRate: 1e-4)
            if step > 0 { seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        }
        let peakMiB = peakResidentMebibytes()
        let peakTensorMiB = Double(TensorMemory.peakBytes) / 1_048_576  // before matmulRate's own tensors
        // The plan of these flags: a compact base gives its own bytes per value (bf16 2, NF4 ≈ 0.516).
        let compact = llama.compactWeightSummary
        let plan = MemoryPlan(config: llama.config, method: full ? .full : compact?.format == WeightFormat.nf4.rawValue ? .qlora : .lora,
                              batchSize: sequences, length: seqLen,
                              lora: LoRAConfiguration(rank: loraRank, alpha: Float(2 * loraRank), targets: ["all-linear"]),
                              gradientCheckpointing: gradientCheckpointing,
                              optimizer: MemoryPlan.OptimizerMemory(rawValue: self.optimizer.rawValue) ?? .adamw,
                              baseBytesPerValue: compact.map { Double($0.bytes) / Double(max($0.parameters, 1)) },
                              runtime: try RuntimeBaseline.estimate(for: lm.files, config: llama.config))
        // The product work of the training pass (the reference's forward pass is not counted).
        let flops = Self.stepFLOPs(llama.config, batchSize: sequences, length: seqLen, full: full, loraRank: loraRank)
        printLine(try jsonLine(Result(tokens_per_s: Double(sequences * seqLen * steps) / seconds, peak_rss_mib: peakMiB,
                                      method: plan.method.rawValue, objective: objective?.rawValue ?? "sft",
                                      weights: compact?.format ?? WeightFormat.float32.rawValue, optimizer: self.optimizer.rawValue, batch_size: batchSize, seq_len: seqLen, steps: steps,
                                      threads: model.threads.resolvedCount, backend: MatMul.backend.name, seconds: seconds,
                                      bf16_products: BF16Products.current.description,
                                      threads_setting: model.threads.description,
                                      achieved_gflops: flops * Double(steps) / seconds / 1e9,
                                      matmul_peak_gflops: try MatMulRate.measure(rows: sequences * seqLen, llama.config,
                                                                              format: WeightFormat(rawValue: compact?.format ?? "") ?? .float32) / 1e9,
                                      planned_mib: Double(plan.totalBytes) / 1_048_576,
                                      peak_tensor_mib: peakTensorMiB)))
    }
}

extension OptimizerKind: ExpressibleByArgument {}
extension PreferenceMethod: ExpressibleByArgument {}
