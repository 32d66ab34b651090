import Foundation
@_exported import LatheModels
@_exported import LatheTemplates

/// The shape of one dataset row, named as in the `lathe data --format` flag.
public enum DatasetFormat: String, CaseIterable, Sendable {
    case text
    case promptCompletion = "prompt_completion"
    case messages
    case alpaca
    case sharegpt
    case preference
    case kto

    /// The fields a row of this format is made of; any other field is metadata (ids, sources, labels...).
    public var contentFields: [String] {
        switch self {
        case .text: return ["text"]
        case .promptCompletion: return ["prompt", "completion"]
        case .messages: return ["messages"]
        case .alpaca: return ["system", "instruction", "input", "output"]
        case .sharegpt: return ["conversations"]
        case .preference: return ["prompt", "chosen", "rejected"]
        case .kto: return ["prompt", "completion", "label"]
        }
    }

    /// The fields whose presence identifies the format.
    var identifyingFields: [String] {
        switch self {
        case .preference: return ["chosen", "rejected"]
        case .kto: return ["completion", "label"]
        case .messages: return ["messages"]
        case .sharegpt: return ["conversations"]
        case .alpaca: return ["instruction", "output"]
        case .promptCompletion: return ["prompt", "completion"]
        case .text: return ["text"]
        }
    }

    /// The order in which formats are tried when detecting: a KTO row also has prompt and completion.
    static let detectionOrder: [DatasetFormat] = [.preference, .kto, .messages, .sharegpt, .alpaca, .promptCompletion, .text]
}

/// One row's content, decoded and validated. Alpaca and ShareGPT rows become `messages`.
public enum DatasetRecord: Sendable, Equatable {
    case text(String)
    case promptCompletion(prompt: String, completion: String)
    case messages([ChatMessage])
    case preference(PreferenceRecord)
    case kto(KTORecord)
}

/// A field of a preference or KTO row in one of TRL's two forms: plain text, or chat messages (conversational).
public enum PreferenceContent: Sendable, Equatable {
    case text(String)
    case messages([ChatMessage])

    public var isConversational: Bool {
        if case .messages = self { return true }
        return false
    }

    /// The text, or the messages' contents joined by blank lines: for lengths and comparisons, not for training.
    public var plainText: String {
        switch self {
        case .text(let text): return text
        case .messages(let messages): return messages.map(\.content).joined(separator: "\n\n")
        }
    }
}

/// A preference pair (DPO, ORPO, SimPO): a prompt and two answers, every field text or every field messages.
/// A row without a prompt has had it extracted as TRL's `extract_prompt` does (what both answers begin with).
public struct PreferenceRecord: Sendable, Equatable {
    public var prompt: PreferenceContent
    public var chosen: PreferenceContent
    public var rejected: PreferenceContent

    public init(prompt: PreferenceContent, chosen: PreferenceContent, rejected: PreferenceContent) {
        self.prompt = prompt; self.chosen = chosen; self.rejected = rejected
    }

    /// The two KTO rows TRL's `unpair_preference_dataset` makes of the pair: chosen labelled true, rejected false.
    public var unpaired: [KTORecord] {
        [KTORecord(prompt: prompt, completion: chosen, label: true), KTORecord(prompt: prompt, completion: rejected, label: false)]
    }
}

/// A KTO row: a prompt and one answer labelled desirable (true) or not, both text or both messages.
public struct KTORecord: Sendable, Equatable {
    public var prompt: PreferenceContent
    public var completion: PreferenceContent
    public var label: Bool

    public init(prompt: PreferenceContent, completion: PreferenceContent, label: Bool) {
        self.prompt = prompt; self.completion = completion; self.label = label
    }
}

// ChatMessage holds two strings; LatheTemplates predates Sendable annotations.
extension ChatMessage: @unchecked Sendable {}

/// One decoded row: where it came from, the format it was read as, and its content.
public struct DatasetRow: Sendable {
    public let line: JSONLine
    public let format: DatasetFormat
    public let record: DatasetRecord

    public init(line: JSONLine, format: DatasetFormat, record: DatasetRecord) {
        self.line = line
        self.format = format
        self.record = record
    }
}

/// Reads dataset files (JSON Lines, or CSV with a header) into validated rows.
public enum DatasetReader {
    /// Reads JSONL (or CSV with a header, by the `.csv` extension) and decodes every row as `format`, or as the
    /// format detected from the first row; throws the first problem as a `JSONLinesError` naming file, line and
    /// field. `DatasetChecker` reports every problem instead.
    public static func read(_ url: URL, format: DatasetFormat? = nil) throws -> [DatasetRow] {
        let lines = try readLines(url)
        guard let first = lines.first else { return [] }
        let fileFormat: DatasetFormat
        if let format {
            fileFormat = format
        } else {
            guard let object = first.value.object else { throw first.error("expected a JSON object, got \(first.value.summary)") }
            guard let detected = detect(object) else { throw first.error(unknownFormatMessage(object)) }
            fileFormat = detected
        }
        return try lines.map { line in
            if format == nil, let object = line.value.object, let detected = detect(object), detected != fileFormat {
                throw line.error("mixed formats: this row is \(detected.rawValue), the file's first row is \(fileFormat.rawValue)")
            }
            return DatasetRow(line: line, format: fileFormat, record: try decode(line, as: fileFormat))
        }
    }

    /// Detects one row's format from its keys (nil when it fits none); null fields count as absent. A row is KTO
    /// only when its `label` is true or false: prompt/completion rows often carry a category `label`.
    public static func detect(_ object: [String: JSONValue]) -> DatasetFormat? {
        DatasetFormat.detectionOrder.first { format in
            if format == .kto, object["label"]?.bool == nil { return false }
            return format.identifyingFields.allSatisfy { object[$0].map { !$0.isNull } ?? false }
        }
    }

    /// Decodes one line as `format`; throws the first error (not warnings) naming the line and field.
    public static func decode(_ line: JSONLine, as format: DatasetFormat) throws -> DatasetRecord {
        var decoder = RecordDecoder(line: line)
        let record = decoder.decode(as: format)
        if let error = decoder.problems.first(where: { $0.severity == .error }) {
            throw line.error(error.message)
        }
        guard let record else { throw line.error("cannot decode the row as \(format.rawValue)") }
        return record
    }

    /// The lines of a JSONL file, or the records of a CSV file (by extension) as JSON objects.
    public static func readLines(_ url: URL) throws -> [JSONLine] {
        if url.pathExtension.lowercased() == "csv" { return try CSVTable.read(url) }
        return try JSONLines.read(url)
    }

    /// The format a row most likely meant, for reporting what it lacks: the one sharing the most fields.
    static func closestFormat(_ object: [String: JSONValue]) -> DatasetFormat? {
        var best: (format: DatasetFormat, shared: Int)?
        for format in DatasetFormat.detectionOrder {
            let shared = format.contentFields.filter { object[$0].map { !$0.isNull } ?? false }.count
            if shared > (best?.shared ?? 0) { best = (format, shared) }
        }
        return best?.format
    }

    static func unknownFormatMessage(_ object: [String: JSONValue]) -> String {
        let keys = object.keys.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
        return "no known dataset format fits the fields {\(keys)}: expected text, prompt+completion, messages, "
            + "instruction+output (Alpaca), conversations (ShareGPT), prompt+chosen+rejected or prompt+completion+label (KTO)"
    }
}
