import Foundation

/// Decodes one row as a given format, collecting every problem instead of stopping at the first, so that
/// `DatasetReader.decode` (first error) and `DatasetChecker` (all problems) share one set of rules.
/// A record is returned whenever the fields have the right types, even when some are empty (an error),
/// so that statistics can still count empty answers.
struct RecordDecoder {
    let line: JSONLine
    private(set) var problems: [DatasetProblem] = []

    init(line: JSONLine) { self.line = line }

    static let knownRoles: Set<String> = ["system", "user", "assistant", "tool"]
    /// ShareGPT speaker names and the chat role each becomes.
    static let shareGPTRoles: [String: String] = ["human": "user", "user": "user", "gpt": "assistant",
                                                  "assistant": "assistant", "system": "system", "tool": "tool"]

    mutating func decode(as format: DatasetFormat) -> DatasetRecord? {
        guard let object = line.value.object else {
            report(nil, .error, "expected a JSON object, got \(line.value.summary)")
            return nil
        }
        switch format {
        case .text:
            guard let text = string(object, "text", emptyIs: .error) else { return nil }
            return .text(text)
        case .promptCompletion:
            let prompt = string(object, "prompt", emptyIs: .warning)
            let completion = string(object, "completion", emptyIs: .error)
            guard let prompt, let completion else { return nil }
            if isRepeat(completion, of: prompt) { report("completion", .warning, "field \"completion\" repeats the prompt") }
            return .promptCompletion(prompt: prompt, completion: completion)
        case .messages:
            guard let messages = conversation(object, "messages", roleKey: "role", contentKey: "content", roles: nil) else { return nil }
            return .messages(messages)
        case .sharegpt:
            guard let messages = conversation(object, "conversations", roleKey: "from", contentKey: "value",
                                              roles: Self.shareGPTRoles) else { return nil }
            return .messages(messages)
        case .alpaca:
            let system = optionalString(object, "system")
            let instruction = string(object, "instruction", emptyIs: .error)
            let input = optionalString(object, "input")
            let output = string(object, "output", emptyIs: .error)
            guard let instruction, let output else { return nil }
            var messages: [ChatMessage] = []
            if let system, !system.isEmpty { messages.append(ChatMessage(role: "system", content: system)) }
            let user = (input ?? "").isEmpty ? instruction : instruction + "\n\n" + (input ?? "")
            messages.append(ChatMessage(role: "user", content: user))
            messages.append(ChatMessage(role: "assistant", content: output))
            if isRepeat(output, of: user) { report("output", .warning, "field \"output\" repeats the instruction") }
            return .messages(messages)
        case .preference:
            return preference(object).map(DatasetRecord.preference)
        case .kto:
            return kto(object).map(DatasetRecord.kto)
        }
    }

    // MARK: Preference rows

    /// A pair in TRL's form: every field a string, or every field a list of messages; without "prompt", the prompt
    /// is what "chosen" and "rejected" begin with alike, as TRL's `extract_prompt` takes it.
    private mutating func preference(_ object: [String: JSONValue]) -> PreferenceRecord? {
        let given = object["prompt"].map { !$0.isNull } ?? false
        let prompt = given ? content(object, "prompt", emptyIs: .warning) : nil
        guard let chosen = content(object, "chosen", emptyIs: .error),
              let rejected = content(object, "rejected", emptyIs: .error), prompt != nil || !given,
              sameForm([("chosen", chosen), ("rejected", rejected)] + (prompt.map { [("prompt", $0)] } ?? [])) else { return nil }
        let record = prompt.map { PreferenceRecord(prompt: $0, chosen: chosen, rejected: rejected) }
            ?? Self.extractPrompt(chosen: chosen, rejected: rejected)
        // Problems name the row's own fields: an extracted prompt's messages still count in the answers' indices.
        var skipped = 0, hint = ""
        if prompt == nil, case .messages(let messages) = record.prompt {
            skipped = messages.count
            hint = " (without \"prompt\", the prompt is the messages \"chosen\" and \"rejected\" begin with alike)"
        }
        guard assistantOnly(record.chosen, "chosen", skipped: skipped, hint: hint),
              assistantOnly(record.rejected, "rejected", skipped: skipped, hint: hint) else { return nil }
        if record.chosen == record.rejected, !isBlank(record.chosen.plainText) {
            report("rejected", .warning, "fields \"chosen\" and \"rejected\" are the same text")
        }
        return record
    }

