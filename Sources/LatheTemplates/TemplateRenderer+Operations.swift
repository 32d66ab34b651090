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
    // MARK: - Attribute and item access

    /// `value.name`: jinja2 tries the Python attribute (a method such as `items` or `strip`),
    /// then the key; a missing one is Undefined, but reading from Undefined is an error.
    func attribute(of value: TemplateValue, _ name: String) throws -> TemplateValue {
        switch value {
        case .undefined:
            throw TemplateError(.runtime, "cannot read attribute '\(name)' of an undefined value")
        case .dictionary(let dictionary):
            if let method = dictionaryMethod(dictionary, name) { return method }
            return dictionary[name] ?? .undefined
        case .namespace(let namespace):
            return namespace.attributes[name] ?? .undefined
        case .string(let text):
            return stringMethod(text, name) ?? .undefined
        default:
            return .undefined
        }
    }

    /// `value[key]`: the key first, then (for string keys) the attribute; missing → Undefined.
    func item(of value: TemplateValue, _ key: TemplateValue) throws -> TemplateValue {
        switch (value, key) {
        case (.undefined, _):
            throw TemplateError(.runtime, "cannot read item \(key.pythonRepr) of an undefined value")
        case (.array(let items), _):
            guard case .exact(let index) = key.numericValue else { return .undefined }
            let resolved = index < 0 ? index + items.count : index
            return items.indices.contains(resolved) ? items[resolved] : .undefined
        case (.string(let text), _):
            guard case .exact(let index) = key.numericValue else { return .undefined }
            let scalars = Array(text.unicodeScalars)
            let resolved = index < 0 ? index + scalars.count : index
            return scalars.indices.contains(resolved) ? .string(String(scalars[resolved])) : .undefined
        case (.dictionary(let dictionary), .string(let name)):
            return dictionary[name] ?? dictionaryMethod(dictionary, name) ?? .undefined
        case (.namespace(let namespace), .string(let name)):
            return namespace.attributes[name] ?? .undefined
        default:
            return .undefined
        }
    }

    /// Python slicing `value[start:stop:step]` of a list or string.
    func slice(_ value: TemplateValue, start: TemplateValue?, stop: TemplateValue?, step: TemplateValue?) throws -> TemplateValue {
        func integer(_ bound: TemplateValue?) throws -> Int? {
            guard let bound, !(bound == .none) else { return nil }
            guard case .exact(let value) = bound.numericValue else {
                throw TemplateError(.runtime, "slice indices must be integers or None, not \(bound.typeName)")
            }
            return value
        }
        let stride = try integer(step) ?? 1
        guard stride != 0 else { throw TemplateError(.runtime, "slice step cannot be zero") }
        func indices(count: Int) throws -> [Int] {
            let lower = stride > 0 ? 0 : -1
            let upper = stride > 0 ? count : count - 1
            func clamp(_ bound: Int?, default fallback: Int) -> Int {
                guard var bound else { return fallback }
                if bound < 0 { bound += count }
                return min(max(bound, lower), upper)
            }
            var index = clamp(try integer(start), default: stride > 0 ? lower : upper)
            let end = clamp(try integer(stop), default: stride > 0 ? upper : lower)
            var result: [Int] = []
            while stride > 0 ? index < end : index > end {
                result.append(index)
                let (next, overflow) = index.addingReportingOverflow(stride)
                if overflow { break }
                index = next
            }
            return result
        }
        switch value {
        case .array(let items):
            return .array(try indices(count: items.count).map { items[$0] })
        case .string(let text):
            let scalars = Array(text.unicodeScalars)
            var view = String.UnicodeScalarView()
            for index in try indices(count: scalars.count) { view.append(scalars[index]) }
            return .string(String(view))
        case .undefined:
            throw TemplateError(.runtime, "cannot slice an undefined value")
        default:
            throw TemplateError(.runtime, "'\(value.typeName)' object is not subscriptable")
        }
    }

    private func bound(_ name: String, _ body: @escaping ([TemplateValue], [(String, TemplateValue)]) throws -> TemplateValue) -> TemplateValue {
        .callable(TemplateCallable(name: name, call: body))
    }

    private func dictionaryMethod(_ dictionary: TemplateDictionary, _ name: String) -> TemplateValue? {
        switch name {
        case "items":
            return bound("dict.items") { _, _ in .array(dictionary.pairs.map { .array([.string($0.0), $0.1]) }) }
        case "keys":
            return bound("dict.keys") { _, _ in .array(dictionary.keys.map(TemplateValue.string)) }
        case "values":
            return bound("dict.values") { _, _ in .array(dictionary.pairs.map(\.1)) }
        case "get":
            return bound("dict.get") { arguments, _ in
                guard let key = arguments.first else { throw TemplateError(.runtime, "get() takes a key") }
                guard case .string(let name) = key else { return arguments.count > 1 ? arguments[1] : .none }
                return dictionary[name] ?? (arguments.count > 1 ? arguments[1] : .none)
            }
        default:
            return nil
        }
    }

    private func stringMethod(_ text: String, _ name: String) -> TemplateValue? {
        func stringArgument(_ arguments: [TemplateValue], _ index: Int) throws -> String? {
            guard index < arguments.count else { return nil }
            switch arguments[index] {
            case .none: return nil
            case .string(let value): return value
            case let other: throw TemplateError(.runtime, "\(name)() argument must be str or None, not \(other.typeName)")
            }
        }
        switch name {
        case "strip", "lstrip", "rstrip":
            return bound("str.\(name)") { arguments, _ in
                .string(pythonStrip(text, characters: try stringArgument(arguments, 0),
                                    leading: name != "rstrip", trailing: name != "lstrip"))
            }
        case "upper": return bound("str.upper") { _, _ in .string(text.uppercased()) }
        case "lower": return bound("str.lower") { _, _ in .string(text.lowercased()) }
        case "title": return bound("str.title") { _, _ in .string(pythonTitle(text)) }
        case "capitalize": return bound("str.capitalize") { _, _ in .string(pythonCapitalize(text)) }
        case "startswith", "endswith":
            return bound("str.\(name)") { arguments, _ in
                guard let first = arguments.first else { throw TemplateError(.runtime, "\(name)() takes an argument") }
                let candidates: [TemplateValue]
                if case .array(let items) = first { candidates = items } else { candidates = [first] }
                for candidate in candidates {
                    guard case .string(let affix) = candidate else {
                        throw TemplateError(.runtime, "\(name)() argument must be str, not \(candidate.typeName)")
                    }
                    let matches = name == "startswith"
                        ? text.unicodeScalars.starts(with: affix.unicodeScalars)
                        : text.unicodeScalars.reversed().starts(with: affix.unicodeScalars.reversed())
                    if matches { return .bool(true) }
                }
                return .bool(false)
            }
        case "split", "rsplit":
            return bound("str.\(name)") { arguments, keyword in
                let separator = try stringArgument(arguments, 0) ?? keyword.first(where: { $0.0 == "sep" }).flatMap {
                    if case .string(let value) = $0.1 { return value } else { return nil }
                }
                var limit = -1
                if arguments.count > 1, case .exact(let value) = arguments[1].numericValue { limit = value }
                return .array(try pythonSplit(text, separator: separator, limit: limit, fromRight: name == "rsplit")
                    .map(TemplateValue.string))
            }
        case "replace":
            return bound("str.replace") { arguments, _ in
                guard let old = try stringArgument(arguments, 0), let new = try stringArgument(arguments, 1) else {
                    throw TemplateError(.runtime, "replace() takes two strings")
                }
                var count = -1
                if arguments.count > 2, case .exact(let value) = arguments[2].numericValue { count = value }
                return .string(pythonReplace(text, old, new, count: count))
            }
        case "join":
            return bound("str.join") { arguments, _ in
                guard let first = arguments.first else { throw TemplateError(.runtime, "join() takes an iterable") }
                let parts = try self.iterate(first).map { part -> String in
                    guard case .string(let value) = part else {
                        throw TemplateError(.runtime, "sequence item: expected str instance, \(part.typeName) found")
                    }
                    return value
                }
                return .string(parts.joined(separator: text))
            }
        case "find", "count":
            return bound("str.\(name)") { arguments, _ in
                guard let needle = try stringArgument(arguments, 0) else { throw TemplateError(.runtime, "\(name)() takes a string") }
                let haystack = Array(text.unicodeScalars), pattern = Array(needle.unicodeScalars)
                var occurrences = 0, offset = 0
                while offset + pattern.count <= haystack.count {
                    if Array(haystack[offset..<offset + pattern.count]) == pattern {
                        if name == "find" { return .int(offset) }
                        occurrences += 1
                        offset += max(pattern.count, 1)
                    } else {
                        offset += 1
                    }
                }
                return .int(name == "find" ? -1 : occurrences)
            }
        case "isdigit", "isspace", "isalpha", "isalnum", "isupper", "islower":
            return bound("str.\(name)") { _, _ in
                let scalars = text.unicodeScalars
                switch name {
                case "isdigit": return .bool(!scalars.isEmpty && scalars.allSatisfy { $0.properties.numericType == .decimal || $0.properties.numericType == .digit })
                case "isspace": return .bool(!scalars.isEmpty && scalars.allSatisfy { $0.properties.isWhitespace })
                case "isalpha": return .bool(!scalars.isEmpty && scalars.allSatisfy { $0.properties.isAlphabetic })
                case "isalnum": return .bool(!scalars.isEmpty && scalars.allSatisfy { $0.properties.isAlphabetic || $0.properties.numericType != nil })
                case "isupper": return .bool(scalars.contains { $0.properties.isCased } && text == text.uppercased())
                default: return .bool(scalars.contains { $0.properties.isCased } && text == text.lowercased())
                }
            }
        default:
            return nil
        }
    }

    // MARK: - Operators

    func binary(_ op: String, _ left: TemplateValue, _ right: TemplateValue) throws -> TemplateValue {
        switch op {
        case "==": return .bool(left == right)
        case "!=": return .bool(left != right)
        case "<": return .bool(try compare(left, right, op) < 0)
        case ">": return .bool(try compare(left, right, op) > 0)
        case "<=": return .bool(try compare(left, right, op) <= 0)
        case ">=": return .bool(try compare(left, right, op) >= 0)
        case "in": return .bool(try contains(right, left))
        case "not in": return .bool(!(try contains(right, left)))
        case "~": return .string(left.printed + right.printed)
        default: break
        }
        if left.isUndefined || right.isUndefined {
            throw TemplateError(.runtime, "undefined value used with '\(op)'")
        }
        switch (op, left, right) {
        case ("+", .string(let a), .string(let b)): return .string(a + b)
        case ("+", .array(let a), .array(let b)): return .array(a + b)
        case ("*", .string(let text), _), ("*", _, .string(let text)):
            guard case .exact(let count) = left.numericValue ?? right.numericValue else { break }
            return .string(String(repeating: text, count: try repetitions(count, of: text.unicodeScalars.count)))
        case ("*", .array(let items), _), ("*", _, .array(let items)):
            guard case .exact(let count) = left.numericValue ?? right.numericValue else { break }
            let times = try repetitions(count, of: items.count)
            return .array(Array([[TemplateValue]](repeating: items, count: times).joined()))
        default: break
        }
        guard let a = left.numericValue, let b = right.numericValue else {
            throw TemplateError(.runtime, "unsupported operand type(s) for \(op): '\(left.typeName)' and '\(right.typeName)'")
        }
        return try arithmetic(op, a, b)
    }

    /// Python repeats a sequence zero times for a negative count; a huge result is refused
    /// rather than exhausting memory.
    private func repetitions(_ count: Int, of length: Int) throws -> Int {
        guard count > 0 else { return 0 }
        let (total, overflow) = count.multipliedReportingOverflow(by: max(length, 1))
        guard !overflow, total <= 50_000_000 else { throw TemplateError(.runtime, "sequence repetition result is too large") }
        return count
    }

    private func arithmetic(_ op: String, _ a: TemplateNumber, _ b: TemplateNumber) throws -> TemplateValue {
        if case .exact(let x) = a, case .exact(let y) = b, op != "/" {
            func checked(_ result: (partialValue: Int, overflow: Bool)) throws -> TemplateValue {
                guard !result.overflow else { throw TemplateError(.runtime, "integer overflow in '\(op)'") }
                return .int(result.partialValue)
            }
            switch op {
            case "+": return try checked(x.addingReportingOverflow(y))
            case "-": return try checked(x.subtractingReportingOverflow(y))
            case "*": return try checked(x.multipliedReportingOverflow(by: y))
            case "//", "%":
                guard y != 0 else { throw TemplateError(.runtime, "integer division or modulo by zero") }
                guard !(x == Int.min && y == -1) else { throw TemplateError(.runtime, "integer overflow in '\(op)'") }
                var quotient = x / y, remainder = x % y
                if remainder != 0 && (remainder < 0) != (y < 0) {
                    quotient -= 1
                    remainder += y
                }
                return .int(op == "//" ? quotient : remainder)
            case "**":
                if y >= 0 {
                    // Exponentiation by squaring; Python's ints are unbounded, ours stop at overflow.
                    var result = 1, base = x, exponent = y
                    while exponent > 0 {
                        if exponent & 1 == 1 { result = try checkedProduct(result, base) }
                        exponent >>= 1
                        if exponent > 0 { base = try checkedProduct(base, base) }
                    }
                    return .int(result)
                }
                return .double(pow(Double(x), Double(y)))
            default: break
            }
        }
        let x = a.asDouble, y = b.asDouble
        switch op {
        case "+": return .double(x + y)
        case "-": return .double(x - y)
        case "*": return .double(x * y)
        case "/":
            guard y != 0 else { throw TemplateError(.runtime, "division by zero") }
            return .double(x / y)
        case "//":
            guard y != 0 else { throw TemplateError(.runtime, "float floor division by zero") }
            return .double((x / y).rounded(.down))
        case "%":
            guard y != 0 else { throw TemplateError(.runtime, "float modulo by zero") }
            return .double(x - y * (x / y).rounded(.down))
        case "**": return .double(pow(x, y))
        default: throw TemplateError(.unsupported, "unsupported construct: operator '\(op)'")
        }
    }

    private func checkedProduct(_ a: Int, _ b: Int) throws -> Int {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow else { throw TemplateError(.runtime, "integer overflow in '**'") }
        return product
    }

    /// Python ordering: numbers by value, strings by code point, lists element by element.
    func compare(_ left: TemplateValue, _ right: TemplateValue, _ op: String) throws -> Int {
        switch (left, right) {
        case (.string(let a), .string(let b)):
            let x = Array(a.unicodeScalars.map(\.value)), y = Array(b.unicodeScalars.map(\.value))
            return x == y ? 0 : (x.lexicographicallyPrecedes(y) ? -1 : 1)
        case (.array(let a), .array(let b)):
            for (x, y) in zip(a, b) where x != y { return try compare(x, y, op) }
            return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
        default:
            guard let a = left.numericValue, let b = right.numericValue else {
                throw TemplateError(.runtime, "'\(op)' not supported between instances of '\(left.typeName)' and '\(right.typeName)'")
            }
            if case .exact(let x) = a, case .exact(let y) = b { return x == y ? 0 : (x < y ? -1 : 1) }
            let x = a.asDouble, y = b.asDouble
            return x == y ? 0 : (x < y ? -1 : 1)
        }
    }

    func contains(_ container: TemplateValue, _ element: TemplateValue) throws -> Bool {
        switch container {
        case .string(let text):
            guard case .string(let needle) = element else {
                throw TemplateError(.runtime, "'in <string>' requires string as left operand, not \(element.typeName)")
            }
            return needle.isEmpty || text.range(of: needle, options: .literal) != nil
        case .array(let items): return items.contains(element)
        case .dictionary(let dictionary):
            guard case .string(let key) = element else { return false }
            return dictionary[key] != nil
        case .undefined: return false
        default:
            throw TemplateError(.runtime, "argument of type '\(container.typeName)' is not iterable")
        }
    }

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

