import Foundation
import LatheFormats
import LatheTensors

/// Which positions of a forward pass produce logits.
public enum LogitsSelection: Sendable {
    /// Every position: [batch · length, vocabulary] (scoring; training uses `loss`, which never builds them).
    case all
    /// The last position of each row: [batch, vocabulary] (generation).
    case last
}

/// The activations of one block over `rows` tokens: what the forward pass computes and the backward pass reads.
/// Inference reuses one set for every block; training keeps one per block, except for the activations that the
/// backward pass recomputes with a row kernel (no matrix product), which all blocks share.
final class BlockActivations {
    let rows: Int
    /// The residual stream after attention.
    let middle: Tensor
    /// Rotated queries; attention outputs before the output projection.
    let queries, attention: Tensor
    /// MLP gate and up projections.
    let gate, up: Tensor
    /// q and k as projected, before the per-head norms (with `qkNorm`; the norms' backward reads them).
    let projectedQueries, projectedKeys: Tensor?
    /// The two normalised inputs and silu(gate)·up: shared between training's blocks and recomputed by the
    /// backward pass from `inputs`, `middle`, `gate` and `up` (a third of a block's activations, for two RMSNorms
    /// and one SwiGLU per block).
    let attentionNormed, mlpNormed, activated: Tensor
    /// With sandwich norms: the attention's and the MLP's outputs before their norms.
    let attentionOutput, mlpOutput: Tensor?

    init(config c: DecoderConfiguration, rows: Int, sharingRecomputedWith other: BlockActivations? = nil) {
        self.rows = rows
        attentionOutput = c.sandwichNorms ? Tensor(zeros: [rows, c.hiddenSize]) : nil
        mlpOutput = c.sandwichNorms ? Tensor(zeros: [rows, c.hiddenSize]) : nil
        middle = Tensor(zeros: [rows, c.hiddenSize])
        queries = Tensor(zeros: [rows, c.headCount * c.headDim])
        attention = Tensor(zeros: [rows, c.headCount * c.headDim])
        gate = Tensor(zeros: [rows, c.intermediateSize])
        up = Tensor(zeros: [rows, c.intermediateSize])
        projectedQueries = c.qkNorm ? Tensor(zeros: [rows, c.headCount * c.headDim]) : nil
        projectedKeys = c.qkNorm ? Tensor(zeros: [rows, c.kvHeadCount * c.headDim]) : nil
        attentionNormed = other?.attentionNormed ?? Tensor(zeros: [rows, c.hiddenSize])
        mlpNormed = other?.mlpNormed ?? Tensor(zeros: [rows, c.hiddenSize])
        activated = other?.activated ?? Tensor(zeros: [rows, c.intermediateSize])
    }
}

/// Buffers of one forward pass over `rows` tokens, sized once from the batch shape and reused between calls of
/// the same shape (generation steps), so decoding allocates nothing per token.
final class ForwardWorkspace {
    let rows: Int
    let hidden, projected, keys, values, finalNormed: Tensor
    /// The output of a fused linear (qkv_proj, gate_up_proj) before the block splits it; nil without one.
    let fused: Tensor?
    /// The one set of block activations inference reuses for every block; training keeps its own and never
    /// makes this one.
    lazy var shared = BlockActivations(config: config, rows: rows)
    let scores = ScratchBuffer()
    private let config: DecoderConfiguration

    init(config c: DecoderConfiguration, rows: Int) {
        self.rows = rows
        config = c
        hidden = Tensor(zeros: [rows, c.hiddenSize])
        projected = Tensor(zeros: [rows, c.hiddenSize])
        keys = Tensor(zeros: [rows, c.kvHeadCount * c.headDim])
        values = Tensor(zeros: [rows, c.kvHeadCount * c.headDim])
        finalNormed = Tensor(zeros: [rows, c.hiddenSize])
        fused = c.fusedWidth.map { Tensor(zeros: [rows, $0]) }
    }
}

/// Everything a training forward pass keeps for its backward pass: each block's input, its other activations
/// (or, with gradient checkpointing, one set that the backward pass recomputes block by block), the keys and
/// values (in a cache of the batch's own length), the rotary angles and the masks.
public final class TrainingActivations {
    public let batchSize: Int
    public let length: Int
    public let checkpointing: Bool
    /// The residual stream entering each block.
    let inputs: [Tensor]
    /// One per block, or a single shared one with checkpointing.
    let blocks: [BlockActivations]
    let cache: KVCache
    var finalInput: Tensor
    var angles = RotaryAngles(), localAngles: RotaryAngles?
    var valid: [Bool]?
    var segments: [Int32]?
    var tokens: [Int]?
    /// d(loss)/d(normalised final hidden states), [rows, hidden]: what the chunked LM head and cross-entropy hand
    /// to the backward pass instead of [rows × vocabulary] logits.
    let dFinalNormed: Tensor

    func activations(ofBlock layer: Int) -> BlockActivations { blocks[checkpointing ? 0 : layer] }

    /// - Parameter checkpointing: keep only each block's input and recompute the rest during the backward pass:
    ///   about a third more compute for a fraction of the activation memory (long sequences).
    public init(config: DecoderConfiguration, batchSize: Int, length: Int, checkpointing: Bool = false) {
        self.batchSize = batchSize
        self.length = length
        self.checkpointing = checkpointing
        inputs = (0..<config.layerCount).map { _ in Tensor(zeros: [batchSize * length, config.hiddenSize]) }
        let first = BlockActivations(config: config, rows: batchSize * length)
        blocks = [first] + (1..<(checkpointing ? 1 : config.layerCount)).map { _ in
            BlockActivations(config: config, rows: batchSize * length, sharingRecomputedWith: first)
        }
        cache = KVCache(config: config, batchSize: batchSize, capacity: length)
        finalInput = Tensor(zeros: [batchSize * length, config.hiddenSize])
        dFinalNormed = Tensor(zeros: [batchSize * length, config.hiddenSize])
    }
}

