import Foundation
import LatheData
import LatheModels
import LatheTensors

/// `lathe advise`'s answer: the pipeline of stages, the method of its first trainer with settings that fit the
/// memory, each method's peak memory at those settings, a time estimate, and the warnings the data raised.
public struct Advice: Sendable, Encodable {
    public var method: MemoryPlan.Method
    /// The stages in order: "rag" (no training: retrieval first), then trainers as their commands are named.
    public var pipeline: [String]
    /// Peak MiB of each method at the advised batch, its longest row (`Settings.peakLength`) and checkpointing.
    public var memoryMiB: [String: Double]
    /// Which methods fit the budget at those settings.
    public var fits: [String: Bool]
    public var budgetMiB: Double
    public var device: Hardware.Device
    /// How memory is counted: "lathe" (`MemoryPlan`, this CPU's allocations) or "paper" (a stated device).
    public var memoryModel: String
    public var settings: Settings
    public var time: TimeEstimate?
    /// Why each choice was made, one sentence each.
    public var reasons: [String]
    public var warnings: [String]
    public var model: String
    public var data: DataSummary?

    enum CodingKeys: String, CodingKey {
        case method, pipeline, fits, device, settings, time, reasons, warnings, model, data
        case memoryMiB = "memory_mib", budgetMiB = "budget_mib", memoryModel = "memory_model"
    }

    /// The first trainer of the pipeline (what `--write-config` configures).
    public var firstTrainer: String? { pipeline.first { $0 != Self.retrieval } }

    public static let retrieval = "rag"

    /// The run's settings, chosen to fit.
    public struct Settings: Sendable, Codable, Equatable {
        public var batchSize: Int
        public var gradientAccumulation: Int
        public var maxLength: Int
        /// The longest row the trainer will see (at most `maxLength`): the memory is planned at it, as batches are
        /// padded to their longest row.
        public var peakLength: Int
        public var gradientCheckpointing: Bool
        /// nil for full fine-tuning.
        public var lora: LoRAConfiguration?
        public var optimizer: MemoryPlan.OptimizerMemory
        public var epochs: Int
        public var learningRate: Double
        public var warmupSteps: Int
        public var stepsPerEpoch: Int?

        enum CodingKeys: String, CodingKey {
            case lora, optimizer, epochs
            case batchSize = "batch_size", gradientAccumulation = "gradient_accumulation", maxLength = "max_length", peakLength = "peak_length"
            case gradientCheckpointing = "gradient_checkpointing", learningRate = "learning_rate", warmupSteps = "warmup_steps"
            case stepsPerEpoch = "steps_per_epoch"
        }
    }

    /// Tokens per epoch × FLOPs per token ÷ the device's rate: the matrix products alone, so a lower bound.
    public struct TimeEstimate: Sendable, Codable, Equatable {
        public var tokensPerEpoch: Int
        public var flopsPerToken: Double
        public var flopsPerSecond: Double
        public var seconds: Double

        enum CodingKeys: String, CodingKey {
            case seconds
            case tokensPerEpoch = "tokens_per_epoch", flopsPerToken = "flops_per_token", flopsPerSecond = "flops_per_second"
        }
    }
}

/// The seeds' decision tree over an `AdviceRequest`: a pure function of its inputs.
public enum Advisor {
    /// Examples below which a goal's fine-tuning is unlikely to take (the order of magnitude guides quote: a format
    /// from a hundred, a style or a small skill from a few hundred, a domain or a safety behaviour from a thousand).
    public static func minimumExamples(for goal: Goal) -> Int {
        switch goal {
        case .format: return 100
        case .style, .knowledge: return 200
        case .skill, .safety: return 500
        case .domain: return 1000
        }
    }

    /// Full fine-tuning is worth its memory for a domain or a skill only with at least this many training tokens per
    /// parameter (below it an adapter of rank 16 on every linear holds what the data can teach).
    public static let fullFineTuningTokensPerParameter = 0.1

