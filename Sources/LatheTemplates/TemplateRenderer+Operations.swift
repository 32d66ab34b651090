import Foundation

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
}
