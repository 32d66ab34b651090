import LatheTensors

/// Keys and values of the positions seen so far, per layer, for incremental decoding of a batch of sequences.
///
/// Each row (a slot) has its own length: a batch decoder's requests join and leave between steps, and a freed slot
/// is reused without reallocating. A forward pass over all rows at once (training, scoring, `forward` without
/// `slots`) keeps them equal; rows shorter than others there are left-padded and their padding positions are
/// marked invalid so that no query attends to them.
public final class KVCache: @unchecked Sendable {
    /// The number of rows (slots).
    public let batchSize: Int
    /// Positions per row.
    public let capacity: Int
    let keys: [Tensor]
    let values: [Tensor]
    /// [batch, capacity]: false where a position holds padding.
    var positionIsValid: [Bool]
    /// The positions filled in each row.
    public private(set) var lengths: [Int]

    public init(config: DecoderConfiguration, batchSize: Int, capacity: Int) {
        self.batchSize = batchSize
        self.capacity = capacity
        keys = (0..<config.layerCount).map { _ in Tensor(zeros: [batchSize, capacity, config.kvHeadCount * config.headDim]) }
        values = (0..<config.layerCount).map { _ in Tensor(zeros: [batchSize, capacity, config.kvHeadCount * config.headDim]) }
        positionIsValid = Array(repeating: true, count: batchSize * capacity)
        lengths = Array(repeating: 0, count: batchSize)
    }

    /// The positions every row can still take.
    public var remaining: Int { capacity - (lengths.max() ?? 0) }

    /// Marks `count` new positions of each of `slots` (after its current length) valid or not; `valid` has `count`
    /// flags per slot, in the order of `slots`.
    func reserve(count: Int, slots: [Int], valid: [Bool]?) {
        for (b, slot) in slots.enumerated() {
            let start = slot * capacity + lengths[slot]
            for t in 0..<count { positionIsValid[start + t] = valid?[b * count + t] ?? true }
        }
    }

    func advance(slots: [Int], by count: Int) {
        for slot in slots { lengths[slot] += count }
    }

    /// Forgets one row, keeping the allocation: the slot is free for another sequence.
    public func clear(slot: Int) { lengths[slot] = 0 }

    /// Forgets everything, keeping the allocation.
    public func reset() { for slot in lengths.indices { lengths[slot] = 0 } }
}
