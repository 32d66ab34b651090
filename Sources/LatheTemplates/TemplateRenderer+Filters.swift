import Foundation

/// Names of the filters and tests this interpreter implements; the parser rejects others up
/// front, as jinja2 does when it compiles a template.
enum TemplateBuiltins {
    static let filters: Set<String> = [
        "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "indent",
        "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
        "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson",
        "trim", "unique", "upper", "wordcount",
    ]
    static let tests: Set<String> = [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "==", "escaped", "even", "false", "float",
        "ge", ">=", "gt", ">", "greaterthan", "in", "integer", "iterable", "le", "<=", "lower", "lt", "<", "lessthan",
        "mapping", "ne", "!=", "none", "number", "odd", "sameas", "sequence", "string", "true", "undefined", "upper",
    ]
}

extension TemplateRenderer {
    // MARK: - Filters

    func applyFilter(_ name: String, to value: TemplateValue, _ positional: [TemplateValue],
                     _ keyword: [(String, TemplateValue)]) throws -> TemplateValue {
        func argument(_ index: Int, _ key: String) -> TemplateValue? {
            if let match = keyword.first(where: { $0.0 == key }) { return match.1 }
            return index < positional.count ? positional[index] : nil
        }
        func text(_ input: TemplateValue) -> String { input.printed }
        switch name {
        case "trim":
            var characters: String?
            if case .string(let value)? = argument(0, "chars") { characters = value }
            return .string(pythonStrip(text(value), characters: characters, leading: true, trailing: true))
        case "upper": return .string(text(value).uppercased())
        case "lower": return .string(text(value).lowercased())
        case "capitalize": return .string(pythonCapitalize(text(value)))
        case "title": return .string(jinjaTitle(text(value)))
        case "string": return .string(text(value))
        case "safe", "e", "escape":
            if name != "safe" {
                throw TemplateError(.unsupported, "unsupported construct: filter '\(name)' (HTML escaping)")
            }
            return value
        case "length", "count":
            switch value {
            case .string(let string): return .int(string.unicodeScalars.count)
            case .array(let items): return .int(items.count)
            case .dictionary(let dictionary): return .int(dictionary.count)
            case .undefined: return .int(0)
            default: throw TemplateError(.runtime, "object of type '\(value.typeName)' has no len()")
            }
        case "tojson":
            var indent: Int?
            // Python treats a negative indent like zero; very wide ones are capped to bound memory.
            if case .exact(let width)? = argument(1, "indent")?.numericValue { indent = min(max(width, 0), 1_000) }
            if case .string(let spaces)? = argument(1, "indent") { indent = spaces.count }
            var itemSeparator: String?, keySeparator: String?
            if case .array(let separators)? = argument(2, "separators"), separators.count == 2,
               case .string(let items) = separators[0], case .string(let keys) = separators[1] {
                itemSeparator = items
                keySeparator = keys
            }
            let input = argument(3, "sort_keys")?.isTruthy == true ? sortedKeys(value) : value
            return .string(try input.pythonJSON(indent: indent, itemSeparator: itemSeparator, keySeparator: keySeparator))
        case "first", "last":
            let items = try iterate(value)
            return (name == "first" ? items.first : items.last) ?? .undefined
        case "join":
            let separator = argument(0, "d").map(text) ?? ""
            var items = try iterate(value)
            if case .string(let attributeName)? = argument(1, "attribute") {
                items = try items.map { try attribute(of: $0, attributeName) }
            }
            return .string(items.map(text).joined(separator: separator))
        case "default", "d":
            let fallback = argument(0, "default_value") ?? .string("")
            let useFalsiness = argument(1, "boolean")?.isTruthy ?? false
            return value.isUndefined || (useFalsiness && !value.isTruthy) ? fallback : value
        case "list": return .array(try iterate(value))
        case "items":
            switch value {
            case .dictionary(let dictionary): return .array(dictionary.pairs.map { .array([.string($0.0), $0.1]) })
            case .undefined: return .array([])
            default: throw TemplateError(.runtime, "items filter expects a mapping, got \(value.typeName)")
            }
        case "int":
            let fallback = argument(0, "default") ?? .int(0)
            switch value {
            case .int, .bool: if case .exact(let number) = value.numericValue { return .int(number) }
            case .double(let number):
                if number.isNaN { return fallback }
                guard let truncated = Int(exactly: number.rounded(.towardZero)) else {
                    throw TemplateError(.runtime, "int filter: \(pythonFloatRepr(number)) does not fit a 64-bit integer")
                }
                return .int(truncated)
            case .string(let string):
                let trimmed = string.trimmingCharacters(in: .whitespaces)
                if let number = Int(trimmed) { return .int(number) }
                if let number = Double(trimmed), let truncated = Int(exactly: number.rounded(.towardZero)) { return .int(truncated) }
            default: break
            }
            return fallback
        case "float":
            let fallback = argument(0, "default") ?? .double(0)
            if let number = value.numericValue { return .double(number.asDouble) }
            if case .string(let string) = value, let number = Double(string.trimmingCharacters(in: .whitespaces)) {
                return .double(number)
            }
            return fallback
        case "abs":
            switch value {
            case .int(let number):
                guard number != Int.min else { throw TemplateError(.runtime, "integer overflow in abs()") }
                return .int(abs(number))
            case .double(let number): return .double(abs(number))
            default: throw TemplateError(.runtime, "bad operand type for abs(): '\(value.typeName)'")
            }
        case "round":
            guard let number = value.numericValue?.asDouble else {
                throw TemplateError(.runtime, "round filter expects a number, got \(value.typeName)")
            }
            var precision = 0
            if case .exact(let digits)? = argument(0, "precision")?.numericValue { precision = digits }
            let method = argument(1, "method").map(text) ?? "common"
            // "common" is Python's round(): halves to even, and an int stays an int.
            if method == "common", case .int = value { return value }
            let scale = pow(10.0, Double(precision))
            let rule: FloatingPointRoundingRule = method == "ceil" ? .up : method == "floor" ? .down : .toNearestOrEven
            return .double((number * scale).rounded(rule) / scale)
        case "replace":
            guard let old = argument(0, "old").map(text), let new = argument(1, "new").map(text) else {
                throw TemplateError(.runtime, "replace filter takes two strings")
            }
            var count = -1
            if case .exact(let limit)? = argument(2, "count")?.numericValue { count = limit }
            return .string(pythonReplace(text(value), old, new, count: count))
        case "indent":
            var width = "    "
            if let given = argument(0, "width") {
                if case .exact(let spaces) = given.numericValue {
                    width = String(repeating: " ", count: min(max(spaces, 0), 10_000))
                } else {
                    width = text(given)
                }
            }
            let indentFirst = argument(1, "first")?.isTruthy ?? false
            let indentBlank = argument(2, "blank")?.isTruthy ?? false
            let lines = text(value).components(separatedBy: "\n")
            return .string(lines.enumerated().map { offset, line in
                if offset == 0 && !indentFirst { return line }
                if line.isEmpty && !indentBlank { return line }
                return width + line
            }.joined(separator: "\n"))
        case "attr":
            guard case .string(let attributeName)? = argument(0, "name") else {
                throw TemplateError(.runtime, "attr filter takes an attribute name")
            }
            return try attribute(of: value, attributeName)
        case "map":
            let items = try iterate(value)
            if case .string(let attributeName)? = keyword.first(where: { $0.0 == "attribute" })?.1 {
                let fallback = keyword.first(where: { $0.0 == "default" })?.1
                return .array(try items.map { item in
                    let mapped = try attribute(of: item, attributeName)
                    return mapped.isUndefined ? (fallback ?? mapped) : mapped
                })
            }
            guard case .string(let filterName)? = positional.first else {
                throw TemplateError(.runtime, "map filter takes a filter name or attribute=")
            }
            guard TemplateBuiltins.filters.contains(filterName) else {
                throw TemplateError(.unsupported, "unsupported construct: filter '\(filterName)'")
            }
            return .array(try items.map { try applyFilter(filterName, to: $0, Array(positional.dropFirst()), []) })
        case "select", "reject", "selectattr", "rejectattr":
            let byAttribute = name.hasSuffix("attr")
            var rest = positional
            var attributeName: String?
            if byAttribute {
                guard case .string(let given)? = rest.first else {
                    throw TemplateError(.runtime, "\(name) filter takes an attribute name")
                }
                attributeName = given
                rest.removeFirst()
            }
            var testName: String?
            if case .string(let given)? = rest.first {
                testName = given
                rest.removeFirst()
            }
            if let testName, !TemplateBuiltins.tests.contains(testName) {
                throw TemplateError(.unsupported, "unsupported construct: test '\(testName)'")
            }
            let keep = name.hasPrefix("select")
            return .array(try iterate(value).filter { item in
                let subject = try attributeName.map { try attribute(of: item, $0) } ?? item
                let passed = try testName.map { try applyTest($0, to: subject, rest) } ?? subject.isTruthy
                return passed == keep
            })
        case "reverse":
            if case .string(let string) = value { return .string(String(String.UnicodeScalarView(string.unicodeScalars.reversed()))) }
            return .array(try iterate(value).reversed())
        case "unique":
            // jinja2 compares strings case-insensitively unless case_sensitive=true; keeps the first.
            let caseSensitive = argument(0, "case_sensitive")?.isTruthy ?? false
            var seen: [TemplateValue] = []
            var result: [TemplateValue] = []
            for item in try iterate(value) {
                let key = caseSensitive ? item : caseFolded(item)
                if !seen.contains(key) {
                    seen.append(key)
                    result.append(item)
                }
            }
            return .array(result)
        case "sort":
            let reverse = argument(0, "reverse")?.isTruthy ?? false
            let caseSensitive = argument(1, "case_sensitive")?.isTruthy ?? false
            let attributeName: String? = { if case .string(let given)? = argument(2, "attribute") { return given }; return nil }()
            let items = try iterate(value)
            let keys = try items.map { item -> TemplateValue in
                let key = try attributeName.map { try attribute(of: item, $0) } ?? item
                return caseSensitive ? key : caseFolded(key)
            }
            // Python's sort is stable; an insertion sort keeps equal keys in order and lets compare throw.
            var order: [Int] = []
            for index in items.indices {
                var position = order.count
                while position > 0 {
                    let result = try compare(keys[index], keys[order[position - 1]], "<")
                    guard reverse ? result > 0 : result < 0 else { break }
                    position -= 1
                }
                order.insert(index, at: position)
            }
            return .array(order.map { items[$0] })
        case "dictsort":
            guard case .dictionary(let dictionary) = value else {
                throw TemplateError(.runtime, "dictsort filter expects a mapping, got \(value.typeName)")
            }
            // Case-insensitive by key, like jinja2's default.
            let keys = dictionary.keys.sorted {
                Array($0.lowercased().unicodeScalars.map(\.value)).lexicographicallyPrecedes($1.lowercased().unicodeScalars.map(\.value))
            }
            return .array(keys.map { .array([.string($0), dictionary[$0] ?? .none]) })
        case "sum":
            var total: TemplateValue = argument(1, "start") ?? .int(0)
            for item in try iterate(value) { total = try binary("+", total, item) }
            return total
        case "min", "max":
            let caseSensitive = argument(0, "case_sensitive")?.isTruthy ?? false
            let items = try iterate(value)
            guard var best = items.first else { return .undefined }
            for item in items.dropFirst() {
                let order = caseSensitive ? try compare(item, best, "<") : try compare(caseFolded(item), caseFolded(best), "<")
                if name == "min" ? order < 0 : order > 0 { best = item }
            }
            return best
        case "wordcount":
            return .int(text(value).split(whereSeparator: { $0.isWhitespace }).count)
        default:
            throw TemplateError(.unsupported, "unsupported construct: filter '\(name)'")
        }
    }