extension DecoderModel {
    /// The embedding and every block: leaves the final hidden states in the returned workspace's `hidden`.
    private func runBlocks(tokens: [Int], batchSize: Int, positions: [Int]?, valid: [Bool]?, segments: [Int]?,
                           cache: KVCache?, slots: [Int]? = nil,
                           saving: TrainingActivations?) throws -> (workspace: ForwardWorkspace, length: Int) {
        let c = config
        guard batchSize > 0, tokens.count % batchSize == 0, !tokens.isEmpty else {
            throw ModelError.invalidInput("\(tokens.count) tokens cannot form \(batchSize) equal rows")
        }
        let length = tokens.count / batchSize
        if let bad = tokens.first(where: { $0 < 0 || $0 >= c.vocabularySize }) {
            throw ModelError.invalidInput("token id \(bad) is outside the vocabulary (0..<\(c.vocabularySize))")
        }
        for (name, count) in [("positions", positions?.count), ("valid", valid?.count), ("segments", segments?.count)] {
            if let count, count != tokens.count {
                throw ModelError.invalidInput("\(count) \(name) for \(tokens.count) tokens")
            }
        }
        if let saving {
            guard cache == nil, saving.batchSize == batchSize, saving.length == length else {
                throw ModelError.invalidInput("training activations are for \(saving.batchSize)×\(saving.length) tokens with no cache")
            }
            saving.cache.reset()
        }
        let cache = saving?.cache ?? cache ?? KVCache(config: c, batchSize: batchSize, capacity: length)
        if let slots {
            guard slots.count == batchSize, Set(slots).count == batchSize, slots.allSatisfy({ (0..<cache.batchSize).contains($0) }) else {
                throw ModelError.invalidInput("slots \(slots) must name \(batchSize) distinct rows of the KV cache (0..<\(cache.batchSize))")
            }
        } else if cache.batchSize != batchSize {
            throw ModelError.invalidInput("the KV cache has \(cache.batchSize) rows, the batch \(batchSize)")
        }
        let slots = slots ?? Array(0..<batchSize)
        let starts = slots.map { cache.lengths[$0] }
        if let full = slots.indices.first(where: { starts[$0] + length > cache.capacity }) {
            throw ModelError.invalidInput("the KV cache holds \(cache.capacity - starts[full]) more positions in slot \(slots[full]), \(length) were given")
        }
        let positions = positions ?? starts.flatMap { start in (0..<length).map { start + $0 } }
        let rows = tokens.count
        let w = workspace(rows: rows)
        let hiddenSize = c.hiddenSize

        for (r, token) in tokens.enumerated() {
            if let compactEmbedding {
                compactEmbedding.decompressRows(token..<token + 1, into: w.hidden.pointer + r * hiddenSize)
            } else {
                (w.hidden.pointer + r * hiddenSize).update(from: embedding.tensor.pointer + token * hiddenSize, count: hiddenSize)
            }
        }
        if let scale = c.embeddingScale { scaleInPlace(w.hidden.pointer, by: scale, count: rows * hiddenSize) }
        cache.reserve(count: length, slots: slots, valid: valid)
        let angles = RotaryAngles(rope, positions: positions), localAngles = localRope.map { RotaryAngles($0, positions: positions) }
        let segmentIDs = segments.map { $0.map { Int32(truncatingIfNeeded: $0) } }
        saving?.angles = angles; saving?.localAngles = localAngles; saving?.valid = valid; saving?.segments = segmentIDs
        let pass = BlockPass(batchSize: batchSize, length: length, slots: slots, starts: starts, angles: angles,
                             localAngles: localAngles, segments: segmentIDs, cache: cache, workspace: w)
        for layer in blocks.indices {
            if let saving { saving.inputs[layer].pointer.update(from: w.hidden.pointer, count: rows * hiddenSize) }
            forwardBlock(layer, activations: saving?.activations(ofBlock: layer) ?? w.shared, pass: pass)
        }
        cache.advance(slots: slots, by: length)
        if let saving {
            saving.finalInput.pointer.update(from: w.hidden.pointer, count: rows * hiddenSize)
            saving.tokens = tokens
        }
        return (w, length)
    }

