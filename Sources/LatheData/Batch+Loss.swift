import LatheModels
import LatheTensors

/// The loss of one batch: the summed cross-entropy over its supervised targets and how many there are, the one
/// code path that training, validation and perplexity share. With `activations`, the gradient of `scale`·(summed
/// loss) is added into the trainable parameters.
public func languageModelLoss(_ model: LlamaModel, batch: Batch, activations: TrainingActivations? = nil,
                              scale: Float = 0) throws -> (sum: Double, count: Int) {
    let result = try model.loss(tokens: batch.inputs, batchSize: batch.batchSize, positions: batch.positions,
                                valid: batch.valid, segments: batch.segments, targets: batch.targets, scale: scale,
                                saving: activations)
    if let activations { model.backward(activations: activations) }
    return (result.loss, result.count)
}
