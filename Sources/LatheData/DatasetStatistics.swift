import Foundation

/// Minimum, median, 95th percentile and maximum of a list of lengths (nearest-rank percentiles), and their sum.
public struct LengthSummary: Sendable, Equatable, Codable {
    public let count: Int
    /// Every length added up (a file's tokens per epoch, for `lathe advise`'s time estimate).
    public let sum: Int
    public let min: Int
    public let median: Int
    public let p95: Int
    public let max: Int

    public init?(_ values: [Int]) {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        count = sorted.count
        sum = sorted.reduce(0, +)
        min = sorted[0]
        median = Self.percentile(sorted, 0.5)
        p95 = Self.percentile(sorted, 0.95)
        max = sorted[sorted.count - 1]
    }

    /// The nearest-rank percentile of sorted values: the smallest value with at least `q` of the values at or below it.
    static func percentile(_ sorted: [Int], _ q: Double) -> Int {
        let rank = Int((q * Double(sorted.count)).rounded(.up))
        return sorted[Swift.max(0, Swift.min(sorted.count - 1, rank - 1))]
    }
}

/// What `lathe data stats` reports about one file.
public struct DatasetStats: Sendable, Codable {
    /// One field's (or role's) lengths.
    public struct FieldLengths: Sendable, Codable, Equatable {
        public let field: String
        public let lengths: LengthSummary
    }
    /// A count of rows with a label value.
    public struct LabelCount: Sendable, Codable, Equatable {
        public let label: String
        public let count: Int
    }
    /// Rows that look wrong without reading their language, by line number.
    public struct QualityFlags: Sendable, Codable, Equatable {
        /// Answers (completion, assistant turn, output, chosen/rejected) that are empty or blank.
        public var emptyAnswers: [Int] = []
        /// Answers equal to their prompt after normalising case and whitespace.
        public var answerRepeatsPrompt: [Int] = []
        /// Answers under a tenth of the median answer length.
        public var veryShortAnswers: [Int] = []
        /// Rows longer in total than the third quartile plus three interquartile ranges.
        public var veryLongRows: [Int] = []
    }

    public let file: String
    public let format: DatasetFormat.RawValue?
    public let rows: Int
    /// Rows that could not be decoded as the file's format (`lathe data check` says why).
    public let invalidRows: Int
    /// "tokens" with a tokenizer, "characters" without.
    public let unit: String
    public let fields: [FieldLengths]
    /// Turns per conversation (messages, Alpaca, ShareGPT).
    public let turns: LengthSummary?
    /// Each row's whole length: the rendered conversation when a chat template is given, else the sum of its fields.
    public let total: LengthSummary?
    public let maxLength: Int?
    public let overMaxLength: Int?
    public let labelField: String?
    public let labels: [LabelCount]
    public let flags: QualityFlags
}