    /// Runs the model over a batch of `batchSize` rows of `tokens.count / batchSize` tokens each.
    ///
    /// - Parameters:
    ///   - positions: the rotary position of each token; by default each row counts on from the cache length.
    ///   - valid: false for padding tokens, which no query attends to; nil when there is no padding.
    ///   - segments: for packed rows, the example each token belongs to; attention stays within an example.
    ///   - cache: past keys and values; the new ones are appended. Without a cache the batch stands alone.
    ///   - slots: the cache row of each batch row (a batch decoder's slots): row b appends at its slot's own length
    ///     and attends to that slot alone. nil: row b is cache row b, and the batch fills the whole cache.
    /// - Returns: logits, [batch · length, vocabulary] or [batch, vocabulary] for `.last`.
    public func forward(tokens: [Int], batchSize: Int = 1, positions: [Int]? = nil, valid: [Bool]? = nil,
                        segments: [Int]? = nil, cache: KVCache? = nil, slots: [Int]? = nil,
                        logits selection: LogitsSelection = .all) throws -> Tensor {
        let (w, length) = try runBlocks(tokens: tokens, batchSize: batchSize, positions: positions, valid: valid,
                                        segments: segments, cache: cache, slots: slots, saving: nil)
        let c = config, hiddenSize = c.hiddenSize, rows = tokens.count
        // Final norm and LM head, only on the rows whose logits are wanted.
        let selected = selection == .all ? Array(0..<rows) : (0..<batchSize).map { $0 * length + length - 1 }
        for (i, r) in selected.enumerated() {
            RMSNorm.forward(out: w.finalNormed.pointer + i * hiddenSize, input: w.hidden.pointer + r * hiddenSize,
                            weight: finalNorm.tensor.pointer, rows: 1, dim: hiddenSize, eps: c.rmsNormEpsilon,
                            weightOffset: c.normWeightOffset)
        }
        let result = Tensor(zeros: [selected.count, c.vocabularySize])
        if let lmHead {
            lmHead.forward(output: result.pointer, input: w.finalNormed.pointer, rows: selected.count)
        } else if let compactEmbedding {
            compactEmbedding.multiplyTransposed(w.finalNormed.pointer, rows: selected.count, into: result.pointer, accumulate: false)
        } else {
            MatMul.multiply(w.finalNormed.pointer, embedding.tensor.pointer, into: result.pointer,
                            m: selected.count, n: c.vocabularySize, k: hiddenSize, transposeB: true)
        }
        return result
    }


    /// The summed cross-entropy of predicting `targets` (−1: ignored) and how many counted, with the LM head and the
    /// loss fused in chunks so that [tokens × vocabulary] logits never exist whole; rows without a target cost no
    /// head work. With `saving`, the gradient of `scale`·loss is prepared for `backward(activations:)` and the
    /// head's own weight gradient is added.
    public func loss(tokens: [Int], batchSize: Int = 1, positions: [Int]? = nil, valid: [Bool]? = nil, segments: [Int]? = nil,
                     targets: [Int], scale: Float = 0, saving: TrainingActivations? = nil) throws -> (loss: Double, count: Int) {
        try checkTargets(targets, tokens: tokens)
        let (w, _) = try runBlocks(tokens: tokens, batchSize: batchSize, positions: positions, valid: valid,
                                   segments: segments, cache: nil, saving: saving)
        return head(hidden: w.hidden.pointer, normed: w.finalNormed.pointer, targets: targets, scale: scale, rowScales: nil,
                    rowLosses: nil, temperature: 1, saving: saving)
    }

    /// log p(target) at every position (0 where the target is ignored): what preference objectives are functions of.
    /// `temperature` divides the logits first (the distribution rollouts were sampled from, as TRL scores them).
    /// With `saving`, the activations are kept for `backward(activations:targets:logProbabilityGradient:)`.
    public func targetLogProbabilities(tokens: [Int], batchSize: Int = 1, positions: [Int]? = nil, valid: [Bool]? = nil,
                                       segments: [Int]? = nil, targets: [Int], temperature: Float = 1,
                                       saving: TrainingActivations? = nil) throws -> [Float] {
        try checkTargets(targets, tokens: tokens)
        guard temperature > 0 else { throw ModelError.invalidInput("temperature must be > 0 to score tokens, got \(temperature)") }
        let (w, _) = try runBlocks(tokens: tokens, batchSize: batchSize, positions: positions, valid: valid,
                                   segments: segments, cache: nil, saving: saving)
        var losses = [Float](repeating: 0, count: tokens.count)
        losses.withUnsafeMutableBufferPointer { losses in
            _ = head(hidden: w.hidden.pointer, normed: w.finalNormed.pointer, targets: targets, scale: 0, rowScales: nil,
                     rowLosses: losses.baseAddress, temperature: temperature, saving: nil)
        }
        return losses.map { -$0 }
    }

    /// Adds the gradient of an objective into every trainable parameter, given d(objective)/d(log p(target)) at each
    /// position, after `targetLogProbabilities(saving: activations)` with the same temperature. The head runs again
    /// on the saved final hidden states (a third more head work than keeping the logits, which would take
    /// [tokens × vocabulary] floats). `finalHiddenGradient` ([rows, hidden]) is a second head's d(objective)/d(final
    /// normed hidden states), added to the LM head's: PPO's value head on the policy's states.
    public func backward(activations s: TrainingActivations, targets: [Int], logProbabilityGradient gradient: [Float],
                         temperature: Float = 1, finalHiddenGradient: Tensor? = nil) {
        let w = workspace(rows: s.batchSize * s.length)
        // d(−log p)/d(logits) times −g is d(objective)/d(logits).
        _ = head(hidden: s.finalInput.pointer, normed: w.finalNormed.pointer, targets: targets, scale: -1,
                 rowScales: gradient, rowLosses: nil, temperature: temperature, saving: s)
        if let finalHiddenGradient {
            precondition(finalHiddenGradient.count == s.dFinalNormed.count, "one hidden-state gradient per saved position")
            addInPlace(s.dFinalNormed.pointer, finalHiddenGradient.pointer, count: s.dFinalNormed.count)
        }
        backward(activations: s)
    }

