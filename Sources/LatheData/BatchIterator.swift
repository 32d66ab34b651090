import Foundation
import LatheTensors

/// Where an epoch iterator stands: the next batch is batch `index` of epoch `epoch`. A checkpoint stores it;
/// an iterator built on the same examples, builder and seed at this position yields the same batches.
public struct BatchPosition: Codable, Equatable, Sendable, CustomStringConvertible {
    public var epoch: Int
    public var index: Int

    public init(epoch: Int = 0, index: Int = 0) {
        self.epoch = epoch
        self.index = index
    }

    public var description: String { "epoch \(epoch), batch \(index)" }
}

/// How examples of one kind are laid out in batches: SFT sequences (padded or packed), preference pairs.
public protocol BatchLayout: Sendable {
    associatedtype Example: Sendable
    associatedtype Output
    /// Rows per batch.
    var batchSize: Int { get }
    /// Groups example indices (in the given order) into rows.
    func rows(_ examples: [Example], order: [Int]) throws -> [[Int]]
    /// One batch from rows of examples.
    func batch(_ rows: [[Example]]) throws -> Output
}

extension BatchBuilder: BatchLayout {}

/// Batches epoch after epoch, the examples shuffled anew each epoch. The order of epoch `e` depends only on the
/// seed and `e` (a fresh `SeededGenerator` per epoch), so that the position alone resumes a run exactly.
public struct BatchIterator<Layout: BatchLayout>: Sendable {
    public let examples: [Layout.Example]
    public let builder: Layout
    public let seed: UInt64
    public let shuffles: Bool
    public private(set) var position: BatchPosition
    /// The current epoch's batches as rows of example indices.
    private var plan: [[[Int]]]

    public init(examples: [Layout.Example], builder: Layout, seed: UInt64, shuffles: Bool = true,
                position: BatchPosition = BatchPosition()) throws {
        guard !examples.isEmpty else { throw BatchError(message: "there are no examples to make batches of") }
        guard position.epoch >= 0, position.index >= 0 else {
            throw BatchError(message: "the data position (\(position)) must not be negative")
        }
        self.examples = examples
        self.builder = builder
        self.seed = seed
        self.shuffles = shuffles
        self.position = position
        plan = []
        plan = try Self.plan(examples: examples, builder: builder, order: order(epoch: position.epoch))
        guard position.index <= plan.count else {
            throw BatchError(message: "the data position (\(position)) is past the \(plan.count) batches of that epoch; " +
                             "was the checkpoint made with other data, batch size or packing?")
        }
        if position.index == plan.count { try startEpoch(position.epoch + 1) }
    }

    /// The number of batches in the current epoch (it varies between epochs with packing).
    public var batchesInEpoch: Int { plan.count }

    /// The example order of an epoch: a seeded Fisher–Yates shuffle, or the file order.
    public func order(epoch: Int) -> [Int] {
        var order = Array(examples.indices)
        guard shuffles else { return order }
        // Golden-ratio steps keep the seeds of consecutive epochs far apart before SplitMix64 mixes them.
        var random = SeededGenerator(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            // A uniform index in 0...i from the high word of a 64×64-bit product (bias below 2^-40 here).
            let j = Int(UInt64(i + 1).multipliedFullWidth(by: random.next()).high)
            order.swapAt(i, j)
        }
        return order
    }

    /// The next batch; after the last batch of an epoch the position moves to the next epoch.
    public mutating func next() throws -> Layout.Output {
        let rows = plan[position.index]
        let batch = try builder.batch(rows.map { $0.map { examples[$0] } })
        position.index += 1
        if position.index == plan.count { try startEpoch(position.epoch + 1) }
        return batch
    }

    private mutating func startEpoch(_ epoch: Int) throws {
        plan = try Self.plan(examples: examples, builder: builder, order: order(epoch: epoch))
        position = BatchPosition(epoch: epoch, index: 0)
    }

    /// The iterator on the same examples, layout and seed at another position (resuming from a checkpoint).
    public func moved(to position: BatchPosition) throws -> BatchIterator {
        try BatchIterator(examples: examples, builder: builder, seed: seed, shuffles: shuffles, position: position)
    }

    private static func plan(examples: [Layout.Example], builder: Layout, order: [Int]) throws -> [[[Int]]] {
        let rows = try builder.rows(examples, order: order)
        return stride(from: 0, to: rows.count, by: builder.batchSize).map {
            Array(rows[$0..<min($0 + builder.batchSize, rows.count)])
        }
    }
}
