import Foundation

/// One unit of preference training: a prompt with a chosen and a rejected completion (DPO, ORPO, SimPO), or with a
/// single labelled completion and, for KTO's KL estimate, another row's completion after the same prompt.
public struct PreferenceItem: Equatable, Sendable {
    public var prompt: [Int]
    /// A pair: [chosen, rejected]; unpaired: [completion].
    public var completions: [[Int]]
    /// Unpaired rows only: desirable or not.
    public var label: Bool?
    /// KTO: a mismatched completion after this prompt.
    public var mismatched: [Int]?
    /// The reference model's summed log-probabilities of each completion (then of `mismatched`), when computed once
    /// before training instead of at every step.
    public var reference: [Double]?
    public var source: String

    public init(prompt: [Int], completions: [[Int]], label: Bool? = nil, mismatched: [Int]? = nil, source: String) {
        self.prompt = prompt; self.completions = completions; self.label = label; self.mismatched = mismatched
        self.source = source
    }

    public init(_ pair: PreferenceExample) {
        self.init(prompt: pair.prompt, completions: [pair.chosen, pair.rejected], source: pair.source)
    }

    public init(_ row: UnpairedExample) {
        self.init(prompt: row.prompt, completions: [row.completion], label: row.label, source: row.source)
    }
}

/// What a target of a preference batch is part of.
public enum TargetKind: UInt8, Sendable {
    case none, prompt, completion
}

/// A micro-batch of preference items as TRL concatenates them: the first completions of every item (the chosen ones),
/// then the second (the rejected ones), each row prompt + completion, right-padded to the longest row.
public struct PreferenceBatch: Sendable {
    /// Targets on the completion tokens, and on the prompt tokens of the first rows where the layout scores them.
    public let sequences: Batch
    /// Per position of `sequences`: what its target belongs to.
    public let kinds: [TargetKind]
    /// Items in the batch (pairs or unpaired rows).
    public let items: Int
    /// Completions per item: 2 for pairs, 1 for unpaired rows.
    public let completionsPerItem: Int
    /// Unpaired rows: each row's label.
    public let labels: [Bool]?
    /// KTO: prompt + mismatched completion rows, targets on the completions.
    public let mismatched: Batch?
    /// The precomputed reference log-probabilities, one per row of `sequences` (then `mismatched`), when every item has them.
    public let reference: [Double]?
    public let mismatchedReference: [Double]?
    public let sources: [String]

    public init(sequences: Batch, kinds: [TargetKind], items: Int, completionsPerItem: Int, labels: [Bool]? = nil,
                mismatched: Batch? = nil, reference: [Double]? = nil, mismatchedReference: [Double]? = nil, sources: [String]) {
        self.sequences = sequences; self.kinds = kinds; self.items = items; self.completionsPerItem = completionsPerItem
        self.labels = labels; self.mismatched = mismatched; self.reference = reference
        self.mismatchedReference = mismatchedReference; self.sources = sources
    }
}

/// Lays preference items out in `PreferenceBatch`es, one row per completion, never packed.
public struct PreferenceBatchBuilder: BatchLayout, Equatable {
    public let batchSize: Int
    public let paddingID: Int
    /// Also put the prompt tokens of the first completions' rows in the targets (ORPO's NLL is over the whole chosen row).
    public let scoresPrompt: Bool

    public init(batchSize: Int, paddingID: Int, scoresPrompt: Bool = false) throws {
        guard batchSize >= 1 else { throw BatchError(message: "batch size must be at least 1, got \(batchSize)") }
        self.batchSize = batchSize
        self.paddingID = paddingID
        self.scoresPrompt = scoresPrompt
    }

    public func rows(_ examples: [PreferenceItem], order: [Int]) throws -> [[Int]] { order.map { [$0] } }

    public func batch(_ rows: [[PreferenceItem]]) throws -> PreferenceBatch {
        let items = rows.flatMap { $0 }
        guard let perItem = items.first?.completions.count, items.allSatisfy({ $0.completions.count == perItem }) else {
            throw BatchError(message: "a preference batch needs items with the same number of completions")
        }
        let padded = try BatchBuilder(batchSize: items.count * perItem, layout: .padded(length: nil), paddingID: paddingID)
        var sequences: [[SFTExample]] = [], promptLengths: [Int] = [], scored: [Bool] = []
        for k in 0..<perItem {
            for item in items {
                let scoresPrompt = scoresPrompt && k == 0
                sequences.append([Self.example(prompt: item.prompt, completion: item.completions[k], source: item.source,
                                               scoresPrompt: scoresPrompt)])
                promptLengths.append(item.prompt.count)
                scored.append(scoresPrompt)
            }
        }
        let batch = try padded.batch(sequences)
        var kinds = [TargetKind](repeating: .none, count: batch.inputs.count)
        for row in 0..<batch.batchSize {
            for t in 0..<batch.length where batch.targets[row * batch.length + t] >= 0 {
                // The target at t is token t + 1: a prompt token while t + 1 < the prompt's length.
                kinds[row * batch.length + t] = t + 1 < promptLengths[row] ? .prompt : .completion
            }
        }
        var mismatched: Batch?
        if items.allSatisfy({ $0.mismatched != nil }) {
            let rows = items.map { [Self.example(prompt: $0.prompt, completion: $0.mismatched ?? [], source: $0.source, scoresPrompt: false)] }
            // Padded to the main rows' length where they fit, so that they run in the same activations.
            let longest = rows.map { $0[0].ids.count }.max() ?? 0
            let layout = BatchBuilder.Layout.padded(length: longest <= batch.length && rows.count == items.count * perItem ? batch.length : nil)
            mismatched = try BatchBuilder(batchSize: rows.count, layout: layout, paddingID: paddingID).batch(rows)
        }
        let references = items.compactMap(\.reference)
        let hasReference = references.count == items.count
        return PreferenceBatch(
            sequences: batch, kinds: kinds, items: items.count, completionsPerItem: perItem,
            labels: items.allSatisfy({ $0.label != nil }) ? items.map { $0.label ?? false } : nil, mismatched: mismatched,
            reference: hasReference ? (0..<perItem).flatMap { k in references.map { $0[k] } } : nil,
            mismatchedReference: hasReference && mismatched != nil ? references.map { $0[perItem] } : nil,
            sources: items.map(\.source))
    }

    /// All batches of `items` in order (the last one may have fewer items).
    public func batches(_ items: [PreferenceItem]) throws -> [PreferenceBatch] {
        try stride(from: 0, to: items.count, by: batchSize).map { start in
            try batch(items[start..<min(start + batchSize, items.count)].map { [$0] })
        }
    }

    static func example(prompt: [Int], completion: [Int], source: String, scoresPrompt: Bool) -> SFTExample {
        let ids = prompt + completion
        let supervised = ids.indices.map { $0 > 0 && ($0 >= prompt.count || scoresPrompt) }
        return SFTExample(ids: ids, supervised: supervised, source: source, truncated: false)
    }
}
