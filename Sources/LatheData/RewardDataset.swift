import Foundation

/// A preference pair as TRL 1.16.0's RewardTrainer tokenizes it (`_prepare_dataset`): the whole prompt + chosen and
/// prompt + rejected sequences (text: EOS appended to each answer, then `tokenizer(prompt + answer)`; conversational:
/// the chat template over prompt + answer messages, no generation prompt), and the row's optional `margin`.
public struct RewardPair: Equatable, Sendable {
    public var chosen: [Int]
    public var rejected: [Int]
    /// How much the chosen score should exceed the rejected one (the data's `margin` column), nil without one.
    public var margin: Double?
    /// "file:line" of the row it came from.
    public var source: String

    public init(chosen: [Int], rejected: [Int], margin: Double?, source: String) {
        self.chosen = chosen; self.rejected = rejected; self.margin = margin; self.source = source
    }
}

extension RewardPair: TokenizedPreference {
    /// For the report: what both sequences begin with.
    var prompt: [Int] { Array(chosen.prefix(commonPrefixCount(chosen, rejected))) }
    var completionTokenCount: Int { chosen.count + rejected.count - 2 * prompt.count }
    var truncated: Bool { false }
}

extension PreferenceDataset {
    /// Reads `url` and tokenizes every pair for a reward model; pairs with a sequence longer than `maxLength` are
    /// dropped and counted, as TRL filters them. A `margin` must be a number, and given on every row or on none
    /// (TRL's collator reads it from the batch's first row); errors name file, line and field.
    public static func loadRewardPairs(_ url: URL, renderer: PreferenceRenderer, maxLength: Int?) throws
        -> (pairs: [RewardPair], report: PreferenceReport) {
        // The renderer cuts nothing here: prompt + completion is then exactly TRL's whole sequence.
        let whole = PreferenceRenderer(model: renderer.model, maxLength: nil)
        var withMargin: Int?, withoutMargin: Int?
        let (pairs, report) = try load(url) { row -> [RewardPair] in
            let source = PreferenceRenderer.source(row)
            var margin: Double?
            switch row.line.value.object?["margin"] {
            case nil, .null?: withoutMargin = withoutMargin ?? row.line.line
            case .number(let value)?: margin = value; withMargin = withMargin ?? row.line.line
            case let other?: throw row.line.error("field \"margin\" must be a number, got \(other.summary)")
            }
            let example = try whole.pair(row)
            let pair = RewardPair(chosen: example.prompt + example.chosen, rejected: example.prompt + example.rejected,
                                  margin: margin, source: source)
            if let maxLength, max(pair.chosen.count, pair.rejected.count) > maxLength {
                throw PreferenceDrop(source: source, reason: .longerThanMaxLength)
            }
            return [pair]
        }
        if let withMargin, let withoutMargin {
            throw DatasetError(file: url.path, line: withoutMargin, message:
                "missing field \"margin\", which line \(withMargin) gives: give it on every row or on none")
        }
        return (pairs, report)
    }
}

/// A micro-batch of pairs as TRL's reward collator lays it out: every chosen sequence, then every rejected one,
/// right-padded with the pad token to the longest; each row's score is read at its last token that is not the pad.
public struct RewardBatch: Sendable {
    /// No targets: a reward model reads hidden states, not next-token predictions.
    public let sequences: Batch
    /// Per row, the flat index (row · length + t) of the position its score is read at.
    public let scoredPositions: [Int]
    public let pairs: Int
    public let margins: [Double]?
    public let sources: [String]
}

/// Lays reward pairs out in `RewardBatch`es.
public struct RewardBatchBuilder: BatchLayout, Equatable {
    public let batchSize: Int
    public let paddingID: Int

    public init(batchSize: Int, paddingID: Int) throws {
        guard batchSize >= 1 else { throw BatchError(message: "batch size must be at least 1, got \(batchSize)") }
        self.batchSize = batchSize
        self.paddingID = paddingID
    }

    public func rows(_ examples: [RewardPair], order: [Int]) throws -> [[Int]] { order.map { [$0] } }

    public func batch(_ rows: [[RewardPair]]) throws -> RewardBatch {
        let pairs = rows.flatMap { $0 }
        let sequences = pairs.map(\.chosen) + pairs.map(\.rejected)
        let length = sequences.map(\.count).max() ?? 0
        let padded = sequences.map { $0 + Array(repeating: paddingID, count: length - $0.count) }
        let batch = Batch(rows: padded, targets: padded.map { $0.map { _ in Batch.ignoredTarget } },
                          valid: sequences.map { s in (0..<length).map { $0 < s.count } })
        let margins = pairs.compactMap(\.margin)
        return RewardBatch(sequences: batch,
                           scoredPositions: padded.indices.map { $0 * length + ScoreHead.scoredPosition(of: padded[$0], padTokenID: paddingID) },
                           pairs: pairs.count, margins: margins.count == pairs.count ? margins : nil, sources: pairs.map(\.source))
    }

    /// All batches of `pairs` in order (the last one may have fewer pairs).
    public func batches(_ pairs: [RewardPair]) throws -> [RewardBatch] {
        try stride(from: 0, to: pairs.count, by: batchSize).map { try batch(pairs[$0..<min($0 + batchSize, pairs.count)].map { [$0] }) }
    }
}
