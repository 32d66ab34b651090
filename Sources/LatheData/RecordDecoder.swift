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
            // The prompt is a string field, or (conversational form) the user message before each answer.
            var prompt: String? = ""
            switch object["prompt"] {
            case nil, .null?: break
            case .array?: prompt = userMessage(object, "prompt")
            default: prompt = string(object, "prompt", emptyIs: .warning)
            }
            let chosen = answer(object, "chosen")
            let rejected = answer(object, "rejected")
            guard var prompt, let chosen, let rejected else { return nil }
            if let implicit = chosen.prompt ?? rejected.prompt {
                guard prompt.isEmpty else {
                    report("chosen", .error, "field \"chosen\" or \"rejected\" holds a user message while \"prompt\" is given too")
                    return nil
                }
                guard chosen.prompt == rejected.prompt else {
                    report("rejected", .error, "fields \"chosen\" and \"rejected\" answer different user messages")
                    return nil
                }
                prompt = implicit
            }
            if chosen.text == rejected.text, !chosen.text.isEmpty {
                report("rejected", .warning, "fields \"chosen\" and \"rejected\" are the same text")
            }
            return .preference(prompt: prompt, chosen: chosen.text, rejected: rejected.text)
        case .kto:
            let prompt = string(object, "prompt", emptyIs: .warning)
            let completion = string(object, "completion", emptyIs: .error)
            var label: Bool?
            switch object["label"] {
            case nil, .null?: report("label", .error, "missing field \"label\"")
            case .bool(let value)?: label = value
            case let other?: report("label", .error, "field \"label\" must be true or false, got \(other.summary)")
            }
            guard let prompt, let completion, let label else { return nil }
            return .kto(prompt: prompt, completion: completion, label: label)
        }
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

    /// A preference answer: a string, or a conversation ending with the assistant's answer, optionally after
    /// one user message (the implicit prompt, returned too).
    private mutating func answer(_ object: [String: JSONValue], _ key: String) -> (prompt: String?, text: String)? {
        guard case .array? = object[key] else { return string(object, key, emptyIs: .error).map { (nil, $0) } }
        guard let messages = conversation(object, key, roleKey: "role", contentKey: "content", roles: nil),
              let last = messages.last else { return nil }
        switch messages.count {
        case 1: return (nil, last.content)
        case 2 where messages[0].role == "user": return (messages[0].content, last.content)
        default:
            report(key, .error, "field \"\(key)\": only the assistant's answer, after at most one user message, is supported "
                   + "(got \(messages.count) messages)")
            return nil
        }
    }

    /// A conversational prompt: a list of exactly one user message.
    private mutating func userMessage(_ object: [String: JSONValue], _ key: String) -> String? {
        guard let array = object[key]?.array, array.count == 1, let message = array[0].object,
              message["role"]?.string == "user", let content = message["content"]?.string else {
            report(key, .error, "field \"\(key)\" must be a string or a list of one user message")
            return nil
        }
        return content
    }

    /// A list of `{roleKey, contentKey}` messages, checked as a training conversation: known roles, non-empty
    /// turns, ending with the assistant. `roles` maps ShareGPT speaker names; nil means chat roles as they are.
    private mutating func conversation(_ object: [String: JSONValue], _ key: String, roleKey: String, contentKey: String,
                                       roles: [String: String]?) -> [ChatMessage]? {
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
        if let last = messages.last, last.role != "assistant" {
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
