import Foundation
import LatheModels
import LatheTensors

/// The memory `lathe serve` (and `lathe generate --input`) holds, term by term: the weights as loaded, the adapters,
/// the batch decoder's KV cache (every slot's whole context, allocated once), and the forward workspaces of the largest
/// prefill pass and of a decode step over every slot — both alive for a moment when one replaces the other — with the
/// runtime. It grows with `slots × contextPerSlot`, never with the number of requests served.
public struct ServingPlan: Sendable {
    public var config: DecoderConfiguration
    /// Bytes of the weights in the format they are loaded in (the file's own blocks, float32, bf16, NF4).
    public var weightBytes: Int
    public var slots: Int
    public var contextPerSlot: Int
    /// The adapters loaded beside the base.
    public var adapters: [LoRAConfiguration]
    /// Tokens of one prefill pass at most (`BatchDecoder.prefillTokenBudget`); one prompt longer than it is one pass.
    public var prefillTokenBudget: Int
    public var runtime: RuntimeBaseline

    public init(config: DecoderConfiguration, weightBytes: Int, slots: Int, contextPerSlot: Int,
                adapters: [LoRAConfiguration] = [], prefillTokenBudget: Int, runtime: RuntimeBaseline = .none) {
        self.config = config; self.weightBytes = weightBytes; self.slots = slots; self.contextPerSlot = contextPerSlot
        self.adapters = adapters; self.prefillTokenBudget = prefillTokenBudget; self.runtime = runtime
    }

    /// The training planner's formulas for the passes and caches of this model (its method and batch play no part).
    private var shapes: MemoryPlan { MemoryPlan(config: config, method: .lora, batchSize: 1, length: 1) }

    public var adapterBytes: Int { adapters.reduce(0) { $0 + shapes.adapterValues($1) } * 4 }

    public var cacheBytes: Int { shapes.cacheFloats(sequences: slots, capacity: contextPerSlot) * 4 }

    /// The largest prefill pass: as many whole-context prompts as the budget and the slots hold (at least one), their last logits,
    /// and each adapter's products over those rows (an adapter keeps its last products).
    public var prefillBytes: Int {
        let sequences = min(slots, max(1, prefillTokenBudget / contextPerSlot))
        return passBytes(sequences: sequences, length: contextPerSlot)
    }

    /// One decode step: a token for every slot, and every slot's logits.
    public var decodeBytes: Int { passBytes(sequences: slots, length: 1) }

    private func passBytes(sequences: Int, length: Int) -> Int {
        let products = adapters.reduce(0) { $0 + shapes.projectedFloats(rows: sequences * length, $1) }
        return (shapes.passFloats(sequences: sequences, length: length, products: nil) + products
                + sequences * config.vocabularySize) * 4
    }

    /// The tile a compact weight expands into for products over many rows (prefill).
    public var compactScratchBytes: Int { CompactWeightTiles.floatsPerTile * 4 }

    /// Serving once loaded: the runtime, the weights, the adapters, the caches and the passes.
    public var servingBytes: Int {
        runtime.totalBytes + weightBytes + adapterBytes + cacheBytes + prefillBytes + decodeBytes + compactScratchBytes
    }

    /// The load's peak: the mapped file's pages are resident while the weights are read from them, and the
    /// tokenizer is built beside the weights (as `MemoryPlan.loadingBytes` counts them).
    public var loadingBytes: Int {
        let weightsRead = runtime.processBytes + runtime.modelFileBytes + weightBytes
        let tokenizerBuilt = runtime.processBytes + weightBytes + runtime.tokenizerBytes + runtime.tokenizerLoadingBytes
        return max(weightsRead, tokenizerBuilt)
    }

    public var totalBytes: Int { max(servingBytes, loadingBytes) }

    /// Bytes of a model's weights loaded for inference in `format`: as stored, the file's own tensors (quantized
    /// blocks as they are, the rest float32); otherwise as the training planner counts a frozen base.
    public static func weightBytes(files: ModelFiles, config: DecoderConfiguration, format: WeightFormat) -> Int {
        format == .stored ? files.storedWeightBytes(config: config) : weightBytes(config: config, format: format)
    }

    /// Bytes of a model's weights loaded for inference in `format`, counted as the training planner counts a frozen
    /// base: float32, or the block linears compact (bf16 also the embedding and an untied head).
    public static func weightBytes(config: DecoderConfiguration, format: WeightFormat) -> Int {
        let noAdapters = LoRAConfiguration(rank: 1, alpha: 1, targets: [])
        return MemoryPlan(config: config, method: format == .nf4 ? .qlora : .lora, batchSize: 1, length: 1, lora: noAdapters,
                          baseBytesPerValue: format.bitsPerValue / 8, compactBaseMultipliesNatively: false).modelWeightBytes
    }
}
