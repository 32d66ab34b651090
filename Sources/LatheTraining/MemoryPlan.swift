import Foundation
import LatheFormats
import LatheModels
import LatheTensors

/// The memory one fine-tuning run will need, worked out from the model's shape and the run's settings before
/// anything is loaded: the float32 and compact weights, the gradients of what trains, the optimizer's state, the
/// activations the backward pass reads, the reusable workspaces, and the process's own baseline.
///
/// Every term counts the buffers the training step allocates (`LlamaModel.loss(saving:)` and `backward`,
/// `LoRAAdapter`, `ChunkedLMHeadLoss`, the optimizers), so a change there should change the matching line here;
/// `MemoryPlanTests` holds the two together on a tiny model.
public struct MemoryPlan: Sendable, Equatable {
    /// What trains: every weight, LoRA adapters on a float32 base, or LoRA adapters on a compact frozen base.
    public enum Method: String, Sendable, CaseIterable, Codable {
        case full, lora, qlora
    }

    /// What the optimizer keeps per trainable value.
    public enum OptimizerMemory: String, Sendable, CaseIterable, Codable {
        /// Two float32 moments.
        case adamw
        /// Two 8-bit moments, each with a float32 scale per block of 256 values, for tensors of at least 4096
        /// values; smaller tensors keep float32 moments (bitsandbytes' rule, which the 8-bit AdamW on the adam8
        /// branch follows). Its allocation rule is `adamw8bitStateBytes(elements:)`: not yet measured here.
        case adamw8bit
        /// Plain SGD (momentum 0): no state.
        case sgd
        /// SGD with momentum: one float32 buffer.
        case sgdMomentum = "sgd-momentum"
    }

    /// NF4 with double-quantised scales (`WeightFormat.nf4.bitsPerValue`, ≈ 4.127 bits).
    public static let nf4BytesPerValue = WeightFormat.nf4.bitsPerValue / 8

    public var config: LlamaConfiguration
    public var method: Method
    /// Bytes per value of the frozen block linear weights: 4 (float32) for full and LoRA, 2 for a bf16 base,
    /// `nf4BytesPerValue` for QLoRA. A bf16 base holds the embedding and an untied LM head in bf16 too; NF4 leaves
    /// them (and the norms, always) in float32.
    public var baseBytesPerValue: Double
    public var batchSize: Int
    /// Tokens per row.
    public var length: Int
    /// Rank, targets and dropout of the adapters (ignored by full fine-tuning).
    public var lora: LoRAConfiguration
    public var gradientCheckpointing: Bool
    public var optimizer: OptimizerMemory
    /// A bf16 base multiplied natively (oneDNN on AMX) rounds each layer input to bf16 in a scratch buffer;
    /// other compact bases expand their weights a tile at a time instead.
    public var compactBaseMultipliesNatively: Bool
    public var runtime: RuntimeBaseline
    /// What reads the final hidden states: the LM head (SFT, preferences) or a reward model's score head.
    public var head: Head

    /// The head the step runs on the final hidden states.
    public enum Head: String, Sendable, Codable {
        /// The chunked LM head and its loss.
        case languageModel
        /// A [1, hidden] score head (`lathe reward`): trained, no LM head pass.
        case score
    }

    /// - Parameters:
    ///   - baseBytesPerValue: nil takes the method's own: 4 for full and LoRA, NF4's for QLoRA.
    ///   - compactBaseMultipliesNatively: nil asks the CPU (bf16 bases only).
    public init(config: LlamaConfiguration, method: Method, batchSize: Int, length: Int,
                lora: LoRAConfiguration = LoRAConfiguration(rank: 8, alpha: 16, targets: ["all-linear"]),
                gradientCheckpointing: Bool = false, optimizer: OptimizerMemory = .adamw,
                baseBytesPerValue: Double? = nil, compactBaseMultipliesNatively: Bool? = nil,
                runtime: RuntimeBaseline = .none, head: Head = .languageModel) {
        self.config = config
        self.method = method
        let bytes = baseBytesPerValue ?? (method == .qlora ? Self.nf4BytesPerValue : 4)
        self.baseBytesPerValue = bytes
        self.batchSize = batchSize
        self.length = length
        self.lora = lora
        self.gradientCheckpointing = gradientCheckpointing
        self.optimizer = optimizer
        self.compactBaseMultipliesNatively = compactBaseMultipliesNatively ?? (bytes == 2 && BF16Weight.usesNativeProducts)
        self.runtime = runtime
        self.head = head
    }

