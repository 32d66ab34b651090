import Foundation
import LatheData
import XCTest

final class BatchTests: XCTestCase {
    /// An example with ids `ids` whose tokens at `supervisedAt` are supervised.
    func example(_ ids: [Int], _ supervisedAt: Set<Int>, _ source: String) -> SFTExample {
        SFTExample(ids: ids, supervised: ids.indices.map { supervisedAt.contains($0) }, source: source, truncated: false)
    }

    func testPaddedLayoutShiftsTargetsAndMarksPadding() throws {
        let a = example([11, 12, 13], [2], "a:1")
        let b = example([21, 22], [1], "b:2")
        let batch = try BatchBuilder(batchSize: 2, layout: .padded(length: nil), paddingID: 7).batch([[a], [b]])
        XCTAssertEqual(batch.batchSize, 2)
        XCTAssertEqual(batch.length, 3)
        XCTAssertEqual(batch.inputs, [11, 12, 13, 21, 22, 7])
        // Position t predicts token t + 1: 12 is not supervised, 13 and 22 are; last tokens and padding predict nothing.
        XCTAssertEqual(batch.targets, [-1, 13, -1, 22, -1, -1])
        XCTAssertEqual(batch.positions, [0, 1, 2, 0, 1, 0])
        XCTAssertEqual(batch.valid, [true, true, true, true, true, false])
        XCTAssertEqual(batch.segments, [0, 0, 0, 0, 0, -1])
        XCTAssertEqual(batch.tokenCount, 2)
        XCTAssertEqual(batch.sources, ["a:1", "b:2"])

        let fixed = try BatchBuilder(batchSize: 2, layout: .padded(length: 4)).batch([[a], [b]])
        XCTAssertEqual(fixed.length, 4)
        XCTAssertEqual(fixed.inputs, [11, 12, 13, 0, 21, 22, 0, 0])
        XCTAssertEqual(fixed.valid, [true, true, true, false, true, true, false, false])
    }

