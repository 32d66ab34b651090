import Foundation

/// Walks the node tree with a stack of variable scopes, writing output as jinja2 would.
/// One renderer serves one `render` call.
final class TemplateRenderer {
    /// Scopes from outermost (the context plus top-level `set`s) to innermost (loop bodies, macros).
    private var scopes: [[String: TemplateValue]]
    private var globals: [String: TemplateValue] = [:]
    private var output = ""
    private let now: Date
    /// Nested macro calls; a runaway recursion becomes an error instead of a stack overflow.
    private var macroDepth = 0
    private static let maximumMacroDepth = 100

    private enum Flow { case normal, breakLoop, continueLoop }

    init(context: [String: TemplateValue], now: Date) {
        self.scopes = [context]
        self.now = now
        installGlobals()
    }

    func render(_ nodes: [TemplateNode]) throws -> String {
        _ = try renderNodes(nodes)
        return output
    }

    // MARK: - Statements

    private func renderNodes(_ nodes: [TemplateNode]) throws -> Flow {
        for node in nodes {
            let flow = try renderNode(node)
            if flow != .normal { return flow }
        }
        return .normal
    }

    private func renderNode(_ node: TemplateNode) throws -> Flow {
        switch node {
        case .text(let text):
            output += text
        case .output(let expression, let position):
            output += try located(position) { try evaluate(expression).printed }
        case .conditional(let branches, let otherwise):
            for (condition, body) in branches {
                if try evaluate(condition).isTruthy { return try renderNodes(body) }
            }
            return try renderNodes(otherwise)
        case .loop(let targets, let iterable, let filter, let body, let otherwise, let position):
            return try renderLoop(targets: targets, iterable: iterable, filter: filter, body: body,
                                  otherwise: otherwise, position: position)
        case .assign(let target, let expression, let position):
            let value = try located(position) { try evaluate(expression) }
            try assign(value, to: target, position: position)
        case .assignBlock(let name, let body):
            let saved = output
            output = ""
            defer { output = saved }
            _ = try renderNodes(body)
            let captured = output
            scopes[scopes.count - 1][name] = .string(captured)
        case .macro(let name, let parameters, let body):
            scopes[scopes.count - 1][name] = .callable(makeMacro(name: name, parameters: parameters, body: body))
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        case .group(let body):
            return try renderNodes(body)
        }
        return .normal
    }

    private func assign(_ value: TemplateValue, to target: AssignmentTarget, position: SourcePosition) throws {
        switch target {
        case .name(let name):
            scopes[scopes.count - 1][name] = value
        case .attribute(let object, let attribute):
            guard case .namespace(let namespace) = lookup(object) else {
                throw TemplateError(.runtime, "can only set attributes of a namespace; '\(object)' is not one", at: position)
            }
            namespace.attributes[attribute] = value
        case .names(let names):
            let items = try iterate(value)
            guard items.count == names.count else {
                throw TemplateError(.runtime, "cannot unpack \(items.count) values into \(names.count) names", at: position)
            }
            for (name, item) in zip(names, items) { scopes[scopes.count - 1][name] = item }
        }
    }

    private func bind(_ targets: [String], to item: TemplateValue, position: SourcePosition) throws {
        if targets.count == 1 {
            scopes[scopes.count - 1][targets[0]] = item
            return
        }
        let parts = try iterate(item)
        guard parts.count == targets.count else {
            throw TemplateError(.runtime, "cannot unpack \(parts.count) values into \(targets.count) loop variables", at: position)
        }
        for (name, part) in zip(targets, parts) { scopes[scopes.count - 1][name] = part }
    }