    /// jinja2's default for sort, unique, min and max: strings compare lower-cased.
    private func caseFolded(_ value: TemplateValue) -> TemplateValue {
        if case .string(let text) = value { return .string(text.lowercased()) }
        return value
    }

    private func sortedKeys(_ value: TemplateValue) -> TemplateValue {
        switch value {
        case .array(let items): return .array(items.map(sortedKeys))
        case .dictionary(let dictionary):
            let keys = dictionary.keys.sorted { Array($0.unicodeScalars.map(\.value)).lexicographicallyPrecedes($1.unicodeScalars.map(\.value)) }
            return .dictionary(TemplateDictionary(keys.map { ($0, sortedKeys(dictionary[$0] ?? .none)) }))
        default: return value
        }
    }

    // MARK: - Tests

    func applyTest(_ name: String, to value: TemplateValue, _ arguments: [TemplateValue]) throws -> Bool {
        func other() throws -> TemplateValue {
            guard let first = arguments.first else { throw TemplateError(.runtime, "test '\(name)' takes an argument") }
            return first
        }
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none": if case .none = value { return true } else { return false }
        case "boolean": if case .bool = value { return true } else { return false }
        case "true": return value == .bool(true) && { if case .bool = value { return true } else { return false } }()
        case "false": return value == .bool(false) && { if case .bool = value { return true } else { return false } }()
        case "integer": if case .int = value { return true } else { return false }
        case "float": if case .double = value { return true } else { return false }
        case "number": return value.numericValue != nil
        case "string": if case .string = value { return true } else { return false }
        case "mapping": if case .dictionary = value { return true } else { return false }
        case "callable": if case .callable = value { return true } else { return false }
        case "iterable":
            switch value {
            case .string, .array, .dictionary, .undefined: return true
            default: return false
            }
        case "sequence":
            switch value {
            case .string, .array, .dictionary, .undefined: return true
            default: return false
            }
        case "lower": if case .string(let text) = value { return text == text.lowercased() } else { return false }
        case "upper": if case .string(let text) = value { return text == text.uppercased() } else { return false }
        case "escaped": return false
        case "even", "odd":
            guard case .exact(let number) = value.numericValue else {
                throw TemplateError(.runtime, "test '\(name)' expects an integer, got \(value.typeName)")
            }
            return (number % 2 == 0) == (name == "even")
        case "divisibleby":
            guard case .exact(let number) = value.numericValue, case .exact(let divisor) = try other().numericValue, divisor != 0 else {
                throw TemplateError(.runtime, "test 'divisibleby' expects non-zero integers")
            }
            return number % divisor == 0
        case "eq", "equalto", "==": return value == (try other())
        case "ne", "!=": return value != (try other())
        case "lt", "<", "lessthan": return try compare(value, try other(), "<") < 0
        case "le", "<=": return try compare(value, try other(), "<=") <= 0
        case "gt", ">", "greaterthan": return try compare(value, try other(), ">") > 0
        case "ge", ">=": return try compare(value, try other(), ">=") >= 0
        case "in": return try contains(try other(), value)
        case "sameas":
            let target = try other()
            switch (value, target) {
            case (.namespace(let a), .namespace(let b)): return a === b
            case (.callable(let a), .callable(let b)): return a === b
            case (.none, .none), (.undefined, .undefined): return true
            case (.bool(let a), .bool(let b)): return a == b
            default: return false
            }
        default:
            throw TemplateError(.unsupported, "unsupported construct: test '\(name)'")
        }
    }
}

