import XCTest
@testable import LatheModels
@testable import LatheTensors

/// A whole training step (loss, every gradient; LoRA over an NF4 base) and decoding with the KV cache give the same
/// bits with the kernels' loops on two threads as on one: every split is over independent rows, heads or blocks.
final class ThreadedModelTests: XCTestCase {
    let config = DecoderConfiguration(vocabularySize: 4096, hiddenSize: 256, intermediateSize: 1024, layerCount: 1,
                                    headCount: 4, kvHeadCount: 2, tieWordEmbeddings: true, maxPositions: 256)
    let batchSize = 4, length = 128

    struct Run { var loss: Double; var gradients: [[Float]]; var decoded: [Float] }

    /// One training step and three decoded tokens on `threads` threads (the kernels' loops only: the products stay
    /// on the backend's one thread, so what is compared is the kernels' own split).
    func run(threads: Int, nf4: Bool) throws -> Run {
        let previous = Parallel.threadCount
        defer { Parallel.setThreadCount(previous) }
        Parallel.setThreadCount(threads)
        var random = SeededGenerator(seed: 9)
        let ids = (0..<(batchSize * length)).map { _ in Int(random.next() % UInt64(config.vocabularySize)) }
        // The last row ends in padding; every seventh target is ignored.
        let valid = (0..<(batchSize * length)).map { $0 < (batchSize - 1) * length + 100 }
        let targets = (0..<(batchSize * length)).map { $0 % 7 == 3 || !valid[$0] ? -1 : ids[($0 + 1) % ids.count] }
        let model = DecoderModel(config: config)
        model.initializeRandomly(seed: 1)
        let trainable: [Parameter]
        if nf4 {
            try model.compressWeights(to: .nf4)
            let adapters = try model.attachLoRA(LoRAConfiguration(rank: 4, alpha: 8, targets: ["all-linear"]), seed: 2)
            for adapter in adapters { adapter.b.tensor.fill(0.01) }
            trainable = adapters.flatMap(\.parameters)
        } else {
            for parameter in model.parameters { parameter.trainable = true }
            trainable = model.parameters
        }
        let activations = TrainingActivations(config: config, batchSize: batchSize, length: length)
        let counted = targets.filter { $0 >= 0 }.count
        let splitBefore = Parallel.splitLoops
        let (loss, _) = try model.loss(tokens: ids, batchSize: batchSize, valid: valid, targets: targets,
                                       scale: 1 / Float(counted), saving: activations)
        model.backward(activations: activations)
        let cache = KVCache(config: config, batchSize: 1, capacity: 40)
        _ = try model.forward(tokens: Array(ids[0..<30]), cache: cache, logits: .last)
        var decoded: [Float] = []
        for token in [5, 77, 1234] { decoded += try model.forward(tokens: [token], cache: cache, logits: .last).array }
        if threads > 1 { XCTAssertGreaterThan(Parallel.splitLoops, splitBefore, "the step's loops are split") }
        return Run(loss: loss, gradients: trainable.map { $0.gradient?.array ?? [] }, decoded: decoded)
    }

    func testTrainingStepAndDecodingGiveTheSameBitsOnTwoThreads() throws {
        for nf4 in [false, true] {
            let single = try run(threads: 1, nf4: nf4), threaded = try run(threads: 2, nf4: nf4)
            let what = nf4 ? "LoRA on an NF4 base" : "full fine-tuning"
            XCTAssertEqual(threaded.loss.bitPattern, single.loss.bitPattern, "\(what): loss \(threaded.loss) against \(single.loss)")
            XCTAssertEqual(threaded.gradients.count, single.gradients.count)
            for (index, (a, b)) in zip(threaded.gradients, single.gradients).enumerated() {
                let first = zip(a, b).enumerated().first { $0.element.0.bitPattern != $0.element.1.bitPattern }?.offset
                XCTAssertNil(first, "\(what): gradient \(index) differs first at \(first ?? -1)")
            }
            XCTAssertEqual(threaded.decoded.map(\.bitPattern), single.decoded.map(\.bitPattern), "\(what): decoded logits")
        }
    }
}