    /// What a stated device holds besides the tensors (a CUDA context and the libraries' workspaces; not measured here).
    public static let deviceRuntimeBytes = 1 << 30

    public static func advise(_ request: AdviceRequest) throws -> Advice {
        let config = request.model.config
        var reasons: [String] = [], warnings: [String] = []
        let pipeline = stages(request, reasons: &reasons, warnings: &warnings)
        let trainer = pipeline.first { $0 != Advice.retrieval } ?? "sft"
        let objective = PreferenceMethod(rawValue: trainer)
        let length = maxLength(request.data, config: config, warnings: &warnings)
        // The trainers pad each batch to its longest row: the peak step holds the longest row, cut at the limit.
        var peakLength = length
        if let data = request.data, let lengths = data.lengths { peakLength = min(length, lengths.max + data.specialTokenAllowance) }
        let rows = request.data?.rows
        let targetBatch = rows.map { $0 >= 320 ? 16 : $0 >= 64 ? 8 : 4 } ?? 16
        let rank = [.format, .style].contains(request.goal) ? 8 : 16
        let lora = LoRAConfiguration(rank: rank, alpha: Float(2 * rank), targets: ["all-linear"])
        let sizer = MethodSizer(request: request, lora: lora, length: peakLength, sequencesPerItem: objective?.sequencesPerItem ?? 1)
        let budget = request.hardware.budgetBytes

        // The cheapest method that fits: LoRA; full fine-tuning where the data is large enough to use it; QLoRA
        // where LoRA does not fit.
        let method: MemoryPlan.Method, fitted: MethodSizer.Fit
        if let forced = request.method {
            method = forced
            if let fit = sizer.fit(forced, targetBatch: targetBatch) {
                fitted = fit
            } else {
                fitted = sizer.smallest(forced)
                warnings.append("\(forced.rawValue) does not fit: \(mib(fitted.bytes)) MiB at batch 1 × \(peakLength) tokens with gradient checkpointing, budget \(mib(budget)) MiB")
            }
            reasons.append("method \(forced.rawValue): as asked (--method)")
        } else {
            let tokens = request.data?.totalTokens ?? 0
            let perParameter = Double(tokens) / Double(config.parameterCount)
            let wantsFull = [.domain, .skill].contains(request.goal) && objective == nil && perParameter >= fullFineTuningTokensPerParameter
            if wantsFull, let fit = sizer.fit(.full, targetBatch: targetBatch) {
                method = .full; fitted = fit
                reasons.append(String(format: "full fine-tuning: %.2f training tokens per parameter (≥ %.1f) for a %@ goal, and every weight's gradient and optimizer state fit", perParameter, fullFineTuningTokensPerParameter, request.goal.rawValue))
            } else if let fit = sizer.fit(.lora, targetBatch: targetBatch) {
                method = .lora; fitted = fit
                reasons.append(wantsFull ? "LoRA: full fine-tuning would suit this much data but does not fit (\(mib(sizer.smallest(.full).bytes)) MiB at batch 1)"
                               : String(format: "LoRA: the cheapest method that fits; full fine-tuning pays for its memory only with ≥ %.1f tokens per parameter on a domain or skill (here %.2g)", fullFineTuningTokensPerParameter, perParameter))
            } else if let fit = sizer.fit(.qlora, targetBatch: targetBatch) {
                method = .qlora; fitted = fit
                reasons.append("QLoRA: LoRA on a \(sizer.loraBaseName) base does not fit (\(mib(sizer.smallest(.lora).bytes)) MiB at batch 1 with checkpointing, budget \(mib(budget)) MiB); an NF4 base does")
            } else {
                method = .qlora; fitted = sizer.smallest(.qlora)
                reasons.append("QLoRA: the smallest method, though nothing fits")
                warnings.append("nothing fits: QLoRA needs \(mib(fitted.bytes)) MiB at batch 1 × \(peakLength) tokens with gradient checkpointing, budget \(mib(budget)) MiB: shorten the rows, take a smaller model or more memory")
            }
        }
        if fitted.gradientCheckpointing {
            reasons.append("gradient checkpointing: without it even batch 1 exceeds the budget; it recomputes each block's activations (about a third more compute)")
        }
        if fitted.optimizer == .adamw8bit && method == .full && request.hardware.device == .cpu {
            reasons.append("8-bit AdamW: float32 moments do not fit beside every weight's gradient")
        }

        let accumulation = max(1, targetBatch / fitted.batchSize)
        let steps = rows.map { max(1, ($0 + fitted.batchSize * accumulation - 1) / (fitted.batchSize * accumulation)) }
        let epochs = rows.map { $0 < 1000 ? 3 : $0 < 10000 ? 2 : 1 } ?? 1
        let learningRate = method == .full ? 2e-5 : config.parameterCount > 20_000_000_000 ? 1e-4 : 2e-4
        let settings = Advice.Settings(
            batchSize: fitted.batchSize, gradientAccumulation: accumulation, maxLength: length, peakLength: peakLength,
            gradientCheckpointing: fitted.gradientCheckpointing, lora: method == .full ? nil : lora, optimizer: fitted.optimizer,
            epochs: epochs, learningRate: learningRate, warmupSteps: steps.map { max(1, $0 * epochs * 3 / 100) } ?? 0, stepsPerEpoch: steps)
        reasons.append("batch \(fitted.batchSize) × \(accumulation) accumulated = \(fitted.batchSize * accumulation) rows per step, \(length) tokens per row, \(epochs) epoch\(epochs == 1 ? "" : "s")"
                       + (method == .full ? "" : ", rank \(rank) on every linear (QLoRA's finding: all linears, not only attention)"))

        var memory: [String: Double] = [:], fits: [String: Bool] = [:]
        for candidate in MemoryPlan.Method.allCases {
            let bytes = sizer.bytes(candidate, batchSize: fitted.batchSize, checkpointing: fitted.gradientCheckpointing,
                                    optimizer: candidate == method ? fitted.optimizer : sizer.optimizer(for: candidate))
            memory[candidate.rawValue] = mib(bytes)
            fits[candidate.rawValue] = bytes <= budget
        }
        warnings += dataWarnings(request, length: length)

        let time = request.hardware.flopsPerSecond.flatMap { rate -> Advice.TimeEstimate? in
            guard let data = request.data else { return nil }
            let sequences = objective?.sequencesPerItem ?? 1
            let tokens = data.totalTokens * sequences
            let perToken = flopsPerToken(config, method: method, length: peakLength, checkpointing: fitted.gradientCheckpointing,
                                         referencePass: objective?.needsReference ?? false)
            return Advice.TimeEstimate(tokensPerEpoch: tokens, flopsPerToken: perToken, flopsPerSecond: rate,
                                       seconds: Double(tokens * epochs) * perToken / rate)
        }
        if request.hardware.flopsPerSecond == nil { warnings.append("no time estimate: give the device's rate (--device-tflops)") }

        return Advice(method: method, pipeline: pipeline, memoryMiB: memory, fits: fits, budgetMiB: mib(budget),
                      device: request.hardware.device, memoryModel: request.hardware.device == .cpu ? "lathe" : "paper",
                      settings: settings, time: time, reasons: reasons, warnings: warnings, model: request.model.name, data: request.data)
    }

