import Foundation
import LatheFormats
import LatheModels
import LatheTensors

/// The memory one fine-tuning run will need, worked out from the model's shape and the run's settings before
/// anything is loaded: the float32 and compact weights, the gradients of what trains, the optimizer's state, the
/// activations the backward pass reads, the reusable workspaces, and the process's own baseline.
///
/// Every term counts the buffers the training step allocates (`DecoderModel.loss(saving:)` and `backward`,
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

    public var config: DecoderConfiguration
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
    /// An RL stage's passes between updates (nil for the other methods); `batchSize` × `length` is then its update's
    /// micro-batch.
    public var rollouts: Rollouts?

    /// What GRPO and PPO run besides the update: sampling in a KV cache, forward passes that save nothing over whole
    /// sequences (the reference, PPO's values and reward model), and the adapters and heads those read.
    public struct Rollouts: Sendable, Equatable {
        public enum Stage: String, Sendable, Codable {
            /// `GRPOTask`: completions of a step sampled together, the reference over each update micro-batch.
            case grpo
            /// `PPOTask`: a rollout batch of prompts, the reference and value passes in chunks, the reward model's
            /// scores 8 sequences at a time, a value head trained with the policy.
            case ppo
        }
        public var stage: Stage
        /// Sequences decoded together: GRPO's batch × gradient accumulation completions, PPO's batch of prompts.
        public var sequences: Int
        /// Tokens of the longest prompt, and the most sampled after it: the KV cache holds both.
        public var promptLength: Int
        public var newTokens: Int
        /// Rows of each reference (and PPO value) pass: GRPO's micro-batch when beta > 0, else 0; PPO's
        /// local_rollout_forward_batch_size, at most the batch.
        public var scoringRows: Int
        /// Training starts from an adapter, whose frozen copy (same shape) is the reference when one runs.
        public var startsFromAdapter: Bool
        /// PPO's reward model: a frozen adapter of this shape and its [1, hidden] score head on the same base.
        public var rewardModel: LoRAConfiguration?
        /// Tokens of the longest sequence the reward model reads: the conversation rendered again with the decoded
        /// response as the assistant's turn.
        public var rewardModelLength: Int

        /// - Parameter rewardModelLength: nil takes the prompt, the response and a ChatML end of turn (2 tokens).
        public init(stage: Stage, sequences: Int, promptLength: Int, newTokens: Int, scoringRows: Int,
                    startsFromAdapter: Bool, rewardModel: LoRAConfiguration? = nil, rewardModelLength: Int? = nil) {
            self.stage = stage; self.sequences = sequences; self.promptLength = promptLength; self.newTokens = newTokens
            self.scoringRows = scoringRows; self.startsFromAdapter = startsFromAdapter; self.rewardModel = rewardModel
            self.rewardModelLength = rewardModelLength ?? promptLength + newTokens + 2
        }

        /// Rows the reward model scores at once (`PPOTask`'s chunks of 8).
        static let rewardModelRows = 8
    }

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
    public init(config: DecoderConfiguration, method: Method, batchSize: Int, length: Int,
                lora: LoRAConfiguration = LoRAConfiguration(rank: 8, alpha: 16, targets: ["all-linear"]),
                gradientCheckpointing: Bool = false, optimizer: OptimizerMemory = .adamw,
                baseBytesPerValue: Double? = nil, compactBaseMultipliesNatively: Bool? = nil,
                runtime: RuntimeBaseline = .none, head: Head = .languageModel, rollouts: Rollouts? = nil) {
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
        self.rollouts = rollouts
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
        if let rollouts {
            guard method != .full else {
                throw OptimizerError(subject: "method", problem: "GRPO and PPO train LoRA (the reference is the frozen start on the same base)")
            }
            guard rollouts.sequences > 0, rollouts.promptLength > 0, rollouts.newTokens > 0, rollouts.scoringRows >= 0 else {
                throw OptimizerError(subject: "rollouts", problem: "sequences, prompt and new tokens must be positive")
            }
            do { try rollouts.rewardModel?.validate() } catch { throw OptimizerError(subject: "reward model lora", problem: "\(error)") }
        }
    }

    // MARK: - The terms

    /// Float32 parameters, the compact copies of the frozen block linears (QLoRA, bf16 base), the adapters, a
    /// score head, and an RL stage's frozen adapters and heads.
    public var weightBytes: Int { modelWeightBytes + (scoreHeadValues + rolloutWeightValues) * 4 }

    /// The reference's frozen copy of the start adapter, PPO's value head and its reward model's adapter and head.
    var rolloutWeightValues: Int {
        guard let rollouts else { return 0 }
        // GRPO with beta 0 runs no reference and keeps no copy (`TrainingConfiguration.usesReference`).
        let runsReference = rollouts.stage == .ppo || rollouts.scoringRows > 0
        var values = rollouts.startsFromAdapter && runsReference ? adapterValues : 0
        if rollouts.stage == .ppo { values += config.hiddenSize }
        if let rewardModel = rollouts.rewardModel { values += adapterValues(rewardModel) + config.hiddenSize }
        return values
    }

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
            adapterFloats = projectedFloats(rows: rows, lora) + (lora.dropout > 0 ? adapterShapes.reduce(0) { $0 + rows * $1.in } * c.layerCount : 0)
        }
        let floats = blockInputs + blockSets + keysAndValues + finalInputAndGradient + rotaryTables + adapterFloats
        // The KV cache's validity flags, one byte per token.
        return floats * 4 + rows
    }

    /// Buffers sized by the batch and reused: the forward and gradient workspaces, attention scores, the LM head's
    /// logits chunk, the adapters' backward temporaries, and the compact base's scratch.
    public var workspaceBytes: Int {
        // Scores of one block of queries against every key: the forward's (with the gradient's, P and dP).
        let forward = forwardWorkspaceFloats(rows: rows) + GroupedQueryAttention.scoreCount(queryCount: length, firstQuerySlot: 0)
        // A score head reads the final normed hidden states and returns their gradient, [rows, hidden] each; PPO's
        // value head does so beside the LM head.
        let scoreHead = head == .score || rollouts?.stage == .ppo ? 2 * rows * config.hiddenSize : 0
        // LoRA backward: dProjected [rows, rank]; with dropout also dropout(x) and dx, [rows, in] each.
        var adapterTemporaries = 0
        if method != .full, let widest = adapterShapes.map(\.in).max() {
            adapterTemporaries = rows * lora.rank + (lora.dropout > 0 ? 2 * rows * widest : 0)
        }
        return (forward + gradientWorkspaceFloats + (head == .score ? 0 : lmHeadChunkFloats) + scoreHead + adapterTemporaries) * 4
            + compactScratchBytes
    }

    /// ForwardWorkspace: hidden, projected, finalNormed, keys, values (a training pass never makes its shared block
    /// activations).
    func forwardWorkspaceFloats(rows: Int) -> Int { rows * (3 * config.hiddenSize + 2 * config.kvHeadCount * config.headDim) }

    /// GradientWorkspace: residual, normed, attention, queries, keys, values, gate, up, activated, and the backward
    /// pass's scores (dP); kept by the model from one step to the next.
    var gradientWorkspaceFloats: Int {
        let c = config, q = c.headCount * c.headDim, kv = c.kvHeadCount * c.headDim
        return rows * (2 * c.hiddenSize + 2 * q + 2 * kv + 3 * c.intermediateSize + optionalStageFloats(gradients: true))
            + GroupedQueryAttention.scoreCount(queryCount: length, firstQuerySlot: 0)
    }

    /// ChunkedLMHeadLoss: one [chunk, vocabulary] logits block and two [chunk, hidden] row blocks, kept by the model;
    /// a chunk holds rows with a target only, which an RL update has at its sampled tokens alone.
    var lmHeadChunkFloats: Int {
        let chunk = min(256, rollouts.map { batchSize * $0.newTokens } ?? rows)
        return chunk * config.vocabularySize + 2 * chunk * config.hiddenSize
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

    /// Everything the training itself allocates (the terms a test can measure with `TensorMemory`): the update, or
    /// an RL stage's rollouts where they hold more.
    public var trainingBytes: Int { weightBytes + gradientBytes + optimizerBytes + max(updateBytes, rolloutBytes) }

    /// The update's activations and workspaces. GRPO's reference pass over the same micro-batch leaves the forward
    /// workspace's shared block activations made; PPO's reward model adapter keeps its last products.
    public var updateBytes: Int {
        guard let rollouts else { return activationBytes + workspaceBytes }
        let reference = rollouts.stage == .grpo && rollouts.scoringRows > 0 ? sharedBlockActivationFloats(rows: rows) : 0
        return activationBytes + workspaceBytes + (reference + rewardModelProductFloats) * 4
    }

    /// The most an RL stage's passes between updates hold (0 for other methods), with what the previous update left:
    /// its activations (`Trainer` keeps them for the next step), the gradient workspace and the LM head's chunk.
    /// The largest of: the prefill of every sequence into the KV cache (with its last logits); a reference or value
    /// pass over `scoringRows` whole sequences, each in a cache of its own; PPO's reward model pass.
    public var rolloutBytes: Int {
        guard let rollouts else { return 0 }
        let kept = activationBytes / 4 + gradientWorkspaceFloats + lmHeadChunkFloats + rewardModelProductFloats
        let capacity = rollouts.promptLength + rollouts.newTokens
        // The policy's adapters replace the products the update left with the prefill's.
        let prefill = cacheFloats(sequences: rollouts.sequences, capacity: capacity)
            + passFloats(sequences: rollouts.sequences, length: rollouts.promptLength, products: lora)
            - projectedFloats(rows: rows, lora)
            + rollouts.sequences * config.vocabularySize
        // The reference pass runs the start adapter's frozen copy, or no adapter at all; PPO's value pass the policy.
        let scoringAdapter = rollouts.startsFromAdapter || rollouts.stage == .ppo ? lora : nil
        let scoring = rollouts.scoringRows == 0 ? 0
            : cacheFloats(sequences: rollouts.scoringRows, capacity: capacity)
                + passFloats(sequences: rollouts.scoringRows, length: capacity, products: scoringAdapter)
        let rewardRows = min(Rollouts.rewardModelRows, rollouts.sequences)
        let reward = rollouts.rewardModel.map {
            cacheFloats(sequences: rewardRows, capacity: rollouts.rewardModelLength)
                + passFloats(sequences: rewardRows, length: rollouts.rewardModelLength, products: $0)
        } ?? 0
        return (kept + max(prefill, scoring, reward)) * 4
    }

    /// What a forward pass that saves nothing makes over `sequences` rows of `length` tokens: the forward workspace
    /// with its one shared set of block activations, the attention scores, and the running adapters' products.
    func passFloats(sequences: Int, length: Int, products adapters: LoRAConfiguration?) -> Int {
        let rows = sequences * length
        return forwardWorkspaceFloats(rows: rows) + sharedBlockActivationFloats(rows: rows)
            + GroupedQueryAttention.scoreCount(queryCount: length, firstQuerySlot: 0)
            + (adapters.map { projectedFloats(rows: rows, $0) } ?? 0)
    }

    /// A KV cache's keys and values.
    func cacheFloats(sequences: Int, capacity: Int) -> Int {
        2 * config.layerCount * sequences * capacity * config.kvHeadCount * config.headDim
    }

    /// dropout(x)·Aᵀ of every adapter of a configuration over `rows` tokens.
    func projectedFloats(rows: Int, _ adapters: LoRAConfiguration) -> Int {
        rows * adapters.rank * shapes(of: adapters).count * config.layerCount
    }

    /// PPO's reward model adapter keeps the products of its last pass (8 whole sequences) to the end of the run.
    var rewardModelProductFloats: Int {
        guard let rollouts, let rewardModel = rollouts.rewardModel else { return 0 }
        return projectedFloats(rows: min(Rollouts.rewardModelRows, rollouts.sequences) * rollouts.rewardModelLength, rewardModel)
    }

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

    /// (in, out) of the linears of one block, in block order.
    var blockLinearShapes: [(name: String, in: Int, out: Int)] {
        config.blockLinears.map { ($0.name, $0.inFeatures, $0.outFeatures) }
    }

    /// The block linears that get an adapter.
    var adapterShapes: [(name: String, in: Int, out: Int)] { shapes(of: lora) }

    /// The block linears a configuration's adapters go on.
    func shapes(of adapters: LoRAConfiguration) -> [(name: String, in: Int, out: Int)] {
        let targets = Set(adapters.targetModules(in: config.family))
        return blockLinearShapes.filter { targets.contains($0.name) }
    }

    /// Values of every adapter's A [rank, in] and B [out, rank] (zero for full fine-tuning).
    var adapterValues: Int {
        guard method != .full else { return 0 }
        return adapterValues(lora)
    }

    func adapterValues(_ adapters: LoRAConfiguration) -> Int {
        shapes(of: adapters).reduce(0) { $0 + adapters.rank * ($1.in + $1.out) } * config.layerCount
    }

    /// The score head's [1, hidden] (0 with the LM head).
    var scoreHeadValues: Int { head == .score ? config.hiddenSize : 0 }

    /// Element counts of the trainable tensors, one entry per tensor (the 8-bit optimizer's rule is per tensor).
    var trainableTensorSizes: [Int] {
        let c = config
        // A reward model's score head, or PPO's value head.
        let scoreHead = scoreHeadValues > 0 || rollouts?.stage == .ppo ? [c.hiddenSize] : []
        guard method == .full else {
            let perBlock = adapterShapes.flatMap { [lora.rank * $0.in, $0.out * lora.rank] }
            return Array((0..<c.layerCount).map { _ in perBlock }.joined()) + scoreHead
        }
        var perBlock = [c.hiddenSize, c.hiddenSize] + blockLinearShapes.map { $0.in * $0.out }
        if c.attentionBias { perBlock += blockLinearShapes.prefix(3).map(\.out) }
        if c.qkNorm { perBlock += [c.headDim, c.headDim] }
        if c.sandwichNorms { perBlock += [c.hiddenSize, c.hiddenSize] }
        var sizes = [c.vocabularySize * c.hiddenSize, c.hiddenSize]
        if !c.tieWordEmbeddings { sizes.append(c.vocabularySize * c.hiddenSize) }
        return sizes + Array((0..<c.layerCount).map { _ in perBlock }.joined()) + scoreHead
    }

    /// What each block keeps of `BlockActivations`: middle, queries, attention, gate, up, and the optional stages'.
    var keptBlockActivationFloats: Int {
        let c = config, q = c.headCount * c.headDim
        return rows * (c.hiddenSize + 2 * q + 2 * c.intermediateSize + optionalStageFloats(gradients: false))
    }

    /// Per row, what the optional stages keep: q and k before their norms, the attention's and the MLP's outputs
    /// before sandwich post-norms; or (`gradients`) what their gradient workspace takes, one output's gradient.
    func optionalStageFloats(gradients: Bool) -> Int {
        let c = config
        return (c.qkNorm ? (c.headCount + c.kvHeadCount) * c.headDim : 0) + (c.sandwichNorms ? (gradients ? 1 : 2) * c.hiddenSize : 0)
    }

    /// What all blocks share and the backward pass recomputes: the two normalised inputs and silu(gate)·up.
    var recomputedBlockActivationFloats: Int { rows * (2 * config.hiddenSize + config.intermediateSize) }

    /// One whole set of `BlockActivations` over `rows` tokens: what a forward pass that saves nothing reuses for every block.
    func sharedBlockActivationFloats(rows: Int) -> Int {
        let c = config, q = c.headCount * c.headDim
        return rows * (3 * c.hiddenSize + 2 * q + 3 * c.intermediateSize + optionalStageFloats(gradients: false))
    }
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
    public static func estimate(for files: ModelFiles, config: DecoderConfiguration) throws -> RuntimeBaseline {
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