    private func renderLoop(targets: [String], iterable: TemplateExpression, filter: TemplateExpression?,
                            body: [TemplateNode], otherwise: [TemplateNode], position: SourcePosition) throws -> Flow {
        var items = try located(position) { try iterate(try evaluate(iterable)) }
        scopes.append([:])
        defer { scopes.removeLast() }
        if let filter {
            items = try items.filter { item in
                try bind(targets, to: item, position: position)
                return try evaluate(filter).isTruthy
            }
        }
        if items.isEmpty {
            return try renderNodes(otherwise)
        }
        let length = items.count
        for (index, item) in items.enumerated() {
            try bind(targets, to: item, position: position)
            var loop = TemplateDictionary([
                ("index", .int(index + 1)), ("index0", .int(index)),
                ("revindex", .int(length - index)), ("revindex0", .int(length - index - 1)),
                ("first", .bool(index == 0)), ("last", .bool(index == length - 1)),
                ("length", .int(length)), ("depth", .int(1)), ("depth0", .int(0)),
            ])
            if index > 0 { loop["previtem"] = items[index - 1] }
            if index + 1 < length { loop["nextitem"] = items[index + 1] }
            loop["cycle"] = .callable(TemplateCallable(name: "loop.cycle") { arguments, _ in
                guard !arguments.isEmpty else { throw TemplateError(.runtime, "loop.cycle() needs at least one value") }
                return arguments[index % arguments.count]
            })
            scopes[scopes.count - 1]["loop"] = .dictionary(loop)
            if try renderNodes(body) == .breakLoop { break }
        }
        return .normal
    }

    private func makeMacro(name: String, parameters: [(String, TemplateExpression?)], body: [TemplateNode]) -> TemplateCallable {
        TemplateCallable(name: name) { [unowned self] positional, keyword in
            guard positional.count <= parameters.count else {
                throw TemplateError(.runtime, "macro '\(name)' takes \(parameters.count) arguments, got \(positional.count)")
            }
            var frame: [String: TemplateValue] = [:]
            var keywordValues = Dictionary(keyword, uniquingKeysWith: { _, last in last })
            for (offset, (parameter, defaultValue)) in parameters.enumerated() {
                if offset < positional.count {
                    frame[parameter] = positional[offset]
                } else if let value = keywordValues.removeValue(forKey: parameter) {
                    frame[parameter] = value
                } else if let defaultValue {
                    frame[parameter] = try self.evaluate(defaultValue)
                } else {
                    frame[parameter] = .undefined
                }
            }
            if let unknown = keywordValues.keys.sorted().first {
                throw TemplateError(.runtime, "macro '\(name)' has no parameter named '\(unknown)'")
            }
            guard self.macroDepth < Self.maximumMacroDepth else {
                throw TemplateError(.runtime, "macro '\(name)' recursed more than \(Self.maximumMacroDepth) levels")
            }
            let savedScopes = self.scopes
            let savedOutput = self.output
            self.scopes = [savedScopes[0], frame]
            self.output = ""
            self.macroDepth += 1
            defer {
                self.scopes = savedScopes
                self.output = savedOutput
                self.macroDepth -= 1
            }
            _ = try self.renderNodes(body)
            return .string(self.output)
        }
    }

    // MARK: - Expressions

    private func located<T>(_ position: SourcePosition, _ work: () throws -> T) throws -> T {
        do {
            return try work()
        } catch let error as TemplateError {
            throw error.located(at: position)
        }
    }

    private func lookup(_ name: String) -> TemplateValue {
        for scope in scopes.reversed() {
            if let value = scope[name] { return value }
        }
        return globals[name] ?? .undefined
    }