    /// Throws, naming the field, on settings no run could have.
    public func validate() throws {
        guard batchSize > 0 else { throw OptimizerError(subject: "batch", problem: "must be positive, got \(batchSize)") }
        guard length > 0 else { throw OptimizerError(subject: "seq", problem: "must be positive, got \(length)") }
        guard baseBytesPerValue > 0 else {
            throw OptimizerError(subject: "baseBytesPerValue", problem: "must be positive, got \(baseBytesPerValue)")
        }
        if method == .full, baseBytesPerValue != 4, baseBytesPerValue != 2 {
            throw OptimizerError(subject: "method", problem: "full fine-tuning trains float32 weights (with bf16 copies at most); a quantized base is for LoRA",
                                 fix: "use --method qlora, or a float32 or bf16 base")
        }
        if method != .full {
            do { try lora.validate() } catch { throw OptimizerError(subject: "lora", problem: "\(error)") }
        }
    }

    // MARK: - The terms

    /// Float32 parameters, the compact copies of the frozen block linears (QLoRA, bf16 base), the adapters, and
    /// a score head.
    public var weightBytes: Int { modelWeightBytes + scoreHeadValues * 4 }

    var modelWeightBytes: Int {
        let floats = config.parameterCount * 4
        guard isCompact else { return floats + adapterValues * 4 }
        if method == .full {
            // bf16 full fine-tuning: copies of the block linears and an untied head beside the float32 masters.
            let head = config.tieWordEmbeddings ? 0 : config.vocabularySize * config.hiddenSize
            let linears = blockLinearShapes.reduce(0) { $0 + $1.in * $1.out } * config.layerCount
            return floats + Int((Double(linears + head) * baseBytesPerValue).rounded(.up))
        }
        let linearValues = blockLinearShapes.reduce(0) { $0 + $1.in * $1.out } * config.layerCount
        let compact = blockLinearShapes.reduce(0) { sum, shape in
            sum + Int((Double(shape.in * shape.out) * baseBytesPerValue).rounded(.up))
        } * config.layerCount
        // A compressed weight keeps an empty float32 tensor of one value.
        var released = blockLinearShapes.count * config.layerCount * 4
        // bf16 also holds the embedding and an untied head, at 2 bytes.
        var headValues = 0
        if compressesEmbedding {
            headValues = config.vocabularySize * config.hiddenSize * (config.tieWordEmbeddings ? 1 : 2)
            released += (config.tieWordEmbeddings ? 1 : 2) * 4
        }
        return floats - (linearValues + headValues) * 4 + compact + headValues * 2 + released + adapterValues * 4
    }

    /// One float32 gradient per trainable value.
    public var gradientBytes: Int { trainableTensorSizes.reduce(0, +) * 4 }

    public var optimizerBytes: Int {
        let sizes = trainableTensorSizes
        switch optimizer {
        case .adamw: return sizes.reduce(0, +) * 8
        case .adamw8bit: return sizes.reduce(0) { $0 + Self.adamw8bitStateBytes(elements: $1) }
        case .sgd: return 0
        case .sgdMomentum: return sizes.reduce(0, +) * 4
        }
    }

    /// What the forward pass keeps for the backward pass (`TrainingActivations`, the adapters' saved products).
    public var activationBytes: Int {
        let c = config, rows = self.rows
        let kv = c.kvHeadCount * c.headDim
        let blockInputs = c.layerCount * rows * c.hiddenSize
        // Every block keeps its own set, or one set with checkpointing; the recomputed part is shared by all.
        let blockSets = (gradientCheckpointing ? 1 : c.layerCount) * keptBlockActivationFloats + recomputedBlockActivationFloats
        let keysAndValues = 2 * c.layerCount * rows * kv
        let finalInputAndGradient = 2 * rows * c.hiddenSize
        let rotaryTables = 2 * rows * (c.headDim / 2)
        // Each adapter keeps dropout(x)·Aᵀ, and with dropout its [rows, in] mask.
        var adapterFloats = 0
        if method != .full {
            for shape in adapterShapes {
                adapterFloats += rows * lora.rank + (lora.dropout > 0 ? rows * shape.in : 0)
            }
            adapterFloats *= c.layerCount
        }
        let floats = blockInputs + blockSets + keysAndValues + finalInputAndGradient + rotaryTables + adapterFloats
        // The KV cache's validity flags, one byte per token.
        return floats * 4 + rows
    }