// MARK: - Python string helpers

/// `str.strip()`: whitespace by default, else any of the given characters.
func pythonStrip(_ text: String, characters: String?, leading: Bool, trailing: Bool) -> String {
    let scalars = Array(text.unicodeScalars)
    let set = characters.map { Set($0.unicodeScalars) }
    func strippable(_ scalar: Unicode.Scalar) -> Bool {
        if let set { return set.contains(scalar) }
        return scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value)
    }
    var start = 0, end = scalars.count
    if leading { while start < end, strippable(scalars[start]) { start += 1 } }
    if trailing { while end > start, strippable(scalars[end - 1]) { end -= 1 } }
    return String(String.UnicodeScalarView(scalars[start..<end]))
}

/// `str.split(sep, maxsplit)`: without a separator, splits on runs of whitespace and drops empties.
func pythonSplit(_ text: String, separator: String?, limit: Int, fromRight: Bool) throws -> [String] {
    let scalars = Array(text.unicodeScalars)
    func make(_ range: Range<Int>) -> String { String(String.UnicodeScalarView(scalars[range])) }
    if let separator {
        let pattern = Array(separator.unicodeScalars)
        guard !pattern.isEmpty else { throw TemplateError(.runtime, "empty separator") }
        var cuts: [Range<Int>] = []
        if fromRight {
            var offset = scalars.count - pattern.count
            while offset >= 0, limit < 0 || cuts.count < limit {
                if Array(scalars[offset..<offset + pattern.count]) == pattern {
                    cuts.insert(offset..<offset + pattern.count, at: 0)
                    offset -= pattern.count
                } else {
                    offset -= 1
                }
            }
        } else {
            var offset = 0
            while offset + pattern.count <= scalars.count, limit < 0 || cuts.count < limit {
                if Array(scalars[offset..<offset + pattern.count]) == pattern {
                    cuts.append(offset..<offset + pattern.count)
                    offset += pattern.count
                } else {
                    offset += 1
                }
            }
        }
        var parts: [String] = []
        var start = 0
        for cut in cuts {
            parts.append(make(start..<cut.lowerBound))
            start = cut.upperBound
        }
        parts.append(make(start..<scalars.count))
        return parts
    }
    var words: [Range<Int>] = []
    var offset = 0
    while offset < scalars.count {
        while offset < scalars.count, scalars[offset].properties.isWhitespace { offset += 1 }
        guard offset < scalars.count else { break }
        let begin = offset
        while offset < scalars.count, !scalars[offset].properties.isWhitespace { offset += 1 }
        words.append(begin..<offset)
    }
    guard limit >= 0, limit < words.count else { return words.map(make) }
    // With maxsplit, the remainder runs to the end of the text, whitespace included.
    if fromRight {
        return [make(0..<words[words.count - limit - 1].upperBound)] + words.suffix(limit).map(make)
    }
    return words.prefix(limit).map(make) + [make(words[limit].lowerBound..<scalars.count)]
}

