import Foundation

/// Rewrites rows in another format: Alpaca or ShareGPT → messages, messages ↔ prompt/completion, → Alpaca,
/// → text, preference pairs → KTO rows. Conversions that would lose content (a multi-turn conversation to
/// prompt/completion, a preference pair to anything but KTO) are refused with the line that cannot be converted.
public enum DatasetConverter {
    /// The formats rows can be converted to.
    public static let targets: [DatasetFormat] = [.messages, .promptCompletion, .alpaca, .text, .kto]

    /// Converts each row to a JSON object of the target format; a preference pair becomes two KTO rows, as TRL's
    /// `unpair_preference_dataset` makes them (chosen with label true, then rejected with label false, the prompt
    /// and kept fields copied to both; TRL orders a batch's chosen rows before its rejected ones).
    /// - Parameters:
    ///   - keepFields: also copy the fields that are not content of the row's format (ids, sources, labels).
    ///   - renderConversation: the chat template, needed to turn conversations into plain text.
    public static func convert(_ rows: [DatasetRow], to target: DatasetFormat, keepFields: Bool = false,
                               renderConversation: (([ChatMessage]) throws -> String)? = nil) throws -> [JSONValue] {
        guard targets.contains(target) else {
            throw DatasetError(file: rows.first?.line.file ?? "", line: 0,
                               message: "cannot convert to \(target.rawValue); targets are "
                                   + targets.map(\.rawValue).joined(separator: ", "))
        }
        return try rows.flatMap { row in
            try content(row, as: target, renderConversation: renderConversation).map { converted in
                var object = converted
                if keepFields, let original = row.line.value.object {
                    let contentFields = Set(row.format.contentFields)
                    for (key, value) in original where !contentFields.contains(key) && object[key] == nil {
                        object[key] = value
                    }
                }
                return JSONValue.object(object)
            }
        }
    }

    /// The rows one row becomes: one, or two for a pair unpaired.
    private static func content(_ row: DatasetRow, as target: DatasetFormat,
                                renderConversation: (([ChatMessage]) throws -> String)?) throws -> [[String: JSONValue]] {
        switch (row.record, target) {
        case (.preference(let pair), .kto): return pair.unpaired.map(ktoObject)
        case (.kto(let record), .kto): return [ktoObject(record)]
        default: return [try singleContent(row, as: target, renderConversation: renderConversation)]
        }
    }

    private static func messagesValue(_ messages: [ChatMessage]) -> JSONValue {
        .array(messages.map { .object(["role": .string($0.role), "content": .string($0.content)]) })
    }

    private static func ktoObject(_ record: KTORecord) -> [String: JSONValue] {
        func value(_ content: PreferenceContent) -> JSONValue {
            switch content {
            case .text(let text): return .string(text)
            case .messages(let messages): return messagesValue(messages)
            }
        }
        return ["prompt": value(record.prompt), "completion": value(record.completion), "label": .bool(record.label)]
    }

    private static func singleContent(_ row: DatasetRow, as target: DatasetFormat,
                                      renderConversation: (([ChatMessage]) throws -> String)?) throws -> [String: JSONValue] {
        let line = row.line
        func refuse(_ why: String) -> JSONLinesError {
            line.error("cannot convert this \(row.format.rawValue) row to \(target.rawValue): \(why)")
        }
        /// A conversation of one user turn and one assistant answer, with an optional system message first.
        func singleTurn(_ messages: [ChatMessage]) throws -> (system: String?, user: String, assistant: String) {
            var rest = messages[...]
            var system: String?
            if rest.first?.role == "system" { system = rest.removeFirst().content }
            guard rest.count == 2, rest.first?.role == "user", rest.last?.role == "assistant" else {
                throw refuse("only a user turn then an assistant turn (after an optional system message) fits; "
                             + "this conversation has \(messages.count) messages")
            }
            return (system, rest[rest.startIndex].content, rest[rest.startIndex + 1].content)
        }

        switch (row.record, target) {
        case (.text(let text), .text):
            return ["text": .string(text)]
        case (.text, _):
            throw refuse("plain text has no prompt or answer")
        case (.preference, _), (.kto, _):
            throw refuse("it would lose the preference or label (a preference pair converts to kto)")
        case (.promptCompletion(let prompt, let completion), .messages):
            return ["messages": messagesValue([ChatMessage(role: "user", content: prompt),
                                               ChatMessage(role: "assistant", content: completion)])]
        case (.promptCompletion(let prompt, let completion), .promptCompletion):
            return ["prompt": .string(prompt), "completion": .string(completion)]
        case (.promptCompletion(let prompt, let completion), .alpaca):
            return ["instruction": .string(prompt), "input": .string(""), "output": .string(completion)]
        case (.promptCompletion(let prompt, let completion), .text):
            return ["text": .string(prompt + completion)]
        case (.messages(let messages), .messages):
            return ["messages": messagesValue(messages)]
        case (.messages(let messages), .promptCompletion):
            let turn = try singleTurn(messages)
            guard turn.system == nil else { throw refuse("prompt/completion has no place for the system message") }
            return ["prompt": .string(turn.user), "completion": .string(turn.assistant)]
        case (.messages(let messages), .alpaca):
            let turn = try singleTurn(messages)
            var object: [String: JSONValue] = ["instruction": .string(turn.user), "input": .string(""),
                                               "output": .string(turn.assistant)]
            if let system = turn.system { object["system"] = .string(system) }
            return object
        case (.messages(let messages), .text):
            guard let renderConversation else {
                throw refuse("conversations become text through a chat template: give --model")
            }
            return ["text": .string(try renderConversation(messages))]
        case (_, .kto):
            throw refuse("only preference pairs (and KTO rows) become KTO rows: other rows have no label")
        case (_, .sharegpt), (_, .preference):
            throw refuse("not a conversion target")
        }
    }
}
