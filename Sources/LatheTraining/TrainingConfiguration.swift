import Foundation
import LatheData
import LatheModels
import LatheTensors
import Yams

/// Everything a fine-tuning run needs, as the YAML file a user writes (snake_case keys, every key optional):
/// defaults, overridden by the file, overridden by flags; the resolved configuration is written into the run folder.
public struct TrainingConfiguration: Codable, Equatable, Sendable {
    public enum Method: String, Codable, Sendable, CaseIterable { case lora, full }

    public var model = ModelLocator.defaultModelName
    public var data: String?
    public var valid: String?
    public var output: String?
    public var method = Method.lora
    public var lora = LoRAConfiguration()
    public var sft = SFTOptions.trainingDefault
    /// The preference objective (set by `lathe dpo|orpo|simpo|kto`); nil: supervised fine-tuning.
    public var objective: PreferenceMethod?
    public var preference = PreferenceOptions()
    /// The RLHF stage (set by `lathe reward|ppo|grpo`); nil: SFT or a preference objective.
    public var rl: RLMethod?
    public var grpo = GRPOOptions()
    public var reward = RewardOptions()
    public var ppo = PPOOptions()
    /// A PEFT adapter to start from (an SFT adapter): it is trained further, and a frozen copy is the reference.
    public var adapter: String?
    public var epochs = 1
    /// Trains exactly this many optimizer steps, whatever `epochs` says (as transformers' max_steps).
    public var maxSteps: Int?
    public var batchSize = 4
    /// Micro-batches per optimizer step; the loss is weighted by supervised tokens across them.
    public var gradientAccumulation = 1
    public var learningRate = 2e-4
    public var schedule = LearningRateSchedule.Kind.cosine
    public var warmupSteps = 0
    public var optimizer = OptimizerConfiguration(kind: .adamw)
    /// Clip the global gradient norm to this (nil: no clipping).
    public var maxGradNorm: Float? = 1
    public var seed: UInt64 = 0
    /// Validation loss every N steps (0: only before and after training).
    public var evalEvery = 0
    /// A checkpoint every N steps (0: none until the end).
    public var saveEvery = 0
    /// Recompute each block's activations in the backward pass instead of keeping them (long sequences).
    public var gradientCheckpointing = false
    /// How the products see the weights: auto (bf16 where the CPU multiplies it natively), f32, bf16 (LoRA: the
    /// frozen base held in bf16; full fine-tuning: bf16 copies of float32 master weights).
    public var dtype = "auto"
    /// Quantize the frozen base (nf4: QLoRA); nil keeps it in `dtype`.
    public var quantize: String?
    /// Pretraining only: the shape of the new model, and the folder whose tokenizer.json it uses.
    public var architecture: ModelArchitecture?
    public var tokenizer: String?
    /// Compute threads: auto (every core unless they measure slower than one thread at start) or a count.
    public var threads = ThreadSetting.auto
    /// Where the run's metrics go besides metrics.jsonl: TensorBoard event files in OUTPUT/tb, or nowhere.
    public var reportTo = ReportTarget.tensorboard

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case model, data, valid, output, method, lora, sft, epochs, seed, schedule, optimizer, objective, preference, adapter, rl, grpo, reward, ppo
        case maxSteps = "max_steps", batchSize = "batch_size", gradientAccumulation = "gradient_accumulation"
        case learningRate = "learning_rate", warmupSteps = "warmup_steps", maxGradNorm = "max_grad_norm"
        case evalEvery = "eval_every", saveEvery = "save_every", architecture, tokenizer
        case gradientCheckpointing = "gradient_checkpointing", dtype, quantize, threads, reportTo = "report_to"
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = TrainingConfiguration()
        model = try c.decodeIfPresent(String.self, forKey: .model) ?? d.model
        data = try c.decodeIfPresent(String.self, forKey: .data)
        valid = try c.decodeIfPresent(String.self, forKey: .valid)
        output = try c.decodeIfPresent(String.self, forKey: .output)
        method = try c.decodeIfPresent(Method.self, forKey: .method) ?? d.method
        lora = try c.decodeIfPresent(LoRAConfiguration.self, forKey: .lora) ?? d.lora
        sft = try c.decodeIfPresent(SFTOptions.self, forKey: .sft) ?? d.sft
        objective = try c.decodeIfPresent(PreferenceMethod.self, forKey: .objective)
        preference = try c.decodeIfPresent(PreferenceOptions.self, forKey: .preference) ?? d.preference
        adapter = try c.decodeIfPresent(String.self, forKey: .adapter)
        rl = try c.decodeIfPresent(RLMethod.self, forKey: .rl)
        grpo = try c.decodeIfPresent(GRPOOptions.self, forKey: .grpo) ?? d.grpo
        reward = try c.decodeIfPresent(RewardOptions.self, forKey: .reward) ?? d.reward
        ppo = try c.decodeIfPresent(PPOOptions.self, forKey: .ppo) ?? d.ppo
        epochs = try c.decodeIfPresent(Int.self, forKey: .epochs) ?? d.epochs
        maxSteps = try c.decodeIfPresent(Int.self, forKey: .maxSteps)
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
        gradientAccumulation = try c.decodeIfPresent(Int.self, forKey: .gradientAccumulation) ?? d.gradientAccumulation
        learningRate = try c.decodeIfPresent(Double.self, forKey: .learningRate) ?? d.learningRate
        schedule = try c.decodeIfPresent(LearningRateSchedule.Kind.self, forKey: .schedule) ?? d.schedule
        warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? d.warmupSteps
        optimizer = try c.decodeIfPresent(OptimizerConfiguration.self, forKey: .optimizer) ?? d.optimizer
        maxGradNorm = c.contains(.maxGradNorm) ? try c.decodeIfPresent(Float.self, forKey: .maxGradNorm) : d.maxGradNorm
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
        evalEvery = try c.decodeIfPresent(Int.self, forKey: .evalEvery) ?? d.evalEvery
        saveEvery = try c.decodeIfPresent(Int.self, forKey: .saveEvery) ?? d.saveEvery
        gradientCheckpointing = try c.decodeIfPresent(Bool.self, forKey: .gradientCheckpointing) ?? d.gradientCheckpointing
        dtype = try c.decodeIfPresent(String.self, forKey: .dtype) ?? d.dtype
        quantize = try c.decodeIfPresent(String.self, forKey: .quantize)
        architecture = try c.decodeIfPresent(ModelArchitecture.self, forKey: .architecture)
        tokenizer = try c.decodeIfPresent(String.self, forKey: .tokenizer)
        threads = try c.decodeIfPresent(ThreadSetting.self, forKey: .threads) ?? d.threads
        reportTo = try c.decodeIfPresent(ReportTarget.self, forKey: .reportTo) ?? d.reportTo
    }

    /// Reads a YAML configuration; an error names the file and the key that is wrong.
    public static func load(yaml url: URL) throws -> TrainingConfiguration {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw TrainingError("\(url.path): cannot read the configuration (\(error.localizedDescription))")
        }
        do {
            if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return TrainingConfiguration() }
            return try YAMLDecoder().decode(TrainingConfiguration.self, from: text)
        } catch let error as DecodingError {
            throw TrainingError("\(url.path): \(Self.describe(error))")
        } catch {
            throw TrainingError("\(url.path): \(error)")
        }
    }

    public func yaml() throws -> String { try YAMLEncoder().encode(self) }

    /// Checks the values before a run starts, naming the key.
    public func validate() throws {
        guard data != nil else { throw TrainingError("no training data: give --data FILE or `data:` in the configuration") }
        guard output != nil else { throw TrainingError("no output folder: give --output DIR or `output:` in the configuration") }
        guard epochs >= 1 else { throw TrainingError("epochs must be at least 1, got \(epochs)") }
        guard batchSize >= 1 else { throw TrainingError("batch_size must be at least 1, got \(batchSize)") }
        guard gradientAccumulation >= 1 else { throw TrainingError("gradient_accumulation must be at least 1, got \(gradientAccumulation)") }
        guard learningRate > 0 else { throw TrainingError("learning_rate must be positive, got \(learningRate)") }
        guard warmupSteps >= 0 else { throw TrainingError("warmup_steps must not be negative, got \(warmupSteps)") }
        if let maxSteps, maxSteps < 1 { throw TrainingError("max_steps must be at least 1, got \(maxSteps)") }
        if let maxGradNorm, !(maxGradNorm > 0) { throw TrainingError("max_grad_norm must be positive, got \(maxGradNorm)") }
        guard evalEvery >= 0, saveEvery >= 0 else { throw TrainingError("eval_every and save_every must not be negative") }
        if method == .lora { try lora.validate() }
        if objective != nil { try preference.validate() }
        if rl == .grpo { try grpo.validate(generationBatch: batchSize * gradientAccumulation) }
        if rl == .reward {
            try reward.validate()
            // The result is a PEFT adapter carrying the head; a full model export would leave the head out.
            guard method == .lora else { throw TrainingError("rl: reward trains a LoRA adapter and its score head: method lora") }
        }
        if rl == .ppo { try ppo.validate() }
        if adapter != nil, method == .full { throw TrainingError("adapter: an adapter to start from needs method lora") }
        _ = try weightFormat()
        try sft.validate()
    }

    /// The format of the products: the frozen base's for LoRA, the compact copies of the float32 master weights
    /// for full fine-tuning.
    public func weightFormat() throws -> WeightFormat {
        try WeightFormat.choose(dtype: dtype, quantize: quantize, use: trainsEveryWeight ? .masterWeights : .frozenBase)
    }

    /// The format the model is loaded in: float32 when every weight trains (its copies come after loading).
    public func loadingFormat() throws -> WeightFormat { trainsEveryWeight ? .float32 : try weightFormat() }

    var trainsEveryWeight: Bool { method == .full || architecture != nil }

    /// Whether the method compares the policy with a reference (DPO, KTO, PPO, GRPO with beta > 0): only then does
    /// training from an adapter keep a frozen copy of it.
    var usesReference: Bool {
        switch rl {
        case .reward?: return false
        case .ppo?: return true
        case .grpo?: return grpo.beta != 0
        case nil: return objective?.needsReference ?? false
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "key '\(path(context))': \(context.debugDescription)"
        case .keyNotFound(let key, let context):
            return "missing key '\(path(context)).\(key.stringValue)'"
        case .dataCorrupted(let context):
            return "key '\(path(context))': \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

/// `report_to:` (as in transformers): a dashboard's files written beside metrics.jsonl, or none.
public enum ReportTarget: String, Codable, Sendable, CaseIterable { case tensorboard, none }

/// The stages of RLHF: a reward model on preference pairs, PPO against it, GRPO with rule rewards.
public enum RLMethod: String, Codable, Sendable, CaseIterable { case reward, ppo, grpo }

/// The shape of a new llama-family model for `lathe pretrain` (the vocabulary size comes from the tokenizer).
public struct ModelArchitecture: Codable, Equatable, Sendable {
    public var hiddenSize = 256
    public var intermediateSize = 768
    public var layers = 4
    public var heads = 4
    public var kvHeads = 2
    public var maxPositions = 512
    public var ropeTheta = 10000.0
    public var tieEmbeddings = true

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case layers, heads
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size", kvHeads = "kv_heads"
        case maxPositions = "max_positions", ropeTheta = "rope_theta", tieEmbeddings = "tie_embeddings"
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ModelArchitecture()
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? d.intermediateSize
        layers = try c.decodeIfPresent(Int.self, forKey: .layers) ?? d.layers
        heads = try c.decodeIfPresent(Int.self, forKey: .heads) ?? d.heads
        kvHeads = try c.decodeIfPresent(Int.self, forKey: .kvHeads) ?? d.kvHeads
        maxPositions = try c.decodeIfPresent(Int.self, forKey: .maxPositions) ?? d.maxPositions
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? d.ropeTheta
        tieEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieEmbeddings) ?? d.tieEmbeddings
    }

    /// The full configuration for a vocabulary of `vocabularySize` tokens, validated.
    public func configuration(vocabularySize: Int) throws -> DecoderConfiguration {
        guard heads > 0, hiddenSize % heads == 0 else {
            throw TrainingError("architecture.hidden_size (\(hiddenSize)) must be a multiple of architecture.heads (\(heads))")
        }
        let config = DecoderConfiguration(vocabularySize: vocabularySize, hiddenSize: hiddenSize, intermediateSize: intermediateSize,
                                        layerCount: layers, headCount: heads, kvHeadCount: kvHeads, rmsNormEpsilon: 1e-5,
                                        ropeTheta: ropeTheta, tieWordEmbeddings: tieEmbeddings, maxPositions: maxPositions)
        do { try config.validate(source: "architecture") } catch { throw TrainingError("\(error)") }
        return config
    }
}

/// A problem with a training run, worded for the user.
public struct TrainingError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension SFTOptions {
    /// 512-token examples, loss on completions: what a run uses when its configuration says nothing.
    static let trainingDefault: SFTOptions = {
        do { return try SFTOptions(maxLength: 512) } catch { preconditionFailure("the default SFT options are valid: \(error)") }
    }()
}