    func evaluate(_ expression: TemplateExpression) throws -> TemplateValue {
        switch expression {
        case .literal(let value):
            return value
        case .variable(let name, _):
            return lookup(name)
        case .list(let items):
            return .array(try items.map(evaluate))
        case .tuple(let items):
            return .array(try items.map(evaluate))
        case .dictionary(let pairs, let position):
            var dictionary = TemplateDictionary()
            for (keyExpression, valueExpression) in pairs {
                let key = try evaluate(keyExpression)
                guard case .string(let name) = key else {
                    throw TemplateError(.unsupported, "unsupported construct: dictionary key of type \(key.typeName)", at: position)
                }
                dictionary[name] = try evaluate(valueExpression)
            }
            return .dictionary(dictionary)
        case .attribute(let base, let name, let position):
            return try located(position) { try attribute(of: try evaluateNamingUndefined(base), name) }
        case .item(let base, let key, let position):
            return try located(position) { try item(of: try evaluateNamingUndefined(base), try evaluate(key)) }
        case .slice(let base, let start, let stop, let step, let position):
            return try located(position) {
                try slice(try evaluate(base), start: try start.map(evaluate), stop: try stop.map(evaluate),
                          step: try step.map(evaluate))
            }
        case .call(let callee, let arguments, let position):
            return try located(position) {
                let function = try evaluate(callee)
                let (positional, keyword) = try evaluateArguments(arguments)
                guard case .callable(let callable) = function else {
                    if case .undefined = function, case .variable(let name, _) = callee {
                        throw TemplateError(.runtime, "'\(name)' is undefined")
                    }
                    throw TemplateError(.runtime, "'\(function.typeName)' object is not callable")
                }
                return try callable.call(positional, keyword)
            }
        case .filter(let base, let name, let arguments, let position):
            return try located(position) {
                let value = try evaluate(base)
                let (positional, keyword) = try evaluateArguments(arguments)
                return try applyFilter(name, to: value, positional, keyword)
            }
        case .test(let base, let name, let negated, let arguments, let position):
            return try located(position) {
                let value = try evaluate(base)
                let (positional, _) = try evaluateArguments(arguments)
                return .bool(try applyTest(name, to: value, positional) != negated)
            }
        case .not(let operand):
            return .bool(!(try evaluate(operand).isTruthy))
        case .negate(let operand, let position):
            return try located(position) {
                switch try evaluate(operand) {
                case .int(let value):
                    guard value != Int.min else { throw TemplateError(.runtime, "integer overflow in unary -") }
                    return .int(-value)
                case .bool(let value): return .int(value ? -1 : 0)
                case .double(let value): return .double(-value)
                case let other: throw TemplateError(.runtime, "bad operand type for unary -: '\(other.typeName)'")
                }
            }
        case .binary(let op, let left, let right, let position):
            return try located(position) { try binary(op, try evaluate(left), try evaluate(right)) }
        case .and(let left, let right):
            let value = try evaluate(left)
            return value.isTruthy ? try evaluate(right) : value
        case .or(let left, let right):
            let value = try evaluate(left)
            return value.isTruthy ? value : try evaluate(right)
        case .conditional(let value, let condition, let otherwise):
            if try evaluate(condition).isTruthy { return try evaluate(value) }
            return try otherwise.map(evaluate) ?? .undefined
        }
    }

    /// A variable about to be read from: if it is undefined, say which one, as jinja2 does.
    private func evaluateNamingUndefined(_ expression: TemplateExpression) throws -> TemplateValue {
        let value = try evaluate(expression)
        if value.isUndefined, case .variable(let name, let position) = expression {
            throw TemplateError(.runtime, "'\(name)' is undefined", at: position)
        }
        return value
    }

    private func evaluateArguments(_ arguments: CallArguments) throws -> ([TemplateValue], [(String, TemplateValue)]) {
        (try arguments.positional.map(evaluate), try arguments.keyword.map { ($0.0, try evaluate($0.1)) })
    }

    /// Python iteration: list items, dict keys, string characters; Undefined iterates as empty.
    func iterate(_ value: TemplateValue) throws -> [TemplateValue] {
        switch value {
        case .undefined: return []
        case .array(let items): return items
        case .dictionary(let dictionary): return dictionary.keys.map(TemplateValue.string)
        case .string(let text): return text.unicodeScalars.map { .string(String($0)) }
        default: throw TemplateError(.runtime, "'\(value.typeName)' object is not iterable")
        }
    }

    // MARK: - Globals