    /// Buffers sized by the batch and reused: the forward and gradient workspaces, attention scores, the LM head's
    /// logits chunk, the adapters' backward temporaries, and the compact base's scratch.
    public var workspaceBytes: Int {
        let c = config, rows = self.rows
        let q = c.headCount * c.headDim, kv = c.kvHeadCount * c.headDim
        // ForwardWorkspace: hidden, projected, finalNormed, keys, values (its inference activations are never made).
        let forward = rows * (3 * c.hiddenSize + 2 * kv)
        // GradientWorkspace: residual, normed, attention, queries, keys, values, gate, up, activated.
        let gradient = rows * (2 * c.hiddenSize + 2 * q + 2 * kv + 3 * c.intermediateSize)
        // Scores of one block of queries against every key: the forward's and the backward's (P and dP).
        let scores = 2 * GroupedQueryAttention.scoreCount(queryCount: length, firstQuerySlot: 0)
        // ChunkedLMHeadLoss: one [chunk, vocabulary] logits block and two [chunk, hidden] row blocks; a score head
        // instead reads the final normed hidden states and returns their gradient, [rows, hidden] each.
        let chunk = min(256, rows)
        let head = self.head == .score ? 2 * rows * c.hiddenSize : chunk * c.vocabularySize + 2 * chunk * c.hiddenSize
        // LoRA backward: dProjected [rows, rank]; with dropout also dropout(x) and dx, [rows, in] each.
        var adapterTemporaries = 0
        if method != .full, let widest = adapterShapes.map(\.in).max() {
            adapterTemporaries = rows * lora.rank + (lora.dropout > 0 ? 2 * rows * widest : 0)
        }
        return (forward + gradient + scores + head + adapterTemporaries) * 4 + compactScratchBytes
    }

    /// The compact base's share of `workspaceBytes`: oneDNN's bf16 product rounds its float32 operand (a layer
    /// input or an output gradient) to bf16 in a buffer of its own; the tiled products expand up to `CompactWeightTiles.floatsPerTile` floats
    /// (at least 16 rows) of a weight at a time.
    public var compactScratchBytes: Int {
        guard isCompact else { return 0 }
        if compactBaseMultipliesNatively {
            return rows * (blockLinearShapes.map { max($0.in, $0.out) }.max() ?? 0) * 2
        }
        return (blockLinearShapes.map { CompactWeightTiles.rowsPerTile(columns: $0.in) * $0.in }.max() ?? 0) * 4
    }

    /// Everything the training itself allocates (the terms a test can measure with `TensorMemory`).
    public var trainingBytes: Int { weightBytes + gradientBytes + optimizerBytes + activationBytes + workspaceBytes }

    /// The resident peak while loading, runtime included. Loading reads the mapped file tensor by tensor (its
    /// pages become resident) into the model's weights; a weight bound for a compact format has float32 values
    /// only while it is read and compressed. The load peaks at its end: the whole file, every weight, and the
    /// float32 values of the last weight it compresses. Then the file's pages are released and the tokenizer is
    /// built, with a transient of its own.
    public var loadingBytes: Int {
        // Full fine-tuning loads float32 masters; its compact copies come with the training.
        let modelBytes = method == .full ? config.parameterCount * 4 : modelWeightBytes - adapterValues * 4
        let weightsRead = runtime.processBytes + runtime.modelFileBytes + modelBytes + lastCompressedWeightBytes
        let tokenizerBuilt = runtime.processBytes + modelBytes + runtime.tokenizerBytes + runtime.tokenizerLoadingBytes
        return max(weightsRead, tokenizerBuilt)
    }