    /// Adds the gradient of an objective of the final normed hidden states alone (a reward model's score head) into
    /// every trainable parameter, after `finalHiddenStates(saving: activations)`; no LM head work.
    public func backward(activations s: TrainingActivations, finalHiddenGradient: Tensor) {
        precondition(finalHiddenGradient.count == s.dFinalNormed.count, "one hidden-state gradient per saved position")
        s.dFinalNormed.pointer.update(from: finalHiddenGradient.pointer, count: s.dFinalNormed.count)
        backward(activations: s)
    }

    /// The final normalised hidden states, [batch · length, hidden] (transformers' `hidden_states[-1]`): what a score
    /// or value head reads. With `saving`, the activations are kept for `backward(activations:finalHiddenGradient:)`.
    public func finalHiddenStates(tokens: [Int], batchSize: Int = 1, positions: [Int]? = nil, valid: [Bool]? = nil,
                                  segments: [Int]? = nil, saving: TrainingActivations? = nil) throws -> Tensor {
        let (w, _) = try runBlocks(tokens: tokens, batchSize: batchSize, positions: positions, valid: valid,
                                   segments: segments, cache: nil, saving: saving)
        return normalizedFinalStates(w.hidden.pointer, rows: tokens.count)
    }

    /// The final normalised hidden states of the pass `activations` saved (one RMSNorm, no block runs again).
    public func finalHiddenStates(of activations: TrainingActivations) -> Tensor {
        normalizedFinalStates(activations.finalInput.pointer, rows: activations.batchSize * activations.length)
    }

    private func normalizedFinalStates(_ hidden: UnsafePointer<Float>, rows: Int) -> Tensor {
        let result = Tensor(zeros: [rows, config.hiddenSize])
        RMSNorm.forward(out: result.pointer, input: hidden, weight: finalNorm.tensor.pointer, rows: rows,
                        dim: config.hiddenSize, eps: config.rmsNormEpsilon, weightOffset: config.normWeightOffset)
        return result
    }

    private func checkTargets(_ targets: [Int], tokens: [Int]) throws {
        guard targets.count == tokens.count else {
            throw ModelError.invalidInput("\(targets.count) targets for \(tokens.count) tokens")
        }
        if let bad = targets.first(where: { $0 >= config.vocabularySize }) {
            throw ModelError.invalidInput("target \(bad) is outside the vocabulary (0..<\(config.vocabularySize))")
        }
    }

    /// The final norm, then the chunked LM head and cross-entropy; with `saving`, dFinalNormed and the head's weight
    /// gradient of Σ scale·rowScale·(−log p).
    private func head(hidden: UnsafePointer<Float>, normed: UnsafeMutablePointer<Float>, targets: [Int], scale: Float,
                      rowScales: [Float]?, rowLosses: UnsafeMutablePointer<Float>?, temperature: Float,
                      saving: TrainingActivations?) -> (loss: Double, count: Int) {
        let c = config, rows = targets.count
        RMSNorm.forward(out: normed, input: hidden, weight: finalNorm.tensor.pointer, rows: rows, dim: c.hiddenSize,
                        eps: c.rmsNormEpsilon, weightOffset: c.normWeightOffset)
        let head = lmHead?.weight ?? embedding
        let headWeight: ChunkedLMHeadLoss.Weight
        if let compact = lmHead.map(\.compactWeight) ?? compactEmbedding {
            headWeight = .compact(compact)
        } else {
            headWeight = .dense(head.tensor.pointer)
        }
        return ChunkedLMHeadLoss.lossAndGradient(
            hidden: normed, weight: headWeight, rows: rows, dim: c.hiddenSize,
            vocabularySize: c.vocabularySize, targets: targets, scale: scale, rowScales: rowScales, rowLosses: rowLosses,
            dHidden: saving?.dFinalNormed.pointer, dWeight: saving == nil ? nil : head.gradient?.pointer,
            temperature: temperature, workspace: headWorkspace)
    }

