import Foundation

/// What `lathe data check` found in one file.
public struct DatasetCheckReport: Sendable {
    public let file: String
    /// The format most rows have (or the one asked for); nil when no row fits any.
    public let format: DatasetFormat?
    /// Non-blank lines (or CSV records) read.
    public let rowCount: Int
    /// Every problem, in line order.
    public let problems: [DatasetProblem]

    public var errorCount: Int { problems.filter { $0.severity == .error }.count }
    public var warningCount: Int { problems.filter { $0.severity == .warning }.count }
}

/// Finds every problem in a dataset file, not just the first: invalid JSON, rows of no known format, missing,
/// empty or mistyped fields, unknown roles, conversations that do not end with the assistant, duplicate `id`s
/// and rows whose format differs from the rest of the file.
public enum DatasetChecker {
    public static func check(_ url: URL, format: DatasetFormat? = nil) throws -> DatasetCheckReport {
        var problems: [DatasetProblem] = []
        let lines: [JSONLine]
        if url.pathExtension.lowercased() == "csv" {
            do { lines = try CSVTable.read(url) } catch let error as DatasetError {
                // A broken CSV structure stops the reading; report it as the file's one problem.
                return DatasetCheckReport(file: url.path, format: nil, rowCount: 0, problems: [
                    DatasetProblem(file: error.file, line: error.line, field: nil, severity: .error, message: error.message)])
            }
        } else {
            let data: Data
            do { data = try Data(contentsOf: url) } catch {
                throw DatasetError(file: url.path, line: 0, message: "cannot read the file (\(error.localizedDescription))")
            }
            (lines, problems) = parseAll(data, file: url.path)
        }
        return check(lines, file: url.path, format: format, lineProblems: problems)
    }

    /// Parses every line with the JSON Lines reader, carrying on past invalid lines to report them all.
    static func parseAll(_ data: Data, file: String) -> ([JSONLine], [DatasetProblem]) {
        let newline = UInt8(ascii: "\n")
        let slices = data.split(separator: newline, omittingEmptySubsequences: false)
        var lines: [JSONLine] = []
        var problems: [DatasetProblem] = []
        var start = 0
        while start < slices.count {
            // Lines before `start` are blanked so that the reader numbers the rest as in the file.
            var chunk = Data(repeating: newline, count: start)
            for (offset, slice) in slices[start...].enumerated() {
                if offset > 0 { chunk.append(newline) }
                chunk.append(contentsOf: slice)
            }
            do {
                lines += try JSONLines.parse(chunk, file: file)
                break
            } catch let error as JSONLinesError {
                problems.append(DatasetProblem(file: file, line: error.line, field: nil, severity: .error, message: error.message))
                // The reader reports lines it has read, so the bad line is after `start`; stop rather than loop if not.
                guard error.line > start else { break }
                // Read the good lines before the bad one again, then continue after it.
                var good = Data(repeating: newline, count: start)
                for (offset, slice) in slices[start..<(error.line - 1)].enumerated() {
                    if offset > 0 { good.append(newline) }
                    good.append(contentsOf: slice)
                }
                lines += (try? JSONLines.parse(good, file: file)) ?? []
                start = error.line
            } catch {
                problems.append(DatasetProblem(file: file, line: 0, field: nil, severity: .error, message: "\(error)"))
                break
            }
        }
        return (lines, problems)
    }

    /// Checks parsed lines; `lineProblems` (from parsing) are merged in line order.
    public static func check(_ lines: [JSONLine], file: String, format: DatasetFormat? = nil,
                             lineProblems: [DatasetProblem] = []) -> DatasetCheckReport {
        var problems = lineProblems
        let detected = lines.map { line in line.value.object.flatMap(DatasetReader.detect) }
        let fileFormat = format ?? mostCommon(detected.compactMap { $0 })
        var firstLineOfID: [String: Int] = [:]
        for (line, rowFormat) in zip(lines, detected) {
            guard let object = line.value.object else {
                problems.append(DatasetProblem(file: file, line: line.line, field: nil, severity: .error,
                                               message: "expected a JSON object, got \(line.value.summary)"))
                continue
            }
            if let id = object["id"], !id.isNull {
                let key = DatasetJSON.encode(id)
                if let first = firstLineOfID[key] {
                    problems.append(DatasetProblem(file: file, line: line.line, field: "id", severity: .error,
                                                   message: "field \"id\": duplicate id \(id.summary) (first on line \(first))"))
                } else {
                    firstLineOfID[key] = line.line
                }
            }
            // With no row of a known format, a row is read as the format it shares most fields with, to say what it lacks.
            guard let target = fileFormat ?? DatasetReader.closestFormat(object) else {
                problems.append(DatasetProblem(file: file, line: line.line, field: nil, severity: .error,
                                               message: DatasetReader.unknownFormatMessage(object)))
                continue
            }
            // An explicit format reads every row as that format, reporting what each lacks.
            if format == nil, let fileFormat, let rowFormat, rowFormat != fileFormat {
                problems.append(DatasetProblem(file: file, line: line.line, field: nil, severity: .error,
                                               message: "mixed formats: this row is \(rowFormat.rawValue), most rows are \(fileFormat.rawValue)"))
                continue
            }
            var decoder = RecordDecoder(line: line)
            _ = decoder.decode(as: target)
            problems += decoder.problems
        }
        problems.sort { $0.line < $1.line }
        return DatasetCheckReport(file: file, format: fileFormat, rowCount: lines.count + lineProblems.count, problems: problems)
    }

    /// The most frequent format, the earliest on ties; nil for none.
    static func mostCommon(_ formats: [DatasetFormat]) -> DatasetFormat? {
        var counts: [DatasetFormat: Int] = [:]
        for format in formats { counts[format, default: 0] += 1 }
        var best: DatasetFormat?
        for format in formats {
            if let current = best, counts[current, default: 0] >= counts[format, default: 0] { continue }
            best = format
        }
        return best
    }
}
