import Foundation

/// A dataset file read for rewriting (split, dedup, balance): every row as parsed JSON plus the exact text
/// of its input line, so rows are written back byte for byte. CSV records are written as JSON objects.
public struct DatasetFile: Sendable {
    public let url: URL
    public let lines: [JSONLine]
    /// The input text of each line in `lines`, without its line break.
    public let texts: [String]

    public init(url: URL, lines: [JSONLine], texts: [String]) {
        self.url = url
        self.lines = lines
        self.texts = texts
    }

    /// Reads a JSONL or CSV file; every row must be a JSON object.
    public static func read(_ url: URL) throws -> DatasetFile {
        let lines = try DatasetReader.readLines(url)
        for line in lines where line.value.object == nil {
            throw line.error("expected a JSON object, got \(line.value.summary)")
        }
        if url.pathExtension.lowercased() == "csv" {
            return DatasetFile(url: url, lines: lines, texts: lines.map { DatasetJSON.encode($0.value) })
        }
        let data = try Data(contentsOf: url)
        let slices = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        let texts = lines.map { line -> String in
            var bytes = slices[slices.startIndex + line.line - 1]
            if bytes.last == UInt8(ascii: "\r") { bytes = bytes.dropLast() }
            return String(decoding: bytes, as: UTF8.self)
        }
        return DatasetFile(url: url, lines: lines, texts: texts)
    }

    /// The format most rows have, or nil when none fits.
    public var detectedFormat: DatasetFormat? {
        DatasetChecker.mostCommon(lines.compactMap { $0.value.object.flatMap(DatasetReader.detect) })
    }

    /// The value of `field` in each row, as text ("" when absent); throws naming the first row without it
    /// when `required`.
    func values(of field: String, required: Bool) throws -> [String?] {
        try lines.map { line in
            guard let value = line.value[field], !value.isNull else {
                if required { throw line.error("missing field \"\(field)\"") }
                return nil
            }
            return DatasetJSON.text(of: value)
        }
    }
}
