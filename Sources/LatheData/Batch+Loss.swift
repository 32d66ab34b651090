import LatheModels
import LatheTensors

/// The loss of one batch: the summed cross-entropy over its supervised targets and how many there are, the one
/// code path that training, validation and perplexity share. With `activations`, the gradient of `scale`·(summed
/// loss) is added into the trainable parameters.
public func languageModelLoss(_ model: DecoderModel, batch: Batch, activations: TrainingActivations? = nil,
                              scale: Float = 0) throws -> (sum: Double, count: Int) {
    let result = try model.loss(tokens: batch.inputs, batchSize: batch.batchSize, positions: batch.positions,
                                valid: batch.valid, segments: batch.segments, targets: batch.targets, scale: scale,
                                saving: activations)
    if let activations { model.backward(activations: activations) }
    return (result.loss, result.count)
}

/// Per row of `batch`: Σ log p(target) over its targets (those of kind `.completion` when `kinds` is given): the
/// summed completion log-probability that preference objectives and implicit rewards are made of. `scratch`: training
/// activations of the batch's shape to run in (they are overwritten), instead of the model's own forward buffers.
public func summedLogProbabilities(_ model: DecoderModel, batch: Batch, kinds: [TargetKind]? = nil,
                                   scratch: TrainingActivations? = nil) throws -> [Double] {
    let fits = scratch.map { $0.batchSize == batch.batchSize && $0.length == batch.length } ?? false
    let values = try model.targetLogProbabilities(tokens: batch.inputs, batchSize: batch.batchSize, positions: batch.positions,
                                                  valid: batch.valid, segments: batch.segments, targets: batch.targets,
                                                  saving: fits ? scratch : nil)
    return (0..<batch.batchSize).map { row in
        (row * batch.length..<(row + 1) * batch.length).reduce(0.0) { sum, i in
            batch.targets[i] >= 0 && (kinds?[i] ?? .completion) == .completion ? sum + Double(values[i]) : sum
        }
    }
}
