import Foundation

/// Any JSON value, decoded with booleans and numbers kept apart (JSONSerialization conflates them on Linux).
public enum JSONValue: Sendable, Equatable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let b = try? container.decode(Bool.self) { self = .bool(b) }
        else if let n = try? container.decode(Double.self) { self = .number(n) }
        else if let s = try? container.decode(String.self) { self = .string(s) }
        else if let a = try? container.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .number(let n): try container.encode(n)
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(o)
        }
    }

    /// Parses one JSON document; the error says where it went wrong.
    public static func parse(_ data: Data) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: data)
    }

    /// The document as a configuration file holds it: indented, keys sorted, slashes unescaped.
    public func formatted() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] } else { return nil }
    }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var double: Double? { if case .number(let n) = self { return n } else { return nil } }
    public var int: Int? {
        if case .number(let n) = self, n == n.rounded(), abs(n) < 9.0e15 { return Int(n) } else { return nil }
    }
    public var array: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var object: [String: JSONValue]? { if case .object(let o) = self { return o } else { return nil } }
    public var isNull: Bool { self == .null }

    /// Short, human-readable rendering for error messages.
    public var summary: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return String(b)
        case .number(let n): return n == n.rounded() && abs(n) < 1e15 ? String(Int(n)) : String(n)
        case .string(let s): return "\"\(s.prefix(40))\""
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// Reads typed fields from a JSON object, throwing errors that name the field (and, for files, the file).
public struct JSONFields {
    public let object: [String: JSONValue]
    let prefix: String
    /// Makes the error for a field (its full dotted name) and a message that names it.
    let failure: @Sendable (_ field: String, _ message: String) -> Error

    public init(object: [String: JSONValue], prefix: String = "",
                failure: @escaping @Sendable (_ field: String, _ message: String) -> Error) {
        self.object = object; self.prefix = prefix; self.failure = failure
    }

    /// Errors name `source` (a file): `ModelError.invalidConfiguration`.
    init(object: [String: JSONValue], source: String, prefix: String = "") {
        self.init(object: object, prefix: prefix) { _, message in ModelError.invalidConfiguration(file: source, message: message) }
    }

    private func present(_ key: String) -> JSONValue? {
        guard let value = object[key], !value.isNull else { return nil }
        return value
    }
    private func wrongType(_ key: String, _ expected: String) -> Error {
        failure(prefix + key, "field '\(prefix)\(key)' must be \(expected), got \(object[key]?.summary ?? "nothing")")
    }
    private func missing(_ key: String) -> Error {
        failure(prefix + key, "missing field '\(prefix)\(key)'")
    }
    public func optionalInt(_ key: String) throws -> Int? {
        guard let value = present(key) else { return nil }
        guard let n = value.int else { throw wrongType(key, "an integer") }
        return n
    }
    public func optionalDouble(_ key: String) throws -> Double? {
        guard let value = present(key) else { return nil }
        guard let n = value.double else { throw wrongType(key, "a number") }
        return n
    }
    public func optionalBool(_ key: String) throws -> Bool? {
        guard let value = present(key) else { return nil }
        guard let b = value.bool else { throw wrongType(key, "true or false") }
        return b
    }
    public func optionalString(_ key: String) throws -> String? {
        guard let value = present(key) else { return nil }
        guard let s = value.string else { throw wrongType(key, "a string") }
        return s
    }
    /// The error for field `key` whose value is refused: "field 'key' <problem>".
    public func error(_ key: String, _ problem: String) -> Error { failure(prefix + key, "field '\(prefix)\(key)' \(problem)") }
    /// The fields of the object at `key` (none when absent), their errors named `key.field`.
    public func fields(of key: String) -> JSONFields {
        JSONFields(object: present(key)?.object ?? [:], prefix: prefix + key + ".", failure: failure)
    }
    public func int(_ key: String) throws -> Int { guard let v = try optionalInt(key) else { throw missing(key) }; return v }
    public func double(_ key: String) throws -> Double { guard let v = try optionalDouble(key) else { throw missing(key) }; return v }
    public func string(_ key: String) throws -> String { guard let v = try optionalString(key) else { throw missing(key) }; return v }
}