    // MARK: - The branches

    /// The goal's stages, and what the data's kind changes about them.
    static func stages(_ request: AdviceRequest, reasons: inout [String], warnings: inout [String]) -> [String] {
        let kind = request.data?.kind
        let instructed = request.model.hasChatTemplate
        switch request.goal {
        case .knowledge:
            reasons.append("knowledge the model lacks: retrieval first (RAG). Fine-tuning teaches the form of facts more reliably than the facts, which the model then states as confidently when wrong; retrieved passages can be updated and cited. Fine-tune after it only to answer from the retrieved context")
            switch kind {
            case .preference?: return [Advice.retrieval, instructed ? "dpo" : "orpo"]
            case .unpaired?: return [Advice.retrieval, "kto"]
            default: return [Advice.retrieval, "sft"]
            }
        case .format, .skill, .domain:
            switch kind {
            case .preference?:
                warnings.append("a \(request.goal.rawValue) is learned from demonstrations, and the data is preference pairs: ORPO trains on the chosen answers (its SFT term) and the preference in one stage")
                return ["orpo"]
            case .unpaired?:
                warnings.append("a \(request.goal.rawValue) is learned from demonstrations, and the data is unpaired labels: KTO learns from the desirable answers among them")
                return ["kto"]
            case .rawText?:
                if request.goal == .domain {
                    reasons.append("domain on raw text: SFT with the loss on every token (continued pretraining), then demonstrations if the model must also answer in the domain")
                } else {
                    warnings.append("raw text teaches a domain's language, not a \(request.goal.rawValue): give prompt/completion or messages rows")
                }
                return ["sft"]
            case .sft?, nil:
                reasons.append("\(request.goal.rawValue): supervised fine-tuning on demonstrations")
                return ["sft"]
            }
        case .style, .safety:
            switch kind {
            case .preference?:
                if instructed {
                    reasons.append("\(request.goal.rawValue) with preference pairs on an instruction-tuned model (it has a chat template): DPO refines it directly, its frozen start as the reference")
                    return ["dpo"]
                }
                reasons.append("\(request.goal.rawValue) with preference pairs on a base model (no chat template): ORPO does SFT and the preference in one stage, with no reference model")
                return ["orpo"]
            case .unpaired?:
                reasons.append("\(request.goal.rawValue) with unpaired labels: KTO" + (instructed ? "" : ", after SFT on the desirable answers (a base model)"))
                return instructed ? ["kto"] : ["sft", "kto"]
            case .sft?, .rawText?, nil:
                reasons.append("\(request.goal.rawValue): SFT on demonstrations, then DPO on preference pairs (or ORPO on the pairs in one stage)")
                warnings.append("the dpo stage needs preference pairs (prompt, chosen, rejected), and none are given: sample the SFT model, then rank or label its answers")
                return ["sft", "dpo"]
            }
        }
    }

