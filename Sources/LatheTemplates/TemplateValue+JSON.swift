import Foundation

extension TemplateValue {
    /// Parses JSON text keeping object key order (Foundation's parser loses it, and `tojson`
    /// output depends on it). Integers stay `.int`, numbers with a point or exponent are `.double`.
    public init(jsonText: String) throws {
        var parser = OrderedJSONParser(scalars: Array(jsonText.unicodeScalars))
        self = try parser.parseDocument()
    }

    /// Python's `json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)`,
    /// which is what transformers' `tojson` filter calls. Default separators are `", "`/`": "`
    /// without indent and `","`/`": "` with it, as in Python.
    func pythonJSON(indent: Int?, itemSeparator: String? = nil, keySeparator: String? = nil) throws -> String {
        var output = ""
        let items = itemSeparator ?? (indent == nil ? ", " : ",")
        let keys = keySeparator ?? ": "
        try writeJSON(into: &output, indent: indent, depth: 0, itemSeparator: items, keySeparator: keys)
        return output
    }

    private func writeJSON(into output: inout String, indent: Int?, depth: Int,
                           itemSeparator: String, keySeparator: String) throws {
        switch self {
        case .none: output += "null"
        case .bool(let value): output += value ? "true" : "false"
        case .int(let value): output += String(value)
        case .double(let value):
            if value.isNaN { output += "NaN" } else if value.isInfinite { output += value > 0 ? "Infinity" : "-Infinity" } else { output += pythonFloatRepr(value) }
        case .string(let value): output += jsonQuoted(value)
        case .array(let values):
            if values.isEmpty { output += "[]"; return }
            output += "["
            for (index, element) in values.enumerated() {
                if index > 0 { output += itemSeparator }
                if let indent { output += "\n" + String(repeating: " ", count: indent * (depth + 1)) }
                try element.writeJSON(into: &output, indent: indent, depth: depth + 1,
                                      itemSeparator: itemSeparator, keySeparator: keySeparator)
            }
            if let indent { output += "\n" + String(repeating: " ", count: indent * depth) }
            output += "]"
        case .dictionary(let dictionary):
            try writeJSONObject(dictionary, into: &output, indent: indent, depth: depth,
                                itemSeparator: itemSeparator, keySeparator: keySeparator)
        case .namespace(let namespace):
            try writeJSONObject(namespace.attributes, into: &output, indent: indent, depth: depth,
                                itemSeparator: itemSeparator, keySeparator: keySeparator)
        case .undefined, .callable:
            throw TemplateError(.runtime, "Object of type \(typeName) is not JSON serializable")
        }
    }

    private func writeJSONObject(_ dictionary: TemplateDictionary, into output: inout String, indent: Int?,
                                 depth: Int, itemSeparator: String, keySeparator: String) throws {
        if dictionary.count == 0 { output += "{}"; return }
        output += "{"
        for (index, (key, value)) in dictionary.pairs.enumerated() {
            if index > 0 { output += itemSeparator }
            if let indent { output += "\n" + String(repeating: " ", count: indent * (depth + 1)) }
            output += jsonQuoted(key) + keySeparator
            try value.writeJSON(into: &output, indent: indent, depth: depth + 1,
                                itemSeparator: itemSeparator, keySeparator: keySeparator)
        }
        if let indent { output += "\n" + String(repeating: " ", count: indent * depth) }
        output += "}"
    }
}

/// A JSON string literal as Python writes it with ensure_ascii=False: only quote, backslash and
/// control characters are escaped; everything else (é, 世, 🌍) is written as is.
func jsonQuoted(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        case "\u{08}": result += "\\b"
        case "\u{0C}": result += "\\f"
        default:
            if scalar.value < 0x20 {
                result += String(format: "\\u%04x", scalar.value)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
    }
    return result + "\""
}

/// A small JSON reader that keeps object key order.
private struct OrderedJSONParser {
    let scalars: [Unicode.Scalar]
    var position = 0
    /// Open arrays and objects; bounded so hostile input cannot exhaust the stack.
    var depth = 0

    init(scalars: [Unicode.Scalar]) { self.scalars = scalars }

    mutating func parseDocument() throws -> TemplateValue {
        let value = try parseValue()
        skipWhitespace()
        if position < scalars.count { throw failure("unexpected text after the JSON value") }
        return value
    }