    /// Adds the gradient of the loss into every trainable parameter, after `loss(saving: activations)` (which
    /// already added the LM head's). The forward pass in reverse, line by line.
    public func backward(activations s: TrainingActivations) {
        let c = config
        let rows = s.batchSize * s.length, length = s.length
        let hiddenSize = c.hiddenSize
        let w = workspace(rows: rows)
        let g = gradientWorkspace(rows: rows)

        // finalNormed = norm(x); the head and the loss gave dFinalNormed
        g.residual.fill(0)
        RMSNorm.backward(dInput: g.residual.pointer, dWeight: finalNorm.gradient?.pointer, dOut: s.dFinalNormed.pointer,
                         input: s.finalInput.pointer, weight: finalNorm.tensor.pointer, rows: rows, dim: hiddenSize,
                         eps: c.rmsNormEpsilon, weightOffset: c.normWeightOffset)

        let pass = BlockPass(batchSize: s.batchSize, length: length, slots: Array(0..<s.batchSize),
                             starts: Array(repeating: 0, count: s.batchSize), angles: s.angles, localAngles: s.localAngles,
                             segments: s.segments, cache: s.cache, workspace: w)
        for (layer, block) in blocks.enumerated().reversed() {
            let a = s.activations(ofBlock: layer)
            if s.checkpointing {
                // Recompute this block's activations from its saved input (with the same dropout masks).
                w.hidden.pointer.update(from: s.inputs[layer].pointer, count: rows * hiddenSize)
                for adapter in block.linears.flatMap(\.adapters) { adapter.reusesDropoutMask = true }
                forwardBlock(layer, activations: a, pass: pass)
                for adapter in block.linears.flatMap(\.adapters) { adapter.reusesDropoutMask = false }
            }
            if !s.checkpointing {
                // The shared activations hold a later block's values: recompute this block's.
                c.gatedActivation.forward(out: a.activated.pointer, gate: a.gate.pointer, up: a.up.pointer,
                                          count: rows * c.intermediateSize)
                RMSNorm.forward(out: a.mlpNormed.pointer, input: a.middle.pointer, weight: block.mlpNorm.tensor.pointer,
                                rows: rows, dim: hiddenSize, eps: c.rmsNormEpsilon, weightOffset: c.normWeightOffset)
            }
            // x += down(activated), or with sandwich norms x += norm(down(activated))
            let dMLPOutput = postNormBackward(block.postFeedforwardNorm, output: a.mlpOutput, dResidual: g, rows: rows)
            block.down.backward(dInput: g.activated.pointer, dOutput: dMLPOutput, input: a.activated.pointer, rows: rows)
            // activated = act(gate) · up
            c.gatedActivation.backward(dGate: g.gate.pointer, dUp: g.up.pointer, dOut: g.activated.pointer,
                                       gate: a.gate.pointer, up: a.up.pointer, count: rows * c.intermediateSize)
            // gate, up = projections of mlpNormed
            block.projectGateUpBackward(dInput: g.normed.pointer, dGate: g.gate.pointer, dUp: g.up.pointer,
                                        input: a.mlpNormed.pointer, rows: rows, fused: g.fused)
            // mlpNormed = norm(middle); the residual carries dMiddle on
            RMSNorm.backward(dInput: g.residual.pointer, dWeight: block.mlpNorm.gradient?.pointer, dOut: g.normed.pointer,
                             input: a.middle.pointer, weight: block.mlpNorm.tensor.pointer, rows: rows, dim: hiddenSize,
                             eps: c.rmsNormEpsilon, weightOffset: c.normWeightOffset)
            // middle = input + o(attention), or with sandwich norms input + norm(o(attention))
            let dAttentionOutput = postNormBackward(block.postAttentionNorm, output: a.attentionOutput, dResidual: g, rows: rows)
            block.output.backward(dInput: g.attention.pointer, dOutput: dAttentionOutput, input: a.attention.pointer, rows: rows)
            // attention = softmax(q·kᵀ)·v, over this batch's keys and values (kept in the cache)
            g.keys.fill(0); g.values.fill(0)
            let keys = s.cache.keys[layer].pointer, values = s.cache.values[layer].pointer
            let count = GroupedQueryAttention.scoreCount(queryCount: length, firstQuerySlot: 0)
            let scores = w.scores.pointer(atLeast: count), dScores = g.scores.pointer(atLeast: count)
            withOptionalPointer(s.valid) { validPointer in
                withOptionalPointer(s.segments) { segmentPointer in
                    GroupedQueryAttention.backward(
                        dQueries: g.queries.pointer, dKeys: g.keys.pointer, dValues: g.values.pointer,
                        dOut: g.attention.pointer, queries: a.queries.pointer, keys: keys, values: values,
                        queryCount: length,
                        mask: .init(keyIsValid: validPointer, segments: segmentPointer, window: c.window(ofLayer: layer)),
                        heads: c.headCount, kvHeads: c.kvHeadCount, headDim: c.headDim, scale: c.attentionScale,
                        scores: scores, dScores: dScores, sequences: s.batchSize)
                }
            }
            // q, k = rope(·): rotate the gradients back
            rotate(queries: g.queries.pointer, keys: g.keys.pointer, rows: rows, layer: layer, pass: pass, inverse: true)
            if !s.checkpointing {
                RMSNorm.forward(out: a.attentionNormed.pointer, input: s.inputs[layer].pointer,
                                weight: block.attentionNorm.tensor.pointer, rows: rows, dim: hiddenSize, eps: c.rmsNormEpsilon,
                                weightOffset: c.normWeightOffset)
            }
            var dQueries = g.queries.pointer, dKeys = g.keys.pointer
            if let queryNorm = block.queryNorm, let keyNorm = block.keyNorm, let q = a.projectedQueries, let k = a.projectedKeys,
               let dq = g.projectedQueries, let dk = g.projectedKeys {
                // q, k = norm(each head of q), norm(each head of k)
                dq.fill(0); dk.fill(0)
                RMSNorm.backward(dInput: dq.pointer, dWeight: queryNorm.gradient?.pointer, dOut: g.queries.pointer, input: q.pointer,
                                 weight: queryNorm.tensor.pointer, rows: rows * c.headCount, dim: c.headDim, eps: c.rmsNormEpsilon,
                                 weightOffset: c.normWeightOffset)
                RMSNorm.backward(dInput: dk.pointer, dWeight: keyNorm.gradient?.pointer, dOut: g.keys.pointer, input: k.pointer,
                                 weight: keyNorm.tensor.pointer, rows: rows * c.kvHeadCount, dim: c.headDim, eps: c.rmsNormEpsilon,
                                 weightOffset: c.normWeightOffset)
                dQueries = dq.pointer; dKeys = dk.pointer
            }
            // q, k, v = projections of attentionNormed
            block.projectQKVBackward(dInput: g.normed.pointer, dQueries: dQueries, dKeys: dKeys, dValues: g.values.pointer,
                                     input: a.attentionNormed.pointer, rows: rows, fused: g.fused)
            // attentionNormed = norm(input); the residual carries dInput on
            RMSNorm.backward(dInput: g.residual.pointer, dWeight: block.attentionNorm.gradient?.pointer, dOut: g.normed.pointer,
                             input: s.inputs[layer].pointer, weight: block.attentionNorm.tensor.pointer, rows: rows, dim: hiddenSize,
                             eps: c.rmsNormEpsilon, weightOffset: c.normWeightOffset)
        }
        // input = embedding rows of the tokens (times embeddingScale; not the padding row: transformers' padding_idx)
        if let dE = embedding.gradient, let tokens = s.tokens {
            if let scale = c.embeddingScale { scaleInPlace(g.residual.pointer, by: scale, count: rows * hiddenSize) }
            for (r, token) in tokens.enumerated() where token != c.paddingTokenID {
                addInPlace(dE.pointer + token * hiddenSize, g.residual.pointer + r * hiddenSize, count: hiddenSize)
            }
        }
    }