    /// Tokens per row: every row whole (rounded up to 64), unless the longest is over twice the 95th percentile —
    /// then the 95th percentile, cutting the few outliers; never past the model's positions.
    static func maxLength(_ data: DataSummary?, config: DecoderConfiguration, warnings: inout [String]) -> Int {
        func rounded(_ tokens: Int) -> Int { (tokens + 8 + 63) / 64 * 64 }
        guard let lengths = data?.lengths else {
            warnings.append("no rows measured: settings assume 512-token rows")
            return min(512, config.maxPositions)
        }
        var length = rounded(lengths.max)
        if lengths.max > 2 * lengths.p95 {
            length = rounded(lengths.p95)
            warnings.append("rows longer than \(length) tokens are cut (95th percentile \(lengths.p95), longest \(lengths.max)): about 5% of rows")
        }
        if length > config.maxPositions {
            warnings.append("rows up to \(length) tokens exceed the model's \(config.maxPositions) positions: cut to \(config.maxPositions)")
            length = config.maxPositions
        }
        return length
    }

    /// The warnings the data summary raises, with their numbers.
    static func dataWarnings(_ request: AdviceRequest, length: Int) -> [String] {
        guard let data = request.data else {
            return ["no --data: nothing about the examples was checked"]
        }
        var warnings: [String] = []
        let minimum = minimumExamples(for: request.goal)
        if data.rows < minimum {
            warnings.append("\(data.rows) examples for a \(request.goal.rawValue) goal: it usually takes \(minimum) or more")
        }
        if data.invalidRows > 0 { warnings.append("\(data.invalidRows) of \(data.rows) rows are invalid (lathe data check \(data.file))") }
        if let evalRows = data.evalRows {
            if let overlap = data.evalOverlap, overlap > 0 {
                warnings.append("\(overlap) of \(evalRows) held-out rows repeat training rows: the held-out loss will flatter the model")
            }
        } else {
            warnings.append("no held-out data (--eval-data): hold out about \(max(20, data.rows / 20)) rows (5%) with lathe data split, to see overfitting")
        }
        let duplicates = data.exactDuplicates + data.nearDuplicates
        if duplicates > 0 {
            warnings.append(String(format: "%d exact and %d near-duplicate rows (%.1f%% of %d): lathe data dedup %@ --near 0.8",
                                   data.exactDuplicates, data.nearDuplicates, 100 * Double(duplicates) / Double(max(1, data.rows)), data.rows, data.file))
        }
        if let missing = data.rowsWithoutStopToken, missing > 0 {
            warnings.append("\(missing) of \(data.eosCheckedRows) rendered rows have an answer that does not end with a stop token (EOS or end of turn): the model would not learn to stop")
        }
        if !data.tokenized {
            warnings.append(String(format: "lengths are estimated at %.0f characters per token (the model has no tokenizer here)", DataSummary.charactersPerToken)
                            + (data.kind == .sft ? "; answers' stop tokens not checked" : ""))
        }
        return warnings
    }

