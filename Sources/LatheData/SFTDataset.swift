import Foundation

/// What loading an SFT dataset did: rows read, examples made, rows truncated or skipped (by reason), tokens.
public struct SFTReport: Codable, Equatable, Sendable, CustomStringConvertible {
    public var rows = 0
    public var examples = 0
    /// Examples cut to `max_length` (kept, with at least one supervised token left).
    public var truncated = 0
    /// Rows left out, by reason (the `SFTSkipReason` text).
    public var skipped: [String: Int] = [:]
    /// "file:line: reason" of the first skipped rows, for the user to look at (at most `sourceLimit`).
    public var skippedSources: [String] = []
    /// Tokens whose prediction is in the loss.
    public var supervisedTokens = 0
    public var totalTokens = 0

    static let sourceLimit = 20

    public init() {}

    public var skippedCount: Int { skipped.values.reduce(0, +) }

    public var description: String {
        var text = "\(rows) rows → \(examples) examples, \(totalTokens) tokens (\(supervisedTokens) supervised)"
        if truncated > 0 { text += ", \(truncated) truncated" }
        if !skipped.isEmpty {
            text += ", \(skippedCount) skipped: " + skipped.sorted { $0.key < $1.key }.map { "\($0.value) (\($0.key))" }.joined(separator: ", ")
        }
        return text
    }

    mutating func add(_ example: SFTExample) {
        examples += 1
        if example.truncated { truncated += 1 }
        supervisedTokens += example.supervisedCount
        totalTokens += example.ids.count
    }

    mutating func add(_ skip: SFTSkip) {
        skipped[skip.reason.rawValue, default: 0] += 1
        if skippedSources.count < Self.sourceLimit { skippedSources.append(skip.description) }
    }
}

/// Loads a JSONL (or CSV) dataset into SFT examples for one model.
public enum SFTDataset {
    /// Reads `url` with `DatasetReader` (the format detected from the first row unless given) and renders every
    /// row. Bad rows are errors naming file and line; rows with nothing to learn are skipped and counted.
    public static func load(_ url: URL, renderer: SFTRenderer, format: DatasetFormat? = nil) throws
        -> (examples: [SFTExample], report: SFTReport) {
        let rows = try DatasetReader.read(url, format: format)
        guard !rows.isEmpty else { throw DatasetError(file: url.path, line: 0, message: "the dataset has no rows") }
        var report = SFTReport()
        report.rows = rows.count
        var examples: [SFTExample] = []
        examples.reserveCapacity(rows.count)
        for row in rows {
            do {
                let example = try renderer.render(row)
                examples.append(example)
                report.add(example)
            } catch let skip as SFTSkip {
                report.add(skip)
            }
        }
        guard !examples.isEmpty else {
            throw DatasetError(file: url.path, line: 0, message:
                "every row was skipped (\(report.description)); first: \(report.skippedSources.first ?? "")")
        }
        return (examples, report)
    }
}