    /// The float32 bytes of the weight loading compresses last: an untied LM head with bf16, else the last
    /// block's down projection (parameters load in checkpoint order).
    var lastCompressedWeightBytes: Int {
        guard isCompact, method != .full else { return 0 }
        if compressesEmbedding && !config.tieWordEmbeddings { return config.vocabularySize * config.hiddenSize * 4 }
        return config.intermediateSize * config.hiddenSize * 4
    }

    /// The peak resident memory the run should reach: the larger of the load and a training step with the runtime.
    public var totalBytes: Int { max(runtimeBytes + trainingBytes, loadingBytes) }

    /// The runtime's share while training: the process and tokenizer, and oneDNN's bf16 kernels where they run.
    public var runtimeBytes: Int {
        runtime.totalBytes + (isCompact && compactBaseMultipliesNatively ? Self.nativeBF16LibraryBytes : 0)
    }

    /// oneDNN's bf16 matmul keeps its jitted kernels and scratchpad outside the tensors: SmolLM2's bf16 LoRA runs
    /// peaked 19–22 MiB above the plan without this term at (4, 128), (8, 256) and (1, 512) on AVX512-BF16 (AMD
    /// Zen 4); not measured on AMX.
    public static let nativeBF16LibraryBytes = 21 << 20

    /// Bytes of bitsandbytes-style 8-bit AdamW state for a tensor of `elements` values.
    public static func adamw8bitStateBytes(elements: Int) -> Int {
        guard elements >= 4096 else { return elements * 8 }
        let blocks = (elements + 255) / 256
        return 2 * (elements + blocks * 4)
    }

    // MARK: - Shapes

    var rows: Int { batchSize * length }
    /// A bf16 base holds the embedding and an untied LM head in bf16 too (NF4 leaves them float32).
    var compressesEmbedding: Bool { isCompact && method != .full && baseBytesPerValue == 2 }
    /// A compact base (LoRA, QLoRA), or compact copies of full fine-tuning's master weights.
    var isCompact: Bool { method == .qlora || baseBytesPerValue != 4 }

    /// (in, out) of the seven linears of one block, in `LoRAConfiguration.linearNames` order.
    var blockLinearShapes: [(name: String, in: Int, out: Int)] {
        let c = config, q = c.headCount * c.headDim, kv = c.kvHeadCount * c.headDim
        return [("q_proj", c.hiddenSize, q), ("k_proj", c.hiddenSize, kv), ("v_proj", c.hiddenSize, kv),
                ("o_proj", q, c.hiddenSize), ("gate_proj", c.hiddenSize, c.intermediateSize),
                ("up_proj", c.hiddenSize, c.intermediateSize), ("down_proj", c.intermediateSize, c.hiddenSize)]
    }

    /// The block linears that get an adapter.
    var adapterShapes: [(name: String, in: Int, out: Int)] {
        let targets = Set(lora.targetModules)
        return blockLinearShapes.filter { targets.contains($0.name) }
    }

    /// Values of every adapter's A [rank, in] and B [out, rank] (zero for full fine-tuning).
    var adapterValues: Int {
        guard method != .full else { return 0 }
        return adapterShapes.reduce(0) { $0 + lora.rank * ($1.in + $1.out) } * config.layerCount
    }

    /// The score head's [1, hidden] (0 with the LM head).
    var scoreHeadValues: Int { head == .score ? config.hiddenSize : 0 }

    /// Element counts of the trainable tensors, one entry per tensor (the 8-bit optimizer's rule is per tensor).
    var trainableTensorSizes: [Int] {
        let c = config
        let scoreHead = scoreHeadValues > 0 ? [scoreHeadValues] : []
        guard method == .full else {
            let perBlock = adapterShapes.flatMap { [lora.rank * $0.in, $0.out * lora.rank] }
            return Array((0..<c.layerCount).map { _ in perBlock }.joined()) + scoreHead
        }
        var perBlock = [c.hiddenSize, c.hiddenSize] + blockLinearShapes.map { $0.in * $0.out }
        if c.attentionBias { perBlock += blockLinearShapes.prefix(3).map(\.out) }
        var sizes = [c.vocabularySize * c.hiddenSize, c.hiddenSize]
        if !c.tieWordEmbeddings { sizes.append(c.vocabularySize * c.hiddenSize) }
        return sizes + Array((0..<c.layerCount).map { _ in perBlock }.joined()) + scoreHead
    }