    private func failure(_ message: String) -> TemplateError {
        TemplateError(.syntax, "JSON: \(message) at character \(position)")
    }

    private mutating func skipWhitespace() {
        while position < scalars.count, [" ", "\n", "\r", "\t"].contains(scalars[position]) { position += 1 }
    }

    private mutating func parseValue() throws -> TemplateValue {
        skipWhitespace()
        guard position < scalars.count else { throw failure("unexpected end") }
        switch scalars[position] {
        case "{", "[":
            depth += 1
            defer { depth -= 1 }
            guard depth <= 512 else { throw failure("nested deeper than 512 levels") }
            return scalars[position] == "{" ? try parseObject() : try parseArray()
        case "\"": return .string(try parseString())
        case "t": try expectWord("true"); return .bool(true)
        case "f": try expectWord("false"); return .bool(false)
        case "n": try expectWord("null"); return .none
        default: return try parseNumber()
        }
    }

    private mutating func expectWord(_ word: String) throws {
        for scalar in word.unicodeScalars {
            guard position < scalars.count, scalars[position] == scalar else { throw failure("expected \(word)") }
            position += 1
        }
    }

    private mutating func parseObject() throws -> TemplateValue {
        position += 1
        var dictionary = TemplateDictionary()
        skipWhitespace()
        if position < scalars.count, scalars[position] == "}" { position += 1; return .dictionary(dictionary) }
        while true {
            skipWhitespace()
            guard position < scalars.count, scalars[position] == "\"" else { throw failure("expected a key string") }
            let key = try parseString()
            skipWhitespace()
            guard position < scalars.count, scalars[position] == ":" else { throw failure("expected ':'") }
            position += 1
            dictionary[key] = try parseValue()
            skipWhitespace()
            guard position < scalars.count else { throw failure("unterminated object") }
            if scalars[position] == "," { position += 1; continue }
            if scalars[position] == "}" { position += 1; return .dictionary(dictionary) }
            throw failure("expected ',' or '}'")
        }
    }

    private mutating func parseArray() throws -> TemplateValue {
        position += 1
        var values: [TemplateValue] = []
        skipWhitespace()
        if position < scalars.count, scalars[position] == "]" { position += 1; return .array(values) }
        while true {
            values.append(try parseValue())
            skipWhitespace()
            guard position < scalars.count else { throw failure("unterminated array") }
            if scalars[position] == "," { position += 1; continue }
            if scalars[position] == "]" { position += 1; return .array(values) }
            throw failure("expected ',' or ']'")
        }
    }

    private mutating func parseHex4() throws -> UInt32 {
        guard position + 4 <= scalars.count,
              let value = UInt32(String(String.UnicodeScalarView(scalars[position..<position + 4])), radix: 16)
        else { throw failure("bad \\u escape") }
        position += 4
        return value
    }

    private mutating func parseString() throws -> String {
        position += 1
        var result = String.UnicodeScalarView()
        while position < scalars.count {
            let scalar = scalars[position]
            position += 1
            if scalar == "\"" { return String(result) }
            if scalar != "\\" { result.append(scalar); continue }
            guard position < scalars.count else { break }
            let escape = scalars[position]
            position += 1
            switch escape {
            case "n": result.append("\n")
            case "t": result.append("\t")
            case "r": result.append("\r")
            case "b": result.append("\u{08}")
            case "f": result.append("\u{0C}")
            case "u":
                var code = try parseHex4()
                if (0xD800..<0xDC00).contains(code), position + 1 < scalars.count,
                   scalars[position] == "\\", scalars[position + 1] == "u" {
                    position += 2
                    let low = try parseHex4()
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let decoded = Unicode.Scalar(code) else { throw failure("bad \\u escape") }
                result.append(decoded)
            default: result.append(escape)
            }
        }
        throw failure("unterminated string")
    }

    private mutating func parseNumber() throws -> TemplateValue {
        let start = position
        var isInteger = true
        while position < scalars.count, "+-0123456789.eE".unicodeScalars.contains(scalars[position]) {
            if ".eE".unicodeScalars.contains(scalars[position]) { isInteger = false }
            position += 1
        }
        let text = String(String.UnicodeScalarView(scalars[start..<position]))
        if isInteger, let value = Int(text) { return .int(value) }
        if let value = Double(text) { return .double(value) }
        throw failure("bad number '\(text)'")
    }
}
