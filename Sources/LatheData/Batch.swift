import Foundation

/// A training batch of `batchSize` rows of `length` tokens, row-major (index `row * length + t`).
///
/// `targets[i]` is the token the model should predict at position `i` (the next token of the same example) or
/// -1 when that prediction is not in the loss (unsupervised, last token of an example, padding). In a packed row
/// `segments` tells which example each token belongs to (0, 1, 2... within the row; -1 for padding), so that
/// attention stays within an example, and `positions` restart at 0 at the start of each example.
public struct Batch: Equatable, Sendable {
    public static let ignoredTarget = -1

    public let batchSize: Int
    public let length: Int
    public let inputs: [Int]
    public let targets: [Int]
    public let positions: [Int]
    /// False for padding.
    public let valid: [Bool]
    public let segments: [Int]
    /// The number of targets in the loss (not -1): what a token-weighted loss divides by.
    public let tokenCount: Int
    /// "file:line" of each example in the batch, row by row.
    public let sources: [String]

    /// A batch of unpacked rows given whole (scoring, reference checks): positions count from 0 in each row and
    /// every row is one segment; `targets` as above.
    public init(rows: [[Int]], targets: [[Int]], valid: [[Bool]]? = nil) {
        batchSize = rows.count
        length = rows.first?.count ?? 0
        inputs = rows.flatMap { $0 }
        self.targets = targets.flatMap { $0 }
        positions = rows.flatMap { $0.indices.map { $0 } }
        self.valid = valid?.flatMap { $0 } ?? Array(repeating: true, count: inputs.count)
        segments = rows.flatMap { row in row.map { _ in 0 } }
        tokenCount = self.targets.filter { $0 >= 0 }.count
        sources = rows.map { _ in "" }
    }

    init(batchSize: Int, length: Int, inputs: [Int], targets: [Int], positions: [Int], valid: [Bool], segments: [Int],
         tokenCount: Int, sources: [String]) {
        self.batchSize = batchSize; self.length = length; self.inputs = inputs; self.targets = targets
        self.positions = positions; self.valid = valid; self.segments = segments; self.tokenCount = tokenCount
        self.sources = sources
    }
}

/// A problem making batches (bad sizes, an example longer than the row).
public struct BatchError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public var description: String { message }
}

/// Lays examples out in batches: one example per row, right-padded to the longest row (or to a fixed length), or
/// packed: examples placed one after another in rows of a fixed length, greedily, each row then padded.
public struct BatchBuilder: Equatable, Sendable {
    public enum Layout: Equatable, Sendable {
        /// One example per row; rows padded to `length`, or to the longest row of the batch when nil.
        case padded(length: Int?)
        /// Several examples per row of `length` tokens, in order, a new row when the next one does not fit.
        case packed(length: Int)
    }

    public let batchSize: Int
    public let layout: Layout
    /// The input id written in padding (never a target; any id the embedding has).
    public let paddingID: Int

    public init(batchSize: Int, layout: Layout, paddingID: Int = 0) throws {
        guard batchSize >= 1 else { throw BatchError(message: "batch size must be at least 1, got \(batchSize)") }
        switch layout {
        case .padded(let length?) where length < 1, .packed(let length) where length < 1:
            throw BatchError(message: "row length must be at least 1, got \(length)")
        default: break
        }
        guard paddingID >= 0 else { throw BatchError(message: "padding id must not be negative, got \(paddingID)") }
        self.batchSize = batchSize
        self.layout = layout
        self.paddingID = paddingID
    }

    /// Packed rows of `options.maxLength` with packing on, else padding to the longest row.
    public init(batchSize: Int, options: SFTOptions, paddingID: Int = 0) throws {
        try self.init(batchSize: batchSize, layout: options.packing ? .packed(length: options.maxLength) : .padded(length: nil),
                      paddingID: paddingID)
    }

    /// Groups example indices (in the given order) into rows: one per row, or packed greedily.
    public func rows(_ examples: [SFTExample], order: [Int]) throws -> [[Int]] {
        switch layout {
        case .padded(let length):
            return try order.map { index in
                if let length, examples[index].ids.count > length { throw tooLong(examples[index], length) }
                return [index]
            }
        case .packed(let length):
            var rows: [[Int]] = []
            var current: [Int] = []
            var used = 0
            for index in order {
                let count = examples[index].ids.count
                guard count <= length else { throw tooLong(examples[index], length) }
                if used + count > length {
                    rows.append(current)
                    current = []; used = 0
                }
                current.append(index); used += count
            }
            if !current.isEmpty { rows.append(current) }
            return rows
        }
    }

    private func tooLong(_ example: SFTExample, _ length: Int) -> BatchError {
        BatchError(message: "\(example.source): the example has \(example.ids.count) tokens, more than the row length \(length); " +
                   "render with max_length ≤ \(length)")
    }

    /// All batches of `examples` in order (the last one may have fewer rows).
    public func batches(_ examples: [SFTExample]) throws -> [Batch] {
        let rows = try rows(examples, order: Array(examples.indices))
        return try stride(from: 0, to: rows.count, by: batchSize).map { start in
            try batch(Array(rows[start..<min(start + batchSize, rows.count)]).map { $0.map { examples[$0] } })
        }
    }

    /// One batch from rows of examples (each row's examples placed one after another).
    public func batch(_ rows: [[SFTExample]]) throws -> Batch {
        guard !rows.isEmpty else { throw BatchError(message: "a batch needs at least one row") }
        let longest = rows.map { $0.reduce(0) { $0 + $1.ids.count } }.max() ?? 0
        let length: Int
        switch layout {
        case .padded(let fixed?): length = fixed
        case .padded(nil): length = longest
        case .packed(let fixed): length = fixed
        }
        guard longest <= length, longest > 0 else {
            throw BatchError(message: longest == 0 ? "a batch row is empty" : "a row of \(longest) tokens does not fit in \(length)")
        }
        let size = rows.count * length
        var inputs = [Int](repeating: paddingID, count: size)
        var targets = [Int](repeating: Batch.ignoredTarget, count: size)
        var positions = [Int](repeating: 0, count: size)
        var valid = [Bool](repeating: false, count: size)
        var segments = [Int](repeating: -1, count: size)
        var tokenCount = 0
        for (row, examples) in rows.enumerated() {
            var offset = row * length
            for (segment, example) in examples.enumerated() {
                let ids = example.ids
                guard example.supervised.count == ids.count else {
                    throw BatchError(message: "\(example.source): \(ids.count) ids but \(example.supervised.count) supervision flags")
                }
                for t in ids.indices {
                    inputs[offset + t] = ids[t]
                    positions[offset + t] = t
                    valid[offset + t] = true
                    segments[offset + t] = segment
                    // The prediction made at t is of token t + 1 of the same example, in the loss if supervised.
                    if t + 1 < ids.count, example.supervised[t + 1] {
                        targets[offset + t] = ids[t + 1]
                        tokenCount += 1
                    }
                }
                offset += ids.count
            }
        }
        return Batch(batchSize: rows.count, length: length, inputs: inputs, targets: targets, positions: positions,
                     valid: valid, segments: segments, tokenCount: tokenCount, sources: rows.flatMap { $0.map(\.source) })
    }
}