    /// What each block keeps of `BlockActivations`: middle, queries, attention, gate, up.
    var keptBlockActivationFloats: Int {
        let c = config, q = c.headCount * c.headDim
        return rows * (c.hiddenSize + 2 * q + 2 * c.intermediateSize)
    }

    /// What all blocks share and the backward pass recomputes: the two normalised inputs and silu(gate)·up.
    var recomputedBlockActivationFloats: Int { rows * (2 * config.hiddenSize + config.intermediateSize) }
}

/// What a Lathe process holds besides the training's tensors, which the peak resident memory includes.
/// Calibrated on Linux x86_64 release builds against `lathe bench sft` on SmolLM2-135M (49,152-token BPE) and on
/// the tests' tiny model (269 tokens), where the tensors are counted exactly (`TensorMemory`).
public struct RuntimeBaseline: Sendable, Equatable, Codable {
    /// The Swift runtime, Foundation, oneDNN and OpenBLAS code, heaps and thread stacks of a training process:
    /// 42 MiB resident with the tiny model, whose tensors, file and tokenizer take under 1 MiB.
    public var processBytes: Int
    /// The model file's pages: GGUF and safetensors files are memory-mapped and every tensor is read once while
    /// loading; they are resident until the load releases them (`MappedFile.releaseResidentPages`).
    public var modelFileBytes: Int
    /// The tokenizer's tables and the GGUF metadata arrays they were read from, which stay alive with the file.
    public var tokenizerBytes: Int
    /// What building the tokenizer holds for a moment on top of `tokenizerBytes` (copies of the vocabulary and
    /// merges): part of the load's peak only.
    public var tokenizerLoadingBytes: Int

    public init(processBytes: Int, modelFileBytes: Int, tokenizerBytes: Int, tokenizerLoadingBytes: Int) {
        self.processBytes = processBytes
        self.modelFileBytes = modelFileBytes
        self.tokenizerBytes = tokenizerBytes
        self.tokenizerLoadingBytes = tokenizerLoadingBytes
    }

    /// No baseline: the training's own allocations only.
    public static let none = RuntimeBaseline(processBytes: 0, modelFileBytes: 0, tokenizerBytes: 0, tokenizerLoadingBytes: 0)

    /// What stays resident through training (the file and the loading transients count in `MemoryPlan.loadingBytes`).
    public var totalBytes: Int { processBytes + tokenizerBytes }

    /// A training process with the tiny test model: peak RSS 41.7–42.1 MiB over three runs.
    public static let measuredProcessBytes = 42 << 20
    /// SmolLM2-135M: steady training runs (full and LoRA, 8 shapes) peak at 147.6–150.5 MiB above their tensors
    /// and the LM head's chunk; less the process and the 93.8 MiB file, 13.1 MiB for 49,152 tokens.
    public static let measuredTokenizerBytesPerToken = 280
    /// SmolLM2-135M at batch 1 × 2 tokens peaks while loading at 698.3 MiB: 36.4 MiB above the float32 weights
    /// and the steady runtime, for 49,152 tokens.
    public static let measuredTokenizerLoadingBytesPerToken = 776

    /// The baseline of a run that loads `files`: the measured process, the whole model file (or its safetensors
    /// shards) mapped and read, and the tokenizer scaled by the vocabulary.
    public static func estimate(for files: ModelFiles, config: LlamaConfiguration) throws -> RuntimeBaseline {
        let fileBytes: Int
        switch files {
        case .gguf(let file): fileBytes = try Self.size(of: file.url)
        case .huggingFace(let folder): fileBytes = try folder.weightFiles.reduce(0) { $0 + (try Self.size(of: $1.url)) }
        }
        return RuntimeBaseline(processBytes: measuredProcessBytes, modelFileBytes: fileBytes,
                               tokenizerBytes: config.vocabularySize * measuredTokenizerBytesPerToken,
                               tokenizerLoadingBytes: config.vocabularySize * measuredTokenizerLoadingBytesPerToken)
    }

    private static func size(of url: URL) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
        return (attributes[.size] as? NSNumber)?.intValue ?? 0
    }
}