    /// Training FLOPs per token of the matrix products: the forward pass is 2 per weight of the block linears and the
    /// LM head, plus attention's two products over half the row on average; full fine-tuning's backward is twice
    /// the forward (input and weight gradients), LoRA's once (input gradients; the adapters' own are negligible);
    /// checkpointing adds a forward, a reference model's log-probabilities another.
    public static func flopsPerToken(_ config: DecoderConfiguration, method: MemoryPlan.Method, length: Int, checkpointing: Bool,
                                     referencePass: Bool) -> Double {
        let q = config.headCount * config.headDim, kv = config.kvHeadCount * config.headDim
        let blockWeights = config.hiddenSize * (2 * q + 2 * kv) + 3 * config.hiddenSize * config.intermediateSize
        let weights = Double(config.layerCount * blockWeights + config.vocabularySize * config.hiddenSize)
        let attention = Double(config.layerCount) * 2 * 2 * Double(q) * Double(length) / 2
        let forward = 2 * weights + attention
        let backward = method == .full ? 2 * forward : forward
        return forward + backward + (checkpointing ? forward : 0) + (referencePass ? forward : 0)
    }

    static func mib(_ bytes: Int) -> Double { (Double(bytes) / 1_048_576 * 10).rounded() / 10 }
}

/// Works out each method's memory for one request: `MemoryPlan` as Lathe allocates it on this CPU, or on paper
/// for a stated device; and finds the largest batch that fits.
struct MethodSizer {
    let request: AdviceRequest
    let lora: LoRAConfiguration
    let length: Int
    /// Rows per item: 2 for pairs (chosen and rejected), else 1.
    let sequencesPerItem: Int

    struct Fit {
        var batchSize: Int
        var gradientCheckpointing: Bool
        var optimizer: MemoryPlan.OptimizerMemory
        var bytes: Int
    }

    /// Micro-batches tried, largest first (at most the target batch).
    static let batchSizes = [16, 8, 4, 2, 1]

    /// The largest batch that fits without checkpointing, else with it; full fine-tuning on this CPU then tries 8-bit
    /// moments. Nil when nothing fits.
    func fit(_ method: MemoryPlan.Method, targetBatch: Int) -> Fit? {
        var optimizers = [optimizer(for: method)]
        if method == .full && request.hardware.device == .cpu { optimizers.append(.adamw8bit) }
        for optimizer in optimizers {
            for checkpointing in [false, true] {
                for batch in Self.batchSizes where batch <= targetBatch {
                    let bytes = self.bytes(method, batchSize: batch, checkpointing: checkpointing, optimizer: optimizer)
                    if bytes <= request.hardware.budgetBytes {
                        return Fit(batchSize: batch, gradientCheckpointing: checkpointing, optimizer: optimizer, bytes: bytes)
                    }
                }
            }
        }
        return nil
    }