    private mutating func kto(_ object: [String: JSONValue]) -> KTORecord? {
        let prompt = content(object, "prompt", emptyIs: .warning)
        let completion = content(object, "completion", emptyIs: .error)
        var label: Bool?
        switch object["label"] {
        case nil, .null?: report("label", .error, "missing field \"label\"")
        case .bool(let value)?: label = value
        case let other?: report("label", .error, "field \"label\" must be true or false, got \(other.summary)")
        }
        guard let prompt, let completion, let label, sameForm([("completion", completion), ("prompt", prompt)]),
              assistantOnly(completion, "completion", skipped: 0, hint: "") else { return nil }
        return KTORecord(prompt: prompt, completion: completion, label: label)
    }

    /// TRL's `extract_prompt`: the longest common prefix of the two answers (messages, or characters of text) is the
    /// prompt. As there, the last element of the shorter answer is never taken (the search ends on its index, so
    /// neither answer is left empty), and in text a space before the split goes to the answers.
    static func extractPrompt(chosen: PreferenceContent, rejected: PreferenceContent) -> PreferenceRecord {
        func split<T: Equatable>(_ a: [T], _ b: [T], space: T?) -> Int {
            var index = max(0, min(a.count, b.count) - 1)
            if let differing = zip(a, b).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
                index = differing
                if index > 0, let space, a[index - 1] == space { index -= 1 }
            }
            return index
        }
        switch (chosen, rejected) {
        case (.messages(let a), .messages(let b)):
            let n = split(a, b, space: nil)
            return PreferenceRecord(prompt: .messages(Array(a[..<n])), chosen: .messages(Array(a[n...])), rejected: .messages(Array(b[n...])))
        default:
            // Python indexes strings by code point.
            let a = Array(chosen.plainText.unicodeScalars), b = Array(rejected.plainText.unicodeScalars)
            let n = split(a, b, space: " ")
            func text(_ scalars: ArraySlice<Unicode.Scalar>) -> PreferenceContent { .text(String(String.UnicodeScalarView(scalars))) }
            return PreferenceRecord(prompt: text(a[..<n]), chosen: text(a[n...]), rejected: text(b[n...]))
        }
    }

    /// A field of a preference or KTO row: a string, or a list of messages (TRL's conversational form).
    private mutating func content(_ object: [String: JSONValue], _ key: String,
                                  emptyIs severity: DatasetProblem.Severity) -> PreferenceContent? {
        guard case .array? = object[key] else { return string(object, key, emptyIs: severity).map(PreferenceContent.text) }
        return conversation(object, key, roleKey: "role", contentKey: "content", roles: nil, endsWithAssistant: false)
            .map(PreferenceContent.messages)
    }

    /// TRL tokenizes a row either as text or through the chat template: every field must have the first one's form.
    private mutating func sameForm(_ fields: [(key: String, value: PreferenceContent)]) -> Bool {
        guard let first = fields.first else { return true }
        func form(_ value: PreferenceContent) -> String { value.isConversational ? "a list of messages" : "a string" }
        for field in fields.dropFirst() where field.value.isConversational != first.value.isConversational {
            report(field.key, .error, "field \"\(field.key)\" is \(form(field.value)) while \"\(first.key)\" is \(form(first.value)): "
                   + "give every field as a string or every field as a list of messages")
            return false
        }
        return true
    }

    /// An answer given as messages holds assistant messages only; `skipped` messages went to an extracted prompt.
    private mutating func assistantOnly(_ content: PreferenceContent, _ key: String, skipped: Int, hint: String) -> Bool {
        guard case .messages(let messages) = content,
              let index = messages.firstIndex(where: { $0.role != "assistant" }) else { return true }
        let field = "\(key)[\(skipped + index)]"
        report("\(field).role", .error, "field \"\(field).role\": an answer holds only assistant messages, got \(messages[index].role)" + hint)
        return false
    }

    // MARK: Fields

    private mutating func report(_ field: String?, _ severity: DatasetProblem.Severity, _ message: String) {
        problems.append(DatasetProblem(file: line.file, line: line.line, field: field, severity: severity, message: message))
    }

    /// A required string field; empty (or blank) text is reported with `emptyIs` severity but still returned.
    private mutating func string(_ object: [String: JSONValue], _ key: String, emptyIs severity: DatasetProblem.Severity,
                                 label: String? = nil) -> String? {
        let name = label ?? key
        switch object[key] {
        case nil, .null?:
            report(name, .error, "missing field \"\(name)\"")
            return nil
        case .string(let text)?:
            if isBlank(text) { report(name, severity, "field \"\(name)\" is empty") }
            return text
        case let other?:
            report(name, .error, "field \"\(name)\" must be a string, got \(other.summary)")
            return nil
        }
    }

    /// An optional string field: absent or null is "", another type is an error.
    private mutating func optionalString(_ object: [String: JSONValue], _ key: String) -> String? {
        switch object[key] {
        case nil, .null?: return ""
        case .string(let text)?: return text
        case let other?:
            report(key, .error, "field \"\(key)\" must be a string, got \(other.summary)")
            return nil
        }
    }

    /// A list of `{roleKey, contentKey}` messages, checked as a training conversation: known roles, non-empty
    /// turns, ending with the assistant (unless `endsWithAssistant` is false: a prompt, or answers checked apart).
    /// `roles` maps ShareGPT speaker names; nil means chat roles as they are.
    private mutating func conversation(_ object: [String: JSONValue], _ key: String, roleKey: String, contentKey: String,
                                       roles: [String: String]?, endsWithAssistant: Bool = true) -> [ChatMessage]? {
        guard let value = object[key], !value.isNull else {
            report(key, .error, "missing field \"\(key)\"")
            return nil
        }
        guard let array = value.array else {
            report(key, .error, "field \"\(key)\" must be an array of messages, got \(value.summary)")
            return nil
        }
        guard !array.isEmpty else {
            report(key, .error, "field \"\(key)\" is empty")
            return nil
        }
        var messages: [ChatMessage] = []
        var typesAreRight = true
        for (index, element) in array.enumerated() {
            let field = "\(key)[\(index)]"
            guard let message = element.object else {
                report(field, .error, "field \"\(field)\" must be an object with \"\(roleKey)\" and \"\(contentKey)\", got \(element.summary)")
                typesAreRight = false
                continue
            }
            var role: String?
            switch message[roleKey] {
            case .string(let name)?:
                if let roles {
                    role = roles[name]
                    if role == nil {
                        report("\(field).\(roleKey)", .error, "field \"\(field).\(roleKey)\": unknown speaker \"\(name)\" "
                               + "(expected human, gpt or system)")
                    }
                } else if Self.knownRoles.contains(name) {
                    role = name
                } else {
                    report("\(field).\(roleKey)", .error, "field \"\(field).\(roleKey)\": unknown role \"\(name)\" "
                           + "(expected system, user, assistant or tool)")
                }
            case nil, .null?:
                report("\(field).\(roleKey)", .error, "missing field \"\(field).\(roleKey)\"")
            case let other?:
                report("\(field).\(roleKey)", .error, "field \"\(field).\(roleKey)\" must be a string, got \(other.summary)")
            }
            let content = string(message, contentKey, emptyIs: role == "system" ? .warning : .error,
                                 label: "\(field).\(contentKey)")
            guard let role, let content else {
                typesAreRight = false
                continue
            }
            if role == "system", index > 0 {
                report("\(field).\(roleKey)", .warning, "field \"\(field).\(roleKey)\": a system message after the first turn")
            }
            if let previous = messages.last, previous.role == role, role != "tool" {
                report("\(field).\(roleKey)", .warning, "field \"\(field).\(roleKey)\": two \(role) turns in a row")
            }
            messages.append(ChatMessage(role: role, content: content))
        }
        guard typesAreRight else { return nil }
        if endsWithAssistant, let last = messages.last, last.role != "assistant" {
            report("\(key)[\(messages.count - 1)]", .error,
                   "field \"\(key)\": the conversation ends with \(last.role), not the assistant (nothing to learn from)")
        }
        return messages
    }

    private func isBlank(_ text: String) -> Bool { text.allSatisfy(\.isWhitespace) }

    /// Whether an answer only repeats its prompt (after normalising case and whitespace).
    private func isRepeat(_ answer: String, of prompt: String) -> Bool {
        let a = TextNormalizer.normalize(answer), p = TextNormalizer.normalize(prompt)
        return !a.isEmpty && a == p
    }
}

/// Text normalisation for comparisons: lower case, runs of whitespace become one space, ends trimmed.
public enum TextNormalizer {
    public static func normalize(_ text: String) -> String {
        var text = text
        if let ascii = text.withUTF8({ bytes in bytes.allSatisfy { $0 < 0x80 } ? normalizeASCII(bytes) : nil }) {
            return ascii
        }
        return text.lowercased().split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    /// The same for ASCII text, byte by byte: Unicode property look-ups dominate deduplication otherwise.
    private static func normalizeASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var pendingSpace = false
        for byte in bytes {
            // The ASCII characters Character.isWhitespace counts: space, tab, line feed, vertical tab,
            // form feed and carriage return.
            if byte == 0x20 || (byte >= 0x09 && byte <= 0x0D) {
                pendingSpace = !output.isEmpty
                continue
            }
            if pendingSpace {
                output.append(0x20)
                pendingSpace = false
            }
            output.append(byte >= 0x41 && byte <= 0x5A ? byte + 0x20 : byte)
        }
        return String(decoding: output, as: UTF8.self)
    }
}