    func testPackedLayoutRestartsPositionsPerExampleAndKeepsTargetsInside() throws {
        let examples = [example([1, 2, 3], [1, 2], "f:1"), example([4, 5], [1], "f:2"), example([6, 7, 8, 9], [3], "f:3")]
        let builder = try BatchBuilder(batchSize: 2, layout: .packed(length: 5))
        XCTAssertEqual(try builder.rows(examples, order: [0, 1, 2]), [[0, 1], [2]])
        let batches = try builder.batches(examples)
        XCTAssertEqual(batches.count, 1)
        let batch = batches[0]
        XCTAssertEqual(batch.length, 5)
        XCTAssertEqual(batch.inputs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 0])
        XCTAssertEqual(batch.positions, [0, 1, 2, 0, 1, 0, 1, 2, 3, 0])
        XCTAssertEqual(batch.segments, [0, 0, 0, 1, 1, 0, 0, 0, 0, -1])
        XCTAssertEqual(batch.valid, [true, true, true, true, true, true, true, true, true, false])
        // Token 3 (last of example 0) does not predict 4, the first of the next packed example.
        XCTAssertEqual(batch.targets, [2, 3, -1, 5, -1, -1, -1, 9, -1, -1])
        XCTAssertEqual(batch.tokenCount, 4)
    }

    func testTargetsOfRenderedExamplesAreTheNextSupervisedIDs() throws {
        let model = try TinySFTModel.load()
        let renderer = SFTRenderer(model: model, options: try SFTOptions(maxLength: 64))
        let examples = [try renderer.render(prompt: "Q: the", completion: " answer", source: "p:1"),
                        try renderer.render(text: "then", source: "t:2")]
        let batch = try BatchBuilder(batchSize: 2, layout: .padded(length: nil)).batch(examples.map { [$0] })
        XCTAssertEqual(batch.tokenCount, examples.map(\.supervisedCount).reduce(0, +))
        let row0 = Array(batch.targets[0..<batch.length]).filter { $0 != Batch.ignoredTarget }
        XCTAssertEqual(model.tokenizer.decode(row0), " answer<|im_end|>")
        XCTAssertEqual(batch.targets[examples[0].ids.count - 2], model.tokenizer.eosTokenID, "the prediction of EOS is in the loss")
    }

    func testTooLongExamplesAndBadSizesAreErrors() throws {
        let long = example([1, 2, 3, 4], [1], "long.jsonl:3")
        XCTAssertThrowsError(try BatchBuilder(batchSize: 1, layout: .packed(length: 3)).batches([long])) { error in
            XCTAssertTrue("\(error)".hasPrefix("long.jsonl:3: the example has 4 tokens"), "\(error)")
        }
        XCTAssertThrowsError(try BatchBuilder(batchSize: 1, layout: .padded(length: 2)).batches([long]))
        XCTAssertThrowsError(try BatchBuilder(batchSize: 0, layout: .padded(length: nil)))
        XCTAssertThrowsError(try BatchBuilder(batchSize: 1, layout: .packed(length: 0)))
        let mismatched = SFTExample(ids: [1, 2], supervised: [false], source: "m:1", truncated: false)
        XCTAssertThrowsError(try BatchBuilder(batchSize: 1, layout: .padded(length: nil)).batch([[mismatched]]))
    }

    func makeExamples(_ count: Int) -> [SFTExample] {
        (0..<count).map { i in example(Array(repeating: 100 + i, count: 2 + i % 4), [1], "d:\(i + 1)") }
    }

    func testEveryEpochCoversEveryExampleOnceInANewOrder() throws {
        let examples = makeExamples(10)
        var iterator = try BatchIterator(examples: examples, builder: try BatchBuilder(batchSize: 3, layout: .padded(length: nil)),
                                         seed: 42)
        XCTAssertEqual(iterator.batchesInEpoch, 4)
        var epochs: [[String]] = [[], []]
        for _ in 0..<8 {
            let epoch = iterator.position.epoch
            epochs[epoch] += try iterator.next().sources
        }
        XCTAssertEqual(iterator.position, BatchPosition(epoch: 2, index: 0))
        for epoch in epochs { XCTAssertEqual(epoch.sorted(), examples.map(\.source).sorted()) }
        XCTAssertNotEqual(epochs[0], epochs[1], "each epoch is shuffled anew")
        XCTAssertNotEqual(epochs[0], examples.map(\.source), "the order is shuffled")
        XCTAssertEqual(iterator.order(epoch: 0), try BatchIterator(examples: examples, builder: iterator.builder, seed: 42).order(epoch: 0))
        XCTAssertNotEqual(iterator.order(epoch: 0), try BatchIterator(examples: examples, builder: iterator.builder, seed: 43).order(epoch: 0))
    }

    func testResumingFromASavedPositionYieldsTheSameBatches() throws {
        let examples = makeExamples(13)
        let builder = try BatchBuilder(batchSize: 2, layout: .packed(length: 8))
        var uninterrupted = try BatchIterator(examples: examples, builder: builder, seed: 7)
        var all: [Batch] = []
        var saved: BatchPosition?
        var savedAt = 0
        for step in 0..<12 {
            if step == 5 {
                // A checkpoint stores the position as JSON.
                let data = try JSONEncoder().encode(uninterrupted.position)
                saved = try JSONDecoder().decode(BatchPosition.self, from: data)
                savedAt = step
            }
            all.append(try uninterrupted.next())
        }
        XCTAssertGreaterThan(uninterrupted.position.epoch, 0, "the run crosses an epoch boundary")
        var resumed = try BatchIterator(examples: examples, builder: builder, seed: 7, position: try XCTUnwrap(saved))
        for step in savedAt..<12 {
            XCTAssertEqual(try resumed.next(), all[step], "batch \(step) after resuming at \(String(describing: saved))")
        }
        XCTAssertEqual(resumed.position, uninterrupted.position)
    }

    func testOptionsChooseTheLayoutAndUnshuffledEpochsKeepTheFileOrder() throws {
        XCTAssertEqual(try BatchBuilder(batchSize: 2, options: SFTOptions(maxLength: 16, packing: true)).layout, .packed(length: 16))
        XCTAssertEqual(try BatchBuilder(batchSize: 2, options: SFTOptions(maxLength: 16)).layout, .padded(length: nil))
        let examples = makeExamples(4)
        var iterator = try BatchIterator(examples: examples, builder: try BatchBuilder(batchSize: 3, layout: .padded(length: nil)),
                                         seed: 1, shuffles: false)
        XCTAssertEqual(try iterator.next().sources + iterator.next().sources, examples.map(\.source))
    }

    func testPositionPastTheEpochIsAnError() throws {
        let builder = try BatchBuilder(batchSize: 4, layout: .padded(length: nil))
        XCTAssertThrowsError(try BatchIterator(examples: makeExamples(5), builder: builder, seed: 1,
                                               position: BatchPosition(epoch: 0, index: 3)))
        XCTAssertThrowsError(try BatchIterator(examples: [], builder: builder, seed: 1))
        // The end of an epoch is the start of the next.
        let atEnd = try BatchIterator(examples: makeExamples(5), builder: builder, seed: 1, position: BatchPosition(epoch: 0, index: 2))
        XCTAssertEqual(atEnd.position, BatchPosition(epoch: 1, index: 0))
    }
}
