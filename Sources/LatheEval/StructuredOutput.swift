import Foundation
import LatheModels

/// Checks for structured-output tasks: is the prediction JSON, does it follow a schema, does it match a pattern.
public enum StructuredOutput {
    /// The prediction parsed as one strict (RFC 8259) JSON document, surrounding whitespace allowed, or nil when
    /// it is not JSON.
    public static func parseJSON(_ prediction: String) -> JSONValue? {
        guard StrictJSON.isValid(prediction) else { return nil }
        return try? JSONValue.parse(Data(prediction.utf8))
    }

    /// 1 when the prediction is one valid JSON document, else 0.
    public static func jsonValidity(_ prediction: String) -> Double { parseJSON(prediction) == nil ? 0 : 1 }

    /// 1 when the prediction is JSON and satisfies `schema`, else 0.
    public static func schemaMatch(_ prediction: String, schema: JSONSchema) -> Double {
        guard let value = parseJSON(prediction) else { return 0 }
        return schema.violations(of: value).isEmpty ? 1 : 0
    }

    /// 1 when `pattern` matches the prediction (the whole of it, or anywhere in it for `.search`), else 0.
    public static func regexMatch(_ prediction: String, pattern: TextPattern) -> Double {
        pattern.matches(prediction) ? 1 : 0
    }
}

/// A user's regular expression (Swift `Regex` syntax, which follows Perl/ICU: `\d`, `[a-z]+`, `(?i)`, ...).
public struct TextPattern: @unchecked Sendable {
    /// `.fullMatch` requires the whole prediction to match (Python's `re.fullmatch`); `.search` any part of it
    /// (`re.search`).
    public enum Mode: String, Sendable { case fullMatch = "full", search }

    public let source: String
    public let mode: Mode
    private let regex: Regex<AnyRegexOutput>

    public init(_ source: String, mode: Mode) throws {
        do { regex = try Regex(source) } catch {
            throw EvalError.invalidInput("the regular expression '\(source)' does not compile: \(error)")
        }
        self.source = source; self.mode = mode
    }

    public func matches(_ text: String) -> Bool {
        switch mode {
        case .fullMatch: return (try? regex.wholeMatch(in: text)) != nil
        case .search: return (try? regex.firstMatch(in: text)) != nil
        }
    }
}

/// The subset of JSON Schema that structured-output tasks use: `type` (one or a list of object, array, string,
/// number, integer, boolean, null), `properties`, `required`, `items`, `enum` and `additionalProperties: false`.
/// Any other keyword is rejected when the schema is read, so that a schema is never half-checked in silence.
public struct JSONSchema: Sendable, Equatable {
    public let value: JSONValue
    static let keywords: Set<String> = ["type", "properties", "required", "items", "enum", "additionalProperties",
                                        "$schema", "title", "description"]
    static let typeNames: Set<String> = ["object", "array", "string", "number", "integer", "boolean", "null"]

    /// Checks the schema itself; `source` names where it came from in errors (file:line:field or a flag).
    public init(_ value: JSONValue, source: String) throws {
        try Self.check(value, path: "", source: source)
        self.value = value
    }

    private static func check(_ schema: JSONValue, path: String, source: String) throws {
        func fail(_ message: String) -> EvalError { .invalidInput("\(source): schema\(path): \(message)") }
        guard let object = schema.object else { throw fail("must be an object, got \(schema.summary)") }
        if let unknown = object.keys.sorted().first(where: { !keywords.contains($0) }) {
            throw fail("keyword '\(unknown)' is not supported (supported: type, properties, required, items, enum, additionalProperties false)")
        }
        if let type = object["type"] {
            let names = type.string.map { [$0] } ?? type.array?.compactMap(\.string)
            guard let names, names.count == (type.array?.count ?? 1), names.allSatisfy(typeNames.contains) else {
                throw fail("'type' must be one of \(typeNames.sorted().joined(separator: ", ")) or a list of them, got \(type.summary)")
            }
        }
        if let properties = object["properties"] {
            guard let fields = properties.object else { throw fail("'properties' must be an object") }
            for (name, sub) in fields { try check(sub, path: path + ".properties.\(name)", source: source) }
        }
        if let required = object["required"], required.array?.allSatisfy({ $0.string != nil }) != true {
            throw fail("'required' must be a list of strings")
        }
        if let items = object["items"] { try check(items, path: path + ".items", source: source) }
        if let values = object["enum"], values.array == nil { throw fail("'enum' must be a list") }
        if let additional = object["additionalProperties"], additional.bool == nil {
            throw fail("'additionalProperties' must be true or false (schemas there are not supported)")
        }
    }

    /// Where `instance` breaks the schema, as JSON-pointer-like paths with reasons; empty when it conforms.
    public func violations(of instance: JSONValue) -> [String] {
        var found: [String] = []
        Self.validate(instance, against: value, path: "$", into: &found)
        return found
    }

    private static func validate(_ instance: JSONValue, against schema: JSONValue, path: String, into found: inout [String]) {
        if let type = schema["type"] {
            let names = type.string.map { [$0] } ?? type.array?.compactMap(\.string) ?? []
            if !names.contains(where: { has(instance, type: $0) }) {
                found.append("\(path): expected \(names.joined(separator: " or ")), got \(instance.summary)")
                return
            }
        }
        if let allowed = schema["enum"]?.array, !allowed.contains(instance) {
            found.append("\(path): \(instance.summary) is not one of the enum values")
        }
        if let object = instance.object {
            let properties = schema["properties"]?.object ?? [:]
            for name in schema["required"]?.array?.compactMap(\.string) ?? [] where object[name] == nil {
                found.append("\(path): missing required property '\(name)'")
            }
            for (name, value) in object.sorted(by: { $0.key < $1.key }) {
                if let sub = properties[name] {
                    validate(value, against: sub, path: "\(path).\(name)", into: &found)
                } else if schema["additionalProperties"]?.bool == false {
                    found.append("\(path): property '\(name)' is not allowed")
                }
            }
        }
        if let items = schema["items"], let array = instance.array {
            for (i, element) in array.enumerated() { validate(element, against: items, path: "\(path)[\(i)]", into: &found) }
        }
    }

    private static func has(_ instance: JSONValue, type: String) -> Bool {
        switch (type, instance) {
        case ("object", .object), ("array", .array), ("string", .string), ("number", .number), ("boolean", .bool),
             ("null", .null):
            return true
        case ("integer", .number(let n)): return n == n.rounded(.towardZero) && n.isFinite
        default: return false
        }
    }
}
