import Foundation

/// A value seen by a chat template: the JSON-like data a caller passes in (messages, tools, flags)
/// plus the few runtime objects a template creates (namespaces, macros, built-in functions).
/// Behaves like the Python object jinja2 would hold: truthiness, equality, ordering, `str()`.
public enum TemplateValue {
    /// jinja2's `Undefined`: a missing variable, key or attribute. Prints as "", is falsy.
    case undefined
    /// Python's `None`.
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([TemplateValue])
    case dictionary(TemplateDictionary)
    /// `namespace(...)`: the one mutable object templates can write into (`{% set ns.x = 1 %}`).
    case namespace(TemplateNamespace)
    /// A macro defined in the template or a built-in function such as `range`.
    case callable(TemplateCallable)
}

/// A dictionary that keeps insertion order, as Python's `dict` does (so `tojson` and `items()`
/// list keys in the order the caller gave them).
public struct TemplateDictionary: Equatable {
    public private(set) var keys: [String] = []
    private var storage: [String: TemplateValue] = [:]

    public init() {}

    public init(_ pairs: [(String, TemplateValue)]) {
        for (key, value) in pairs { self[key] = value }
    }

    public subscript(key: String) -> TemplateValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public var count: Int { keys.count }

    /// Key–value pairs in insertion order.
    public var pairs: [(String, TemplateValue)] { keys.map { ($0, storage[$0] ?? .none) } }

    /// Python dict equality: same keys and equal values, whatever the order.
    public static func == (lhs: TemplateDictionary, rhs: TemplateDictionary) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for key in lhs.keys {
            guard let left = lhs.storage[key], let right = rhs.storage[key], left == right else { return false }
        }
        return true
    }
}

/// The object behind `namespace()`: shared by reference so writes inside a loop survive it.
public final class TemplateNamespace {
    var attributes: TemplateDictionary
    init(_ attributes: TemplateDictionary) { self.attributes = attributes }
}

/// A function a template can call: a built-in (`range`, `raise_exception`) or a `{% macro %}`.
public final class TemplateCallable {
    let name: String
    let call: ([TemplateValue], [(String, TemplateValue)]) throws -> TemplateValue
    init(name: String, call: @escaping ([TemplateValue], [(String, TemplateValue)]) throws -> TemplateValue) {
        self.name = name
        self.call = call
    }
}

extension TemplateValue: Equatable {
    /// Python `==`: numbers compare by value across int/float/bool, containers element-wise,
    /// undefined equals only undefined, objects by identity.
    public static func == (lhs: TemplateValue, rhs: TemplateValue) -> Bool {
        switch (lhs, rhs) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.dictionary(let a), .dictionary(let b)): return a == b
        case (.namespace(let a), .namespace(let b)): return a === b
        case (.callable(let a), .callable(let b)): return a === b
        default:
            if let a = lhs.numericValue, let b = rhs.numericValue {
                if case .exact(let x) = a, case .exact(let y) = b { return x == y }
                return a.asDouble == b.asDouble
            }
            return false
        }
    }
}

/// A number as Python sees it: bools and ints are exact integers.
enum TemplateNumber {
    case exact(Int)
    case float(Double)
    var asDouble: Double {
        switch self {
        case .exact(let value): return Double(value)
        case .float(let value): return value
        }
    }
}

extension TemplateValue {
    var numericValue: TemplateNumber? {
        switch self {
        case .bool(let value): return .exact(value ? 1 : 0)
        case .int(let value): return .exact(value)
        case .double(let value): return .float(value)
        default: return nil
        }
    }

    var isUndefined: Bool {
        if case .undefined = self { return true }
        return false
    }

    /// Python truthiness: empty strings and containers, zero, None and Undefined are false.
    public var isTruthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let value): return value
        case .int(let value): return value != 0
        case .double(let value): return value != 0
        case .string(let value): return !value.isEmpty
        case .array(let value): return !value.isEmpty
        case .dictionary(let value): return value.count > 0
        case .namespace, .callable: return true
        }
    }

    /// The Python type name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .dictionary: return "dict"
        case .namespace: return "Namespace"
        case .callable: return "function"
        }
    }

    /// What `{{ value }}` prints: Python's `str()` (True, None, 1.0, ['a'], {'k': 1}); "" for Undefined.
    public var printed: String {
        switch self {
        case .undefined: return ""
        case .string(let value): return value
        default: return pythonRepr
        }
    }

    /// Python's `repr()`, which `str()` of containers uses for their elements.
    var pythonRepr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let value): return value ? "True" : "False"
        case .int(let value): return String(value)
        case .double(let value): return pythonFloatRepr(value)
        case .string(let value): return pythonStringRepr(value)
        case .array(let values): return "[" + values.map(\.pythonRepr).joined(separator: ", ") + "]"
        case .dictionary(let dictionary):
            return "{" + dictionary.pairs.map { pythonStringRepr($0.0) + ": " + $0.1.pythonRepr }
                .joined(separator: ", ") + "}"
        case .namespace(let namespace):
            return "<Namespace " + namespace.attributes.pairs.map { "\($0.0)=\($0.1.pythonRepr)" }
                .joined(separator: ", ") + ">"
        case .callable(let callable): return "<function \(callable.name)>"
        }
    }
}

/// Python's float repr: shortest round-trip digits, always a decimal point or exponent.
func pythonFloatRepr(_ value: Double) -> String {
    if value.isNaN { return "nan" }
    if value.isInfinite { return value > 0 ? "inf" : "-inf" }
    if value == value.rounded(), abs(value) < 1e16 {
        // Swift prints 1e+16 style only from 2^53 up; below 1e16 Python prints "123.0".
        return String(format: "%.1f", value)
    }
    // Swift's description is also the shortest round-trip form, with Python's exponent style
    // ("1e-05", "1.5e+16").
    return "\(value)"
}

/// Python's str repr: single quotes unless the text holds a single quote and no double quote.
func pythonStringRepr(_ text: String) -> String {
    let quote: Character = text.contains("'") && !text.contains("\"") ? "\"" : "'"
    var result = String(quote)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        default:
            if Character(scalar) == quote {
                result += "\\" + String(quote)
            } else if scalar.value < 0x20 || scalar.value == 0x7f {
                result += String(format: "\\x%02x", scalar.value)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
    }
    result.append(quote)
    return result
}
