import ArgumentParser
import Foundation
import LatheModels
import LatheTraining

/// What `lathe plan --method` plans: SFT's full, lora or qlora, or a preference objective or a reward model on a
/// LoRA base (`--quantize nf4`: QLoRA's), whose micro-batch holds `--batch` pairs (two rows each) or KTO rows; or
/// GRPO's and PPO's rollouts and updates.
enum PlanMethod: String, CaseIterable, ExpressibleByArgument {
    case full, lora, qlora, dpo, orpo, simpo, kto, reward, grpo, ppo

    var preference: PreferenceMethod? { PreferenceMethod(rawValue: rawValue) }
}
extension MemoryPlan.OptimizerMemory: ExpressibleByArgument {}

/// `lathe plan`: the memory a fine-tuning run will need, term by term, from the model's configuration alone
/// (no weights are loaded). The flags are `lathe bench sft`'s, whose measured peak the plan should match.
public struct PlanCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "plan", abstract: "The memory a fine-tuning run will need: weights, gradients, optimizer state, activations, workspace.")

    @Option(name: .long, help: "A .gguf file, a Hugging Face model folder, or a known model name (smollm2-135m).")
    public var model: String = ModelLocator.defaultModelName
    @Option(help: "full, lora, qlora (LoRA on an NF4 base), or dpo, orpo, simpo, kto, reward, grpo, ppo (LoRA; with --quantize nf4 on an NF4 base).")
    var method: PlanMethod = .lora
    @Option(help: "dpo, orpo, simpo, kto: nf4 plans QLoRA's base.") public var quantize: String?
    @Option(name: [.customLong("batch"), .customLong("batch-size")], help: "Rows per micro-batch; grpo: completions per micro-batch; ppo: prompts per rollout batch.")
    public var batch = 4
    @Option(name: [.customLong("seq"), .customLong("seq-len")], help: "Tokens per row (grpo and ppo: the prompt and what is sampled).")
    public var seq = 128
    @Option(name: .customLong("grad-accum"), help: "grpo: micro-batches per step (the step samples batch × grad-accum completions).")
    public var gradAccum = 1
    @Option(name: .customLong("prompt-length"), help: "grpo, ppo: tokens of the longest prompt.") public var promptLength: Int?
    @Option(name: .customLong("completion-length"), help: "grpo: max_completion_length.") public var completionLength = 64
    @Option(help: "grpo: the KL weight; above 0 a reference pass runs over each micro-batch.") public var beta = 0.0
    @Option(name: .customLong("response-length"), help: "ppo: response_length.") public var responseLength = 53
    @Option(name: .customLong("mini-batches"), help: "ppo: num_mini_batches (the update holds batch / mini-batches rows).")
    public var miniBatches = 1
    @Option(name: .customLong("forward-batch"), help: "ppo: local_rollout_forward_batch_size.") public var forwardBatch = 64
    @Flag(name: .customLong("from-adapter"), help: "grpo, ppo: training starts from an SFT adapter (--adapter), whose frozen copy is the reference.")
    public var fromAdapter = false
    @Option(name: .customLong("reward-lora-rank"), help: "ppo: the reward model adapter's rank.") public var rewardLoraRank = 8
    @Option(name: .customLong("reward-lora-targets"), help: "ppo: the reward model adapter's modules, or all-linear.")
    public var rewardLoraTargets = "all-linear"
    @Option(name: .customLong("lora-rank")) public var loraRank = 8
    @Option(name: .customLong("lora-targets"), help: "Comma-separated module names, or all-linear.")
    public var loraTargets = "all-linear"
    @Option(name: .customLong("lora-dropout")) public var loraDropout: Float = 0
    @Option(help: "As for bench sft: auto (bf16 where the CPU has AMX or AVX512-BF16), f32 or bf16 — the frozen base of --method lora, the copies full fine-tuning multiplies by. QLoRA's base is NF4. With --serve, as lathe serve loads them: auto keeps a GGUF's quantized blocks.")
    public var dtype = "auto"
    @Flag(name: .customLong("gradient-checkpointing")) public var gradientCheckpointing = false
    @Option(help: "adamw, adamw8bit, sgd, or sgd-momentum.") public var optimizer: MemoryPlan.OptimizerMemory = .adamw
    @Flag(help: "Print one JSON object (MiB) instead of the table.") public var json = false
    @Flag(help: "Plan `lathe serve` (and `lathe generate --input`) instead of training: --max-concurrency slots of --context tokens, --adapters LoRA adapters of --lora-rank on --lora-targets, weights as --dtype loads them for inference.")
    public var serve = false
    @Option(name: .customLong("max-concurrency"), help: "--serve: decoding slots, as lathe serve's flag.") public var maxConcurrency = 8
    @Option(help: "--serve: tokens of context per slot, as lathe serve's flag.") public var context = 2048
    @Option(help: "--serve: LoRA adapters loaded beside the base.") public var adapters = 0
    public init() {}

    public func validate() throws {
        if serve {
            guard maxConcurrency > 0, context > 0, adapters >= 0 else {
                throw ValidationError("--max-concurrency and --context must be positive, --adapters at least 0")
            }
            do { _ = try servingFormat() } catch { throw ValidationError("\(error)") }
            if adapters > 0 { do { try loraConfiguration.validate() } catch { throw ValidationError("\(error)") } }
            return
        }
        do { _ = try baseFormat() } catch { throw ValidationError("\(error)") }
        guard batch > 0, seq > 0 else { throw ValidationError("--batch and --seq must be positive") }
        if quantize != nil, quantize != WeightFormat.nf4.rawValue { throw ValidationError("--quantize: only nf4") }
        if method != .full {
            do { try loraConfiguration.validate() } catch { throw ValidationError("\(error)") }
        }
        if method == .grpo || method == .ppo {
            guard let promptLength, promptLength > 0 else { throw ValidationError("--method \(method): give --prompt-length (tokens of the longest prompt)") }
            guard gradAccum > 0, completionLength > 0, responseLength > 0, forwardBatch > 0, miniBatches > 0 else {
                throw ValidationError("--grad-accum, --completion-length, --response-length, --forward-batch and --mini-batches must be positive")
            }
            if method == .ppo, batch % miniBatches != 0 { throw ValidationError("--batch must be a multiple of --mini-batches") }
        }
    }

    var loraConfiguration: LoRAConfiguration { Self.lora(rank: loraRank, targets: loraTargets, dropout: loraDropout) }

    static func lora(rank: Int, targets: String, dropout: Float = 0) -> LoRAConfiguration {
        LoRAConfiguration(rank: rank, alpha: Float(2 * rank), dropout: dropout,
                          targets: targets.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
    }

    /// GRPO's and PPO's passes besides the update, and the update's rows and length.
    var rollouts: (plan: MemoryPlan.Rollouts, rows: Int, length: Int)? {
        guard let promptLength else { return nil }
        switch method {
        case .grpo:
            return (MemoryPlan.Rollouts(stage: .grpo, sequences: batch * gradAccum, promptLength: promptLength, newTokens: completionLength,
                                        scoringRows: beta > 0 ? batch : 0, startsFromAdapter: fromAdapter),
                    batch, promptLength + completionLength)
        case .ppo:
            return (MemoryPlan.Rollouts(stage: .ppo, sequences: batch, promptLength: promptLength, newTokens: responseLength,
                                        scoringRows: min(forwardBatch, batch), startsFromAdapter: fromAdapter,
                                        rewardModel: Self.lora(rank: rewardLoraRank, targets: rewardLoraTargets)),
                    batch / miniBatches, promptLength + responseLength)
        default: return nil
        }
    }

    /// What trains: every weight, or adapters on a float or NF4 base.
    var memoryMethod: MemoryPlan.Method {
        switch method {
        case .full: return .full
        case .qlora: return .qlora
        case .lora: return .lora
        case .dpo, .orpo, .simpo, .kto, .reward, .grpo, .ppo: return quantize == WeightFormat.nf4.rawValue ? .qlora : .lora
        }
    }

    /// Rows of `--seq` tokens per micro-batch: pairs have two.
    var sequences: Int { method == .reward ? 2 * batch : batch * (method.preference?.sequencesPerItem ?? 1) }

    /// How the products see the weights, chosen as `--dtype` and `--quantize` choose it for the commands that train.
    func baseFormat() throws -> WeightFormat {
        try WeightFormat.choose(dtype: dtype, quantize: memoryMethod == .qlora ? WeightFormat.nf4.rawValue : nil,
                                use: memoryMethod == .full ? .masterWeights : .frozenBase)
    }

    /// The plan these flags describe for a model of `config`.
    func plan(config: DecoderConfiguration, runtime: RuntimeBaseline) throws -> MemoryPlan {
        let rollouts = self.rollouts
        return MemoryPlan(config: config, method: memoryMethod, batchSize: rollouts?.rows ?? sequences, length: rollouts?.length ?? seq,
                          lora: loraConfiguration, gradientCheckpointing: gradientCheckpointing, optimizer: optimizer,
                          baseBytesPerValue: try baseFormat().bitsPerValue / 8, runtime: runtime,
                          head: method == .reward ? .score : .languageModel, rollouts: rollouts?.plan)
    }

    struct Output: Encodable {
        let model: String, method: String, base: String, batch: Int, seq: Int, optimizer: String, gradient_checkpointing: Bool
        let weights_mib: Double, gradients_mib: Double, optimizer_mib: Double, activations_mib: Double
        let workspace_mib: Double, runtime_mib: Double, loading_mib: Double, total_mib: Double
        /// grpo, ppo: the rollouts' passes with what the update leaves (they replace activations + workspace when larger).
        let rollouts_mib: Double?
    }

    /// How `lathe serve` loads the weights for these --dtype and --quantize flags.
    func servingFormat() throws -> WeightFormat { try WeightFormat.choose(dtype: dtype, quantize: quantize, use: .inference) }

    struct ServingOutput: Encodable {
        let model: String, base: String, slots: Int, context: Int, adapters: Int
        let weights_mib: Double, adapters_mib: Double, kv_cache_mib: Double, prefill_mib: Double, decode_mib: Double
        let workspace_mib: Double, runtime_mib: Double, loading_mib: Double, total_mib: Double
    }

    /// `--serve`: the server's memory, bounded by its slots and context whatever the requests.
    func runServe(files: ModelFiles, config: DecoderConfiguration) throws {
        let format = try servingFormat()
        let plan = ServingPlan(config: config, weightBytes: ServingPlan.weightBytes(files: files, config: config, format: format),
                               slots: maxConcurrency, contextPerSlot: context,
                               adapters: Array(repeating: loraConfiguration, count: adapters),
                               prefillTokenBudget: BatchDecoder.prefillTokenBudget,
                               runtime: try RuntimeBaseline.estimate(for: files, config: config))
        if json {
            printLine(try jsonLine(ServingOutput(
                model: files.url.lastPathComponent, base: format.rawValue, slots: maxConcurrency, context: context,
                adapters: adapters, weights_mib: mib(plan.weightBytes), adapters_mib: mib(plan.adapterBytes),
                kv_cache_mib: mib(plan.cacheBytes), prefill_mib: mib(plan.prefillBytes), decode_mib: mib(plan.decodeBytes),
                workspace_mib: mib(plan.compactScratchBytes), runtime_mib: mib(plan.runtime.totalBytes),
                loading_mib: mib(plan.loadingBytes), total_mib: mib(plan.totalBytes))))
            return
        }
        print("\(files.url.lastPathComponent): serve (weights \(format)), \(maxConcurrency) slots × \(context) tokens, "
              + "\(adapters) adapter\(adapters == 1 ? "" : "s")")
        let rows: [(String, Int)] = [
            ("weights", plan.weightBytes), ("adapters", plan.adapterBytes), ("KV cache", plan.cacheBytes),
            ("prefill pass", plan.prefillBytes), ("decode step", plan.decodeBytes), ("workspace", plan.compactScratchBytes),
            ("runtime", plan.runtime.totalBytes),
        ]
        for (name, bytes) in rows { printRow(name, bytes) }
        if plan.loadingBytes > plan.servingBytes {
            printRow("loading peak", plan.loadingBytes, "  (runtime included: the model file is resident while the weights are read)")
        }
        printRow("total", plan.totalBytes, "  (every slot's whole context in use; the KV cache is allocated once)")
    }

    private func mib(_ bytes: Int) -> Double { (Double(bytes) / 1_048_576 * 10).rounded() / 10 }

    /// One line of a plan's table: the term, its MiB right-aligned, and a note.
    private func printRow(_ name: String, _ bytes: Int, _ note: String = "") {
        print(name.padding(toLength: 16, withPad: " ", startingAt: 0) + pad(mib(bytes)) + " MiB" + note)
    }

    public func run() throws {
        let files = try ModelFiles.open(try ModelLocator.resolve(model))
        let config = try files.configuration()
        if serve { return try runServe(files: files, config: config) }
        let plan = try plan(config: config, runtime: try RuntimeBaseline.estimate(for: files, config: config))
        try plan.validate()
        if json {
            printLine(try jsonLine(Output(
                model: files.url.lastPathComponent, method: method.rawValue, base: try baseFormat().rawValue, batch: batch, seq: seq,
                optimizer: optimizer.rawValue, gradient_checkpointing: gradientCheckpointing,
                weights_mib: mib(plan.weightBytes), gradients_mib: mib(plan.gradientBytes),
                optimizer_mib: mib(plan.optimizerBytes), activations_mib: mib(plan.activationBytes),
                workspace_mib: mib(plan.workspaceBytes), runtime_mib: mib(plan.runtimeBytes),
                loading_mib: mib(plan.loadingBytes), total_mib: mib(plan.totalBytes),
                rollouts_mib: plan.rollouts == nil ? nil : mib(plan.rolloutBytes))))
            return
        }
        let shape = plan.rollouts.map { "rollouts \($0.sequences) × (\($0.promptLength) + \($0.newTokens)), update \(plan.batchSize) × \(plan.length)" }
            ?? "batch \(batch) × seq \(seq)"
        print("\(files.url.lastPathComponent): \(method.rawValue) (base \(try baseFormat())), \(shape), \(optimizer.rawValue)"
              + (gradientCheckpointing ? ", gradient checkpointing" : ""))
        let rows: [(String, Int)] = [
            ("weights", plan.weightBytes), ("gradients", plan.gradientBytes), ("optimizer state", plan.optimizerBytes),
            ("activations", plan.activationBytes), ("workspace", plan.workspaceBytes), ("runtime", plan.runtimeBytes),
        ]
        for (name, bytes) in rows { printRow(name, bytes) }
        if plan.rollouts != nil {
            let peak = plan.rolloutBytes > plan.updateBytes ? "  (the step's peak: it replaces activations + workspace)" : ""
            printRow("rollouts", plan.rolloutBytes, peak)
        }
        if plan.loadingBytes > plan.runtimeBytes + plan.trainingBytes {
            // The peak is the load, not the step: the rows above do not add up to the total.
            printRow("loading peak", plan.loadingBytes, "  (runtime included: the model file is resident while the weights are read)")
        }
        printRow("total", plan.totalBytes)
    }

    private func pad(_ value: Double) -> String {
        let text = String(format: "%.1f", value)
        return String(repeating: " ", count: max(0, 10 - text.count)) + text
    }
}
