import Foundation

/// What loading a preference or KTO dataset did: rows read, examples made, examples truncated, rows dropped (by
/// reason), tokens.
public struct PreferenceReport: Codable, Equatable, Sendable, CustomStringConvertible {
    public var rows = 0
    public var examples = 0
    /// Examples with a sequence cut to `max_length` (kept: each completion keeps at least one token).
    public var truncated = 0
    /// Rows left out, by reason (the `PreferenceDropReason` text).
    public var dropped: [String: Int] = [:]
    /// "file:line: dropped: reason" of the first dropped rows, for the user to look at (at most `sourceLimit`).
    public var droppedSources: [String] = []
    /// Prompt tokens, once per example.
    public var promptTokens = 0
    /// Completion tokens (chosen and rejected of a pair), the tokens whose log-probabilities the losses use.
    public var completionTokens = 0

    static let sourceLimit = 20

    public init() {}

    public var droppedCount: Int { dropped.values.reduce(0, +) }

    public var description: String {
        var text = "\(rows) rows → \(examples) examples, \(promptTokens) prompt and \(completionTokens) completion tokens"
        if truncated > 0 { text += ", \(truncated) truncated" }
        if !dropped.isEmpty {
            text += ", \(droppedCount) dropped: " + dropped.sorted { $0.key < $1.key }.map { "\($0.value) (\($0.key))" }.joined(separator: ", ")
        }
        return text
    }

    mutating func add(_ example: some TokenizedPreference) {
        examples += 1
        if example.truncated { truncated += 1 }
        promptTokens += example.prompt.count
        completionTokens += example.completionTokenCount
    }

    mutating func add(_ drop: PreferenceDrop) {
        dropped[drop.reason.rawValue, default: 0] += 1
        if droppedSources.count < Self.sourceLimit { droppedSources.append(drop.description) }
    }
}

/// Loads a JSONL (or CSV) dataset of preference pairs or KTO rows into token ids for one model.
public enum PreferenceDataset {
    /// Reads `url` (the format detected from the first row) and tokenizes every pair. Bad rows are errors naming
    /// file, line and field; rows with nothing to learn are dropped and counted.
    public static func loadPairs(_ url: URL, renderer: PreferenceRenderer) throws
        -> (examples: [PreferenceExample], report: PreferenceReport) {
        try load(url) { [try renderer.pair($0)] }
    }

    /// KTO rows; a file of pairs is unpaired as TRL's `unpair_preference_dataset` does (chosen → label true,
    /// rejected → false), each pair giving its two rows in turn (TRL gives a batch's chosen rows, then its rejected).
    public static func loadUnpaired(_ url: URL, renderer: PreferenceRenderer) throws
        -> (examples: [UnpairedExample], report: PreferenceReport) {
        try load(url) { row in
            guard case .preference(let pair) = row.record else { return [try renderer.unpaired(row)] }
            return try pair.unpaired.map { try renderer.unpaired($0, source: PreferenceRenderer.source(row)) }
        }
    }

    /// Reads the rows and renders each into examples; a dropped row is counted, and a file whose every row is
    /// dropped is an error saying why.
    static func load<Example: TokenizedPreference>(_ url: URL, render: (DatasetRow) throws -> [Example]) throws
        -> (examples: [Example], report: PreferenceReport) {
        let rows = try DatasetReader.read(url)
        guard !rows.isEmpty else { throw DatasetError(file: url.path, line: 0, message: "the dataset has no rows") }
        var report = PreferenceReport()
        report.rows = rows.count
        var examples: [Example] = []
        for row in rows {
            do {
                for example in try render(row) {
                    examples.append(example)
                    report.add(example)
                }
            } catch let drop as PreferenceDrop {
                report.add(drop)
            }
        }
        guard !examples.isEmpty else {
            throw DatasetError(file: url.path, line: 0, message:
                "every row was dropped (\(report.description)); first: \(report.droppedSources.first ?? "")")
        }
        return (examples, report)
    }
}

/// What the report counts of an example.
protocol TokenizedPreference {
    var prompt: [Int] { get }
    var completionTokenCount: Int { get }
    var truncated: Bool { get }
}

extension PreferenceExample: TokenizedPreference {
    var completionTokenCount: Int { chosen.count + rejected.count }
}

extension UnpairedExample: TokenizedPreference {
    var completionTokenCount: Int { completion.count }
}