    private func installGlobals() {
        func function(_ name: String, _ body: @escaping ([TemplateValue], [(String, TemplateValue)]) throws -> TemplateValue) {
            globals[name] = .callable(TemplateCallable(name: name, call: body))
        }
        function("raise_exception") { arguments, _ in
            throw TemplateError(.raised, arguments.first?.printed ?? "")
        }
        function("range") { arguments, _ in
            let bounds = try arguments.map { argument -> Int in
                guard case .exact(let value) = argument.numericValue else {
                    throw TemplateError(.runtime, "range() takes integers, got '\(argument.typeName)'")
                }
                return value
            }
            let (start, stop, step): (Int, Int, Int)
            switch bounds.count {
            case 1: (start, stop, step) = (0, bounds[0], 1)
            case 2: (start, stop, step) = (bounds[0], bounds[1], 1)
            case 3: (start, stop, step) = (bounds[0], bounds[1], bounds[2])
            default: throw TemplateError(.runtime, "range() takes 1 to 3 arguments, got \(bounds.count)")
            }
            guard step != 0 else { throw TemplateError(.runtime, "range() step must not be zero") }
            let (span, overflow) = stop.subtractingReportingOverflow(start)
            guard !overflow, span / step < 1_000_000 else { throw TemplateError(.runtime, "range() is too large") }
            return .array(Array(stride(from: start, to: stop, by: step)).map(TemplateValue.int))
        }
        function("namespace") { arguments, keyword in
            var attributes = TemplateDictionary()
            for argument in arguments {
                guard case .dictionary(let initial) = argument else {
                    throw TemplateError(.runtime, "namespace() takes a dict or keyword arguments")
                }
                for (key, value) in initial.pairs { attributes[key] = value }
            }
            for (key, value) in keyword { attributes[key] = value }
            return .namespace(TemplateNamespace(attributes))
        }
        function("dict") { arguments, keyword in
            var dictionary = TemplateDictionary()
            if let first = arguments.first, case .dictionary(let initial) = first { dictionary = initial }
            for (key, value) in keyword { dictionary[key] = value }
            return .dictionary(dictionary)
        }
        let now = self.now
        function("strftime_now") { arguments, _ in
            guard case .string(let format) = arguments.first else {
                throw TemplateError(.runtime, "strftime_now() takes a format string")
            }
            return .string(pythonStrftime(format, now))
        }
    }
}

/// Python's `datetime.strftime` for the directives chat templates use, with English names
/// (the C locale Python uses by default) in the local time zone; `%-d` style drops padding.
func pythonStrftime(_ format: String, _ date: Date) -> String {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone.current
    let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
    let year = parts.year ?? 1970, month = parts.month ?? 1, day = parts.day ?? 1
    let hour = parts.hour ?? 0, minute = parts.minute ?? 0, second = parts.second ?? 0
    let weekday = ((parts.weekday ?? 1) + 5) % 7  // Monday = 0
    let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                  "October", "November", "December"]
    let days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    let dayOfYear = calendar.ordinality(of: .day, in: .year, for: date) ?? 1
    var result = ""
    var scalars = Array(format.unicodeScalars)[...]
    while let scalar = scalars.popFirst() {
        guard scalar == "%", let next = scalars.first else { result.unicodeScalars.append(scalar); continue }
        scalars.removeFirst()
        var directive = next
        var padded = true
        if directive == "-", let after = scalars.first {
            scalars.removeFirst()
            directive = after
            padded = false
        }
        func number(_ value: Int, _ width: Int) -> String {
            padded ? String(format: "%0\(width)d", value) : String(value)
        }
        switch directive {
        case "Y": result += String(year)
        case "y": result += number(year % 100, 2)
        case "m": result += number(month, 2)
        case "d": result += number(day, 2)
        case "e": result += padded ? String(format: "%2d", day) : String(day)
        case "H": result += number(hour, 2)
        case "I": result += number(hour % 12 == 0 ? 12 : hour % 12, 2)
        case "M": result += number(minute, 2)
        case "S": result += number(second, 2)
        case "p": result += hour < 12 ? "AM" : "PM"
        case "j": result += number(dayOfYear, 3)
        case "B": result += months[month - 1]
        case "b", "h": result += String(months[month - 1].prefix(3))
        case "A": result += days[weekday]
        case "a": result += String(days[weekday].prefix(3))
        case "%": result += "%"
        default:
            result += "%"
            result.unicodeScalars.append(directive)
        }
    }
    return result
}