func pythonReplace(_ text: String, _ old: String, _ new: String, count: Int) -> String {
    if count < 0 { return old.isEmpty ? text : text.replacingOccurrences(of: old, with: new, options: .literal) }
    var result = text
    var remaining = count
    var searchStart = result.startIndex
    while remaining > 0, !old.isEmpty, let range = result.range(of: old, options: .literal, range: searchStart..<result.endIndex) {
        result.replaceSubrange(range, with: new)
        searchStart = result.index(range.lowerBound, offsetBy: new.count)
        remaining -= 1
    }
    return result
}

/// `str.capitalize()`: first character upper case, the rest lower case.
func pythonCapitalize(_ text: String) -> String {
    guard let first = text.first else { return text }
    return first.uppercased() + text.dropFirst().lowercased()
}

/// `str.title()`: a letter after a non-letter is upper-cased, other letters lower-cased.
func pythonTitle(_ text: String) -> String {
    var result = ""
    var previousIsCased = false
    for character in text {
        result += previousIsCased ? character.lowercased() : character.uppercased()
        previousIsCased = character.isLetter
    }
    return result
}

/// jinja2's `title` filter: words start after whitespace, `-`, or an opening bracket.
func jinjaTitle(_ text: String) -> String {
    var result = ""
    var atWordStart = true
    for character in text {
        let isBoundary = character.isWhitespace || "-([{<".contains(character)
        if isBoundary {
            result.append(character)
            atWordStart = true
        } else {
            result += atWordStart ? character.uppercased() : character.lowercased()
            atWordStart = false
        }
    }
    return result
}