/// Computes `DatasetStats`; the tokenizer comes in as a length function so the library needs no model.
public enum DatasetStatistics {
    /// - Parameters:
    ///   - measure: the length of a text (token count, or characters).
    ///   - renderConversation: the chat template applied to a conversation, for conversation totals.
    ///   - labelField: the field whose values to count (KTO rows count `label` when nil).
    public static func compute(_ url: URL, format: DatasetFormat? = nil, unit: String, measure: (String) -> Int,
                               renderConversation: (([ChatMessage]) throws -> String)? = nil,
                               maxLength: Int? = nil, labelField: String? = nil) throws -> DatasetStats {
        // Invalid JSON lines count as invalid rows rather than stopping the statistics.
        var lines: [JSONLine], unreadable = 0
        if url.pathExtension.lowercased() == "csv" {
            lines = try DatasetReader.readLines(url)
        } else {
            let data: Data
            do { data = try Data(contentsOf: url) } catch {
                throw DatasetError(file: url.path, line: 0, message: "cannot read the file (\(error.localizedDescription))")
            }
            let (parsed, problems) = DatasetChecker.parseAll(data, file: url.path)
            lines = parsed
            unreadable = problems.count
        }
        let fileFormat = format ?? DatasetChecker.mostCommon(lines.compactMap { $0.value.object.flatMap(DatasetReader.detect) })
        var fieldOrder: [String] = []
        var fieldLengths: [String: [Int]] = [:]
        func add(_ field: String, _ length: Int) {
            if fieldLengths[field] == nil { fieldOrder.append(field) }
            fieldLengths[field, default: []].append(length)
        }
        var totals: [Int] = [], totalLines: [Int] = [], turns: [Int] = []
        var answers: [(line: Int, length: Int)] = []
        var flags = DatasetStats.QualityFlags()
        var invalid = unreadable
        var labelCounts: [String: Int] = [:]
        let labelKey = labelField ?? (fileFormat == .kto ? "label" : nil)

        for line in lines {
            if let labelKey, let object = line.value.object {
                let value = object[labelKey].map(DatasetJSON.text(of:)) ?? "(missing)"
                labelCounts[value, default: 0] += 1
            }
            var decoder = RecordDecoder(line: line)
            guard let fileFormat, let record = decoder.decode(as: fileFormat) else {
                invalid += 1
                continue
            }
            var prompt = ""
            var rowAnswers: [String] = []
            var total = 0
            /// Records a prompt and its answers; a row is as long as its prompt and its longest answer.
            func promptAndAnswers(_ text: String, _ fields: [(name: String, text: String)]) -> Int {
                prompt = text
                rowAnswers = fields.map(\.text)
                let length = measure(text)
                add("prompt", length)
                let answers = fields.map { field in
                    let answer = measure(field.text)
                    add(field.name, answer)
                    return answer
                }
                return length + (answers.max() ?? 0)
            }
            switch record {
            case .text(let text):
                total = measure(text)
                add("text", total)
            case .promptCompletion(let p, let completion):
                total = promptAndAnswers(p, [("completion", completion)])
            case .kto(let row):
                total = promptAndAnswers(row.prompt.plainText, [("completion", row.completion.plainText)])
            case .preference(let pair):
                total = promptAndAnswers(pair.prompt.plainText, [("chosen", pair.chosen.plainText),
                                                                 ("rejected", pair.rejected.plainText)])
            case .messages(let messages):
                turns.append(messages.count)
                for message in messages {
                    let length = measure(message.content)
                    add(message.role, length)
                    total += length
                    if message.role == "assistant" {
                        rowAnswers.append(message.content)
                    } else if message.role == "user" {
                        prompt = message.content
                    }
                }
                if let renderConversation { total = measure(try renderConversation(messages)) }
            }
            totals.append(total)
            totalLines.append(line.line)
            for answer in rowAnswers {
                let normalized = TextNormalizer.normalize(answer)
                if normalized.isEmpty {
                    flags.emptyAnswers.append(line.line)
                } else {
                    answers.append((line.line, measure(answer)))
                    if normalized == TextNormalizer.normalize(prompt) { flags.answerRepeatsPrompt.append(line.line) }
                }
            }
        }

        if let median = LengthSummary(answers.map(\.length))?.median {
            flags.veryShortAnswers = answers.filter { $0.length * 10 < median }.map(\.line)
        }
        if !totals.isEmpty {
            let sorted = totals.sorted()
            let q1 = LengthSummary.percentile(sorted, 0.25), q3 = LengthSummary.percentile(sorted, 0.75)
            let limit = q3 + 3 * (q3 - q1)
            flags.veryLongRows = zip(totals, totalLines).filter { $0.0 > limit }.map(\.1)
        }
        flags.emptyAnswers = unique(flags.emptyAnswers)
        flags.answerRepeatsPrompt = unique(flags.answerRepeatsPrompt)
        flags.veryShortAnswers = unique(flags.veryShortAnswers)

        return DatasetStats(
            file: url.path, format: fileFormat?.rawValue, rows: lines.count + unreadable, invalidRows: invalid, unit: unit,
            fields: fieldOrder.compactMap { field in
                LengthSummary(fieldLengths[field] ?? []).map { DatasetStats.FieldLengths(field: field, lengths: $0) }
            },
            turns: LengthSummary(turns), total: LengthSummary(totals), maxLength: maxLength,
            overMaxLength: maxLength.map { limit in totals.filter { $0 > limit }.count },
            labelField: labelKey,
            labels: labelCounts.map { DatasetStats.LabelCount(label: $0.key, count: $0.value) }
                .sorted { ($0.count, $1.label) > ($1.count, $0.label) },
            flags: flags)
    }

    private static func unique(_ lines: [Int]) -> [Int] {
        var seen = Set<Int>()
        return lines.filter { seen.insert($0).inserted }
    }
}
