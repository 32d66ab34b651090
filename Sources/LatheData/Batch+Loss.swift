import LatheModels
import LatheTensors

/// The loss of one batch: mean cross-entropy over its supervised targets, the one code path that training,
/// validation and perplexity share. With `activations`, the gradient of `scale`·(summed loss) is added into the
/// trainable parameters.
public func languageModelLoss(_ model: LlamaModel, batch: Batch, activations: TrainingActivations? = nil,
                              scale: Float = 0) throws -> (sum: Double, count: Int) {
    let logits = try model.forward(tokens: batch.inputs, batchSize: batch.batchSize, positions: batch.positions,
                                   valid: batch.valid, segments: batch.segments, saving: activations)
    let dLogits = activations?.dLogits
    let result = CrossEntropy.lossAndGradient(logits: logits.pointer, targets: batch.targets,
                                              vocabularySize: model.config.vocabularySize,
                                              dLogits: dLogits?.pointer, scale: scale)
    if let activations, let dLogits { model.backward(dLogits: dLogits, activations: activations) }
    return (result.loss, result.count)
}
