import Foundation

/// Reads a CSV file with a header row (RFC 4180 quoting) as JSON objects, one per record, numbered by the
/// line the record starts on. Cells `true`/`false` become booleans and cells holding a JSON array or object
/// (a `messages` column) are parsed; every other cell stays a string.
enum CSVTable {
    static func read(_ url: URL) throws -> [JSONLine] {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw DatasetError(file: url.path, line: 0, message: "cannot read the file (\(error.localizedDescription))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw DatasetError(file: url.path, line: 0, message: "the file is not valid UTF-8")
        }
        let records = try parse(text, file: url.path)
        guard let header = records.first else { return [] }
        // The rows go back through the one JSON Lines reader, each on the line it started on, so that
        // `JSONLine` numbers match the CSV file.
        var lines: [String] = []
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        for record in records.dropFirst() {
            if record.cells.count == 1, record.cells[0].isEmpty { continue }
            guard record.cells.count == header.cells.count else {
                throw DatasetError(file: url.path, line: record.line,
                                     message: "the record has \(record.cells.count) cells, the header has \(header.cells.count)")
            }
            var object: [String: JSONValue] = [:]
            for (name, cell) in zip(header.cells, record.cells) { object[name] = value(of: cell) }
            while lines.count < record.line - 1 { lines.append("") }
            lines.append(String(decoding: try encoder.encode(JSONValue.object(object)), as: UTF8.self))
        }
        return try JSONLines.parse(Data(lines.joined(separator: "\n").utf8), file: url.path)
    }

    private static func value(of cell: String) -> JSONValue {
        if cell == "true" { return .bool(true) }
        if cell == "false" { return .bool(false) }
        if let first = cell.first, first == "[" || first == "{", let parsed = try? JSONValue.parse(Data(cell.utf8)) {
            return parsed
        }
        return .string(cell)
    }

    struct Record { let line: Int; var cells: [String] }

    /// Splits CSV text into records of cells; quoted cells may hold commas, doubled quotes and newlines.
    static func parse(_ text: String, file: String) throws -> [Record] {
        var records: [Record] = []
        var cells: [String] = []
        var cell = ""
        var line = 1, recordLine = 1
        var quoted = false, quoteLine = 0
        var characters = Array(text.unicodeScalars)[...]
        while let c = characters.popFirst() {
            if quoted {
                if c == "\"" {
                    if characters.first == "\"" { cell.unicodeScalars.append("\""); characters.removeFirst() } else { quoted = false }
                } else {
                    if c == "\n" { line += 1 }
                    cell.unicodeScalars.append(c)
                }
                continue
            }
            switch c {
            case "\"" where cell.isEmpty:
                quoted = true
                quoteLine = line
            case ",":
                cells.append(cell)
                cell = ""
            case "\r" where characters.first == "\n":
                continue
            case "\n":
                cells.append(cell)
                records.append(Record(line: recordLine, cells: cells))
                cells = []
                cell = ""
                line += 1
                recordLine = line
            default:
                cell.unicodeScalars.append(c)
            }
        }
        if quoted { throw DatasetError(file: file, line: quoteLine, message: "a quoted cell is never closed") }
        if !cell.isEmpty || !cells.isEmpty {
            cells.append(cell)
            records.append(Record(line: recordLine, cells: cells))
        }
        return records
    }
}
