import Foundation
import LatheData
import LatheModels

extension Advice {
    /// The run of the pipeline's first trainer as `lathe sft|dpo|orpo|kto FILE.yaml` reads it: the method, adapter
    /// shape, batch, accumulation, length, checkpointing, optimizer and schedule the advice chose.
    /// - Parameters:
    ///   - model: the `model:` key (a path or a known name); the table's models are not on this machine.
    ///   - evalData: the held-out file, if any.
    public func trainingConfiguration(model: String, data: String?, evalData: String?, output: String) throws -> TrainingConfiguration {
        var c = TrainingConfiguration()
        c.model = model
        c.data = data
        c.valid = evalData
        c.output = output
        c.method = method == .full ? .full : .lora
        if let lora = settings.lora { c.lora = lora }
        c.quantize = method == .qlora ? WeightFormat.nf4.rawValue : nil
        c.batchSize = settings.batchSize
        c.gradientAccumulation = settings.gradientAccumulation
        c.gradientCheckpointing = settings.gradientCheckpointing
        c.epochs = settings.epochs
        c.learningRate = settings.learningRate
        c.warmupSteps = settings.warmupSteps
        c.optimizer = OptimizerConfiguration(kind: settings.optimizer == .adamw8bit ? .adamw8bit : .adamw)
        if let steps = settings.stepsPerEpoch, evalData != nil { c.evalEvery = max(1, steps * settings.epochs / 10) }
        switch firstTrainer {
        case let name? where PreferenceMethod(rawValue: name) != nil:
            c.objective = PreferenceMethod(rawValue: name)
            c.preference.maxLength = settings.maxLength
        default:
            c.sft.maxLength = settings.maxLength
        }
        try c.validate()
        return c
    }
}