    /// The backward pass of a sandwich block's post-norm `residual += norm(output)`: the gradient of `output`
    /// (in `g.projected`), or for a block without the norm the residual's own gradient (`residual += output`).
    private func postNormBackward(_ norm: Parameter?, output: Tensor?, dResidual g: GradientWorkspace, rows: Int) -> UnsafePointer<Float> {
        guard let norm, let output, let dOutput = g.projected else { return UnsafePointer(g.residual.pointer) }
        dOutput.fill(0)
        RMSNorm.backward(dInput: dOutput.pointer, dWeight: norm.gradient?.pointer, dOut: g.residual.pointer,
                         input: output.pointer, weight: norm.tensor.pointer, rows: rows, dim: config.hiddenSize,
                         eps: config.rmsNormEpsilon, weightOffset: config.normWeightOffset)
        return UnsafePointer(dOutput.pointer)
    }

    /// Rotates the queries and keys of layer `layer` by their positions' angles, or (`inverse`) their gradients back;
    /// the sliding layers use their own embedding when they have one.
    func rotate(queries: UnsafeMutablePointer<Float>, keys: UnsafeMutablePointer<Float>, rows: Int, layer: Int,
                pass p: BlockPass, inverse: Bool) {
        let c = config
        let local = config.window(ofLayer: layer) != nil ? localRope.flatMap { rope in p.localAngles.map { (rope, $0) } } : nil
        let (embedding, angles) = local ?? (rope, p.angles)
        angles.cosines.withUnsafeBufferPointer { cosTable in
            angles.sines.withUnsafeBufferPointer { sinTable in
                guard let cos = cosTable.baseAddress, let sin = sinTable.baseAddress else { return }
                if inverse {
                    embedding.applyInverse(queries, rows: rows, heads: c.headCount, cos: cos, sin: sin)
                    embedding.applyInverse(keys, rows: rows, heads: c.kvHeadCount, cos: cos, sin: sin)
                } else {
                    embedding.apply(queries, rows: rows, heads: c.headCount, cos: cos, sin: sin)
                    embedding.apply(keys, rows: rows, heads: c.kvHeadCount, cos: cos, sin: sin)
                }
            }
        }
    }

    private func workspace(rows: Int) -> ForwardWorkspace {
        if let w = cachedWorkspace, w.rows == rows { return w }
        let w = ForwardWorkspace(config: config, rows: rows)
        cachedWorkspace = w
        return w
    }

    private func gradientWorkspace(rows: Int) -> GradientWorkspace {
        if let g = cachedGradientWorkspace, g.rows == rows { return g }
        let g = GradientWorkspace(config: config, rows: rows)
        cachedGradientWorkspace = g
        return g
    }
}

/// What every block of one forward pass shares: the batch shape, where each row goes in the cache (its slot and the
/// position it starts at), the rotary angles, the masks and buffers.
struct BlockPass {
    let batchSize: Int, length: Int
    let slots: [Int], starts: [Int]
    /// The rotary angles of `rope`, and of `localRope` when the model has one.
    let angles: RotaryAngles, localAngles: RotaryAngles?
    let segments: [Int32]?
    let cache: KVCache
    let workspace: ForwardWorkspace
}

