import LatheTensors

/// Keys and values of the positions seen so far, per layer, for incremental decoding of a batch of sequences.
///
/// Every row of the batch has the same number of slots filled; rows shorter than others are left-padded and
/// their padding slots are marked invalid so that no query attends to them.
public final class KVCache: @unchecked Sendable {
    public let batchSize: Int
    public let capacity: Int
    let width: Int
    let keys: [Tensor]
    let values: [Tensor]
    /// [batch, capacity]: false where a slot holds padding.
    var slotIsValid: [Bool]
    public private(set) var length = 0

    public init(config: LlamaConfiguration, batchSize: Int, capacity: Int) {
        self.batchSize = batchSize
        self.capacity = capacity
        width = config.kvHeadCount * config.headDim
        keys = (0..<config.layerCount).map { _ in Tensor(zeros: [batchSize, capacity, config.kvHeadCount * config.headDim]) }
        values = (0..<config.layerCount).map { _ in Tensor(zeros: [batchSize, capacity, config.kvHeadCount * config.headDim]) }
        slotIsValid = Array(repeating: true, count: batchSize * capacity)
    }

    public var remaining: Int { capacity - length }

    /// Marks `count` new slots (after the current length) valid or not, row by row.
    func reserve(count: Int, valid: [Bool]?) {
        for b in 0..<batchSize {
            for t in 0..<count { slotIsValid[b * capacity + length + t] = valid?[b * count + t] ?? true }
        }
    }

    func advance(by count: Int) { length += count }

    /// Forgets everything, keeping the allocation.
    public func reset() { length = 0 }
}
