import Foundation
import LatheData
import LatheFormats
import LatheModels
import LatheTensors

/// A run's checkpoint: `checkpoint/` in the output folder, holding the trainable weights, the optimizer state and
/// `state.json` (step, data position, dropout streams). Written as a new folder and renamed into place, so a kill
/// leaves either the previous checkpoint or the new one, never half of one.
enum Checkpoint {
    struct State: Codable {
        var step: Int
        var position: BatchPosition
        var dropoutStreams: [SeededGenerator]
        var method: TrainingConfiguration.Method
    }

    static func folder(in output: URL) -> URL { output.appendingPathComponent("checkpoint") }
    /// The task's own state (`TrainingTask.checkpointState`), when it has one.
    static let taskStateName = "task_state.json"

    @discardableResult
    static func save(_ trainer: Trainer, to output: URL) throws -> URL {
        let final = folder(in: output)
        let temporary = output.appendingPathComponent(".checkpoint-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        var weights = SafetensorsWriter(metadata: ["step": String(trainer.step)])
        for p in trainer.trainable {
            try weights.addTensor(name: p.name, dimensions: p.shape, values: p.tensor.array, dtype: .f32)
        }
        try weights.write(to: temporary.appendingPathComponent("trainable.safetensors"))
        try trainer.optimizer.saveState(to: temporary.appendingPathComponent("optimizer.safetensors"))
        let state = State(step: trainer.step, position: trainer.task.position,
                          dropoutStreams: trainer.languageModel.model.adapters.map(\.random), method: trainer.config.method)
        try AtomicFileWriter.write(try JSONEncoder().encode(state), to: temporary.appendingPathComponent("state.json"))
        if let taskState = try trainer.task.checkpointState() {
            try AtomicFileWriter.write(taskState, to: temporary.appendingPathComponent(taskStateName))
        }
        // Swap folders: the old checkpoint is removed only once the new one is in place.
        let old = output.appendingPathComponent(".checkpoint-old")
        try? FileManager.default.removeItem(at: old)
        if FileManager.default.fileExists(atPath: final.path) { try FileManager.default.moveItem(at: final, to: old) }
        try FileManager.default.moveItem(at: temporary, to: final)
        try? FileManager.default.removeItem(at: old)
        return final
    }

    static func restore(_ trainer: Trainer, from output: URL) throws {
        var source = folder(in: output)
        let old = output.appendingPathComponent(".checkpoint-old")
        if !FileManager.default.fileExists(atPath: source.path), FileManager.default.fileExists(atPath: old.path) {
            source = old  // killed between the two renames of `save`
        }
        let stateURL = source.appendingPathComponent("state.json")
        guard let data = try? Data(contentsOf: stateURL) else {
            throw TrainingError("\(output.path): there is no checkpoint to resume from (run with save_every / --save-every)")
        }
        let state = try JSONDecoder().decode(State.self, from: data)
        guard state.method == trainer.config.method else {
            throw TrainingError("\(stateURL.path): the checkpoint is of a \(state.method) run, this run is \(trainer.config.method)")
        }
        let weights = try SafetensorsFile(url: source.appendingPathComponent("trainable.safetensors"))
        for p in trainer.trainable {
            guard let info = weights.tensor(named: p.name), info.dimensions == p.shape else {
                throw TrainingError("\(weights.url.path): no tensor '\(p.name)' of shape \(p.shape); was the checkpoint made with another configuration?")
            }
            _ = p.tensor.buffer.update(from: try weights.floats(of: info))
        }
        try trainer.refreshCompactCopies()
        try trainer.optimizer.loadState(from: source.appendingPathComponent("optimizer.safetensors"), parameters: trainer.trainable)
        let adapters = trainer.languageModel.model.adapters
        guard adapters.count == state.dropoutStreams.count else {
            throw TrainingError("\(stateURL.path): \(state.dropoutStreams.count) adapters saved, the model has \(adapters.count)")
        }
        for (adapter, stream) in zip(adapters, state.dropoutStreams) { adapter.random = stream }
        try trainer.task.move(to: state.position)
        if let taskState = try? Data(contentsOf: source.appendingPathComponent(taskStateName)) {
            try trainer.task.restore(checkpointState: taskState)
        }
        trainer.step = state.step
    }
}