extension DecoderModel {
    /// One block over `pass.workspace.hidden`, in place: x += attention(x); x += mlp(x), keeping what the backward
    /// pass reads in `a`, and the block's keys and values in the cache.
    func forwardBlock(_ layer: Int, activations a: BlockActivations, pass p: BlockPass) {
        let c = config, block = blocks[layer], w = p.workspace, cache = p.cache
        let rows = p.batchSize * p.length, length = p.length
        let hiddenSize = c.hiddenSize, kvWidth = c.kvHeadCount * c.headDim
        // Attention: x += o(attention(rope(q(norm(x))), rope(k(norm(x))), v(norm(x))))
        RMSNorm.forward(out: a.attentionNormed.pointer, input: w.hidden.pointer, weight: block.attentionNorm.tensor.pointer,
                        rows: rows, dim: hiddenSize, eps: c.rmsNormEpsilon, weightOffset: c.normWeightOffset)
        block.projectQKV(queries: (a.projectedQueries ?? a.queries).pointer, keys: (a.projectedKeys ?? w.keys).pointer,
                         values: w.values.pointer, input: a.attentionNormed.pointer, rows: rows, fused: w.fused)
        if let queryNorm = block.queryNorm, let keyNorm = block.keyNorm, let q = a.projectedQueries, let k = a.projectedKeys {
            // q, k = norm(each head of q), norm(each head of k)
            RMSNorm.forward(out: a.queries.pointer, input: q.pointer, weight: queryNorm.tensor.pointer, rows: rows * c.headCount,
                            dim: c.headDim, eps: c.rmsNormEpsilon, weightOffset: c.normWeightOffset)
            RMSNorm.forward(out: w.keys.pointer, input: k.pointer, weight: keyNorm.tensor.pointer, rows: rows * c.kvHeadCount,
                            dim: c.headDim, eps: c.rmsNormEpsilon, weightOffset: c.normWeightOffset)
        }
        rotate(queries: a.queries.pointer, keys: w.keys.pointer, rows: rows, layer: layer, pass: p, inverse: false)
        let cachedKeys = cache.keys[layer].pointer, cachedValues = cache.values[layer].pointer
        for b in 0..<p.batchSize {
            let position = (p.slots[b] * cache.capacity + p.starts[b]) * kvWidth
            (cachedKeys + position).update(from: w.keys.pointer + b * length * kvWidth, count: length * kvWidth)
            (cachedValues + position).update(from: w.values.pointer + b * length * kvWidth, count: length * kvWidth)
        }
        let windows = (0..<p.batchSize).map {
            GroupedQueryAttention.KeyWindow(firstKeyRow: p.slots[$0] * cache.capacity, firstQuerySlot: p.starts[$0])
        }
        let scores = w.scores.pointer(atLeast: GroupedQueryAttention.scoreCount(queryCount: length,
                                                                                 firstQuerySlot: p.starts.max() ?? 0))
        cache.positionIsValid.withUnsafeBufferPointer { validity in
            withOptionalPointer(p.segments) { segmentPointer in
                GroupedQueryAttention.forward(
                    out: a.attention.pointer, queries: a.queries.pointer, keys: cachedKeys, values: cachedValues,
                    queryCount: length, windows: windows,
                    mask: .init(keyIsValid: validity.baseAddress, segments: segmentPointer, window: c.window(ofLayer: layer)),
                    heads: c.headCount, kvHeads: c.kvHeadCount, headDim: c.headDim, scale: c.attentionScale, scores: scores)
            }
        }
        let attentionOutput = a.attentionOutput ?? w.projected
        block.output.forward(output: attentionOutput.pointer, input: a.attention.pointer, rows: rows)
        postNorm(block.postAttentionNorm, output: attentionOutput, into: w.projected, rows: rows)
        addInPlace(w.hidden.pointer, w.projected.pointer, count: rows * hiddenSize)
        a.middle.pointer.update(from: w.hidden.pointer, count: rows * hiddenSize)

        // MLP: x += down(act(gate(norm(x))) · up(norm(x))), the sum normalised first with sandwich norms
        RMSNorm.forward(out: a.mlpNormed.pointer, input: w.hidden.pointer, weight: block.mlpNorm.tensor.pointer,
                        rows: rows, dim: hiddenSize, eps: c.rmsNormEpsilon, weightOffset: c.normWeightOffset)
        block.projectGateUp(gate: a.gate.pointer, up: a.up.pointer, input: a.mlpNormed.pointer, rows: rows, fused: w.fused)
        c.gatedActivation.forward(out: a.activated.pointer, gate: a.gate.pointer, up: a.up.pointer, count: rows * c.intermediateSize)
        let mlpOutput = a.mlpOutput ?? w.projected
        block.down.forward(output: mlpOutput.pointer, input: a.activated.pointer, rows: rows)
        postNorm(block.postFeedforwardNorm, output: mlpOutput, into: w.projected, rows: rows)
        addInPlace(w.hidden.pointer, w.projected.pointer, count: rows * hiddenSize)
    }

    /// A sandwich block's post-norm: `projected` = norm(output) before the residual add; without the norm,
    /// `output` is `projected` already.
    private func postNorm(_ norm: Parameter?, output: Tensor, into projected: Tensor, rows: Int) {
        guard let norm else { return }
        RMSNorm.forward(out: projected.pointer, input: output.pointer, weight: norm.tensor.pointer, rows: rows,
                        dim: config.hiddenSize, eps: config.rmsNormEpsilon, weightOffset: config.normWeightOffset)
    }
}

/// Gradients of the activations during one backward pass, reused block after block.
final class GradientWorkspace {
    let rows: Int
    let residual, normed, attention, queries, keys, values, gate, up, activated: Tensor
    /// With sandwich norms: the gradient of a block output before its post-norm.
    let projected: Tensor?
    /// Gradients of q and k before the per-head norms (with `qkNorm`).
    let projectedQueries, projectedKeys: Tensor?
    /// The gradient of a fused linear's output, gathered from its parts' (with a fused linear).
    let fused: Tensor?
    let scores = ScratchBuffer()

    init(config c: DecoderConfiguration, rows: Int) {
        self.rows = rows
        residual = Tensor(zeros: [rows, c.hiddenSize])
        normed = Tensor(zeros: [rows, c.hiddenSize])
        attention = Tensor(zeros: [rows, c.headCount * c.headDim])
        queries = Tensor(zeros: [rows, c.headCount * c.headDim])
        keys = Tensor(zeros: [rows, c.kvHeadCount * c.headDim])
        values = Tensor(zeros: [rows, c.kvHeadCount * c.headDim])
        gate = Tensor(zeros: [rows, c.intermediateSize])
        up = Tensor(zeros: [rows, c.intermediateSize])
        activated = Tensor(zeros: [rows, c.intermediateSize])
        projected = c.sandwichNorms ? Tensor(zeros: [rows, c.hiddenSize]) : nil
        projectedQueries = c.qkNorm ? Tensor(zeros: [rows, c.headCount * c.headDim]) : nil
        projectedKeys = c.qkNorm ? Tensor(zeros: [rows, c.kvHeadCount * c.headDim]) : nil
        fused = c.fusedWidth.map { Tensor(zeros: [rows, $0]) }
    }
}