    /// Batch 1 with checkpointing: the least the method can take.
    func smallest(_ method: MemoryPlan.Method) -> Fit {
        let optimizer = method == .full && request.hardware.device == .cpu ? .adamw8bit : optimizer(for: method)
        return Fit(batchSize: 1, gradientCheckpointing: true, optimizer: optimizer,
                   bytes: bytes(method, batchSize: 1, checkpointing: true, optimizer: optimizer))
    }

    /// Float32 AdamW, except full fine-tuning on a stated device: 8-bit moments (bitsandbytes).
    func optimizer(for method: MemoryPlan.Method) -> MemoryPlan.OptimizerMemory {
        method == .full && request.hardware.device != .cpu ? .adamw8bit : .adamw
    }

    /// The frozen base of plain LoRA: what `dtype: auto` chooses on this CPU, bf16 on a stated device.
    var loraBaseName: String { baseBytesPerValue(.lora) == 2 ? "bf16" : "float32" }

    func baseBytesPerValue(_ method: MemoryPlan.Method) -> Double {
        if method == .qlora { return MemoryPlan.nf4BytesPerValue }
        guard request.hardware.device == .cpu else { return 2 }
        let format = (try? WeightFormat.choose(dtype: "auto", quantize: nil, use: method == .full ? .masterWeights : .frozenBase,
                                              products: request.hardware.bf16Products)) ?? .float32
        return format.bitsPerValue / 8
    }

    func plan(_ method: MemoryPlan.Method, batchSize: Int, checkpointing: Bool, optimizer: MemoryPlan.OptimizerMemory) -> MemoryPlan {
        let base = baseBytesPerValue(method)
        let native = request.hardware.device == .cpu && base == 2 && request.hardware.bf16Products.beatFloat32
        return MemoryPlan(config: request.model.config, method: method, batchSize: batchSize * sequencesPerItem, length: length,
                          lora: lora, gradientCheckpointing: checkpointing, optimizer: optimizer, baseBytesPerValue: base,
                          compactBaseMultipliesNatively: native, runtime: request.model.runtime)
    }

    func bytes(_ method: MemoryPlan.Method, batchSize: Int, checkpointing: Bool, optimizer: MemoryPlan.OptimizerMemory) -> Int {
        let plan = plan(method, batchSize: batchSize, checkpointing: checkpointing, optimizer: optimizer)
        return request.hardware.device == .cpu ? plan.totalBytes : Self.paperBytes(plan)
    }

    /// A stated device's peak on paper, from the plan's own value counts: full fine-tuning in pure bf16 (weights and
    /// gradients, the plan's optimizer state); LoRA on a bf16 base, QLoRA's block linears in NF4 with double-quantized
    /// scales and its other weights in bf16, the adapters, their gradients and AdamW moments in float32;
    /// activations and workspaces in bf16 (half the plan's float32); and the device's runtime.
    static func paperBytes(_ plan: MemoryPlan) -> Int {
        let c = plan.config
        let linears = plan.blockLinearShapes.reduce(0) { $0 + $1.in * $1.out } * c.layerCount
        let others = c.parameterCount - linears
        let weights: Int, gradients: Int
        switch plan.method {
        case .full:
            weights = c.parameterCount * 2
            gradients = plan.gradientBytes / 2
        case .lora:
            weights = c.parameterCount * 2 + plan.adapterValues * 4
            gradients = plan.gradientBytes
        case .qlora:
            weights = Int(Double(linears) * MemoryPlan.nf4BytesPerValue) + others * 2 + plan.adapterValues * 4
            gradients = plan.gradientBytes
        }
        return weights + gradients + plan.optimizerBytes + (plan.activationBytes + plan.workspaceBytes - plan.compactScratchBytes) / 2
            + Advisor.deviceRuntimeBytes
    }
}