/// cos and sin of every position's angles under one rotary embedding, [rows, headDim/2] each: computed once per
/// pass and shared by the layers that use that embedding.
struct RotaryAngles {
    var cosines: [Float] = [], sines: [Float] = []

    init() {}
    init(_ rope: RotaryEmbedding, positions: [Int]) { (cosines, sines) = rope.table(positions: positions) }
}

/// Calls `body` with a pointer to the array's elements, or nil for a nil array.
func withOptionalPointer<T, R>(_ array: [T]?, _ body: (UnsafePointer<T>?) throws -> R) rethrows -> R {
    guard let array else { return try body(nil) }
    return try array.withUnsafeBufferPointer { try body($0.baseAddress) }
}

extension DecoderBlock {
    /// q, k, v = projections of `input`: three products, or one fused product (qkv_proj) split by columns.
    func projectQKV(queries: UnsafeMutablePointer<Float>, keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>,
                    input: UnsafePointer<Float>, rows: Int, fused: Tensor?) {
        if let queryKeyValue, let fused {
            queryKeyValue.forward(output: fused.pointer, input: input, rows: rows)
            splitColumns(fused.pointer, width: queryKeyValue.outFeatures, rows: rows,
                         into: [(queries, queryKeyValue.outFeatures - 2 * kvWidth), (keys, kvWidth), (values, kvWidth)])
        } else if let query, let key, let value {
            query.forward(output: queries, input: input, rows: rows)
            key.forward(output: keys, input: input, rows: rows)
            value.forward(output: values, input: input, rows: rows)
        }
    }

    /// The backward of `projectQKV`: sets dInput, adds the weights' gradients.
    func projectQKVBackward(dInput: UnsafeMutablePointer<Float>, dQueries: UnsafePointer<Float>, dKeys: UnsafePointer<Float>,
                            dValues: UnsafePointer<Float>, input: UnsafePointer<Float>, rows: Int, fused: Tensor?) {
        if let queryKeyValue, let fused {
            gatherColumns([(dQueries, queryKeyValue.outFeatures - 2 * kvWidth), (dKeys, kvWidth), (dValues, kvWidth)], rows: rows,
                          into: fused.pointer, width: queryKeyValue.outFeatures)
            queryKeyValue.backward(dInput: dInput, dOutput: fused.pointer, input: input, rows: rows)
        } else if let query, let key, let value {
            query.backward(dInput: dInput, dOutput: dQueries, input: input, rows: rows)
            key.backward(dInput: dInput, dOutput: dKeys, input: input, rows: rows, accumulate: true)
            value.backward(dInput: dInput, dOutput: dValues, input: input, rows: rows, accumulate: true)
        }
    }

    /// gate, up = projections of `input`: two products, or one fused product (gate_up_proj, gate first) split in halves.
    func projectGateUp(gate gateOut: UnsafeMutablePointer<Float>, up upOut: UnsafeMutablePointer<Float>,
                       input: UnsafePointer<Float>, rows: Int, fused: Tensor?) {
        if let gateUp, let fused {
            gateUp.forward(output: fused.pointer, input: input, rows: rows)
            splitColumns(fused.pointer, width: gateUp.outFeatures, rows: rows,
                         into: [(gateOut, gateUp.outFeatures / 2), (upOut, gateUp.outFeatures / 2)])
        } else if let gate, let up {
            gate.forward(output: gateOut, input: input, rows: rows)
            up.forward(output: upOut, input: input, rows: rows)
        }
    }

    /// The backward of `projectGateUp`: sets dInput, adds the weights' gradients.
    func projectGateUpBackward(dInput: UnsafeMutablePointer<Float>, dGate: UnsafePointer<Float>, dUp: UnsafePointer<Float>,
                               input: UnsafePointer<Float>, rows: Int, fused: Tensor?) {
        if let gateUp, let fused {
            gatherColumns([(dGate, gateUp.outFeatures / 2), (dUp, gateUp.outFeatures / 2)], rows: rows,
                          into: fused.pointer, width: gateUp.outFeatures)
            gateUp.backward(dInput: dInput, dOutput: fused.pointer, input: input, rows: rows)
        } else if let gate, let up {
            gate.backward(dInput: dInput, dOutput: dGate, input: input, rows: rows)
            up.backward(dInput: dInput, dOutput: dUp, input: input, rows: rows, accumulate: true)
        }
    }
}

/// Copies consecutive column ranges of a [rows, width] matrix into separate [rows, part] matrices.
func splitColumns(_ source: UnsafePointer<Float>, width: Int, rows: Int, into parts: [(UnsafeMutablePointer<Float>, Int)]) {
    for r in 0..<rows {
        var column = 0
        for (destination, part) in parts {
            (destination + r * part).update(from: source + r * width + column, count: part)
            column += part
        }
    }
}

/// The inverse of `splitColumns`: [rows, part] matrices side by side in one [rows, width] matrix.
func gatherColumns(_ parts: [(UnsafePointer<Float>, Int)], rows: Int, into destination: UnsafeMutablePointer<Float>, width: Int) {
    for r in 0..<rows {
        var column = 0
        for (source, part) in parts {
            (destination + r * width + column).update(from: source + r * part, count: part)
            column += part
        }
    }
}
