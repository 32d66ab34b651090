/// Builds the node tree from lexed segments: block statements with their matching end tags,
/// and expressions with jinja2's precedence (filters and tests bind tighter than any operator).
struct TemplateParser {
    private let segments: [TemplateSegment]
    private var index = 0
    /// How many `for` bodies enclose the current position: `break`/`continue` need one.
    private var loopDepth = 0
    /// Nested blocks; deeper templates are refused rather than risking the stack.
    private var blockDepth = 0
    static let maximumNesting = 200

    /// Statements jinja2 has but this interpreter does not implement; named in the error.
    private static let unsupportedStatements: Set<String> = [
        "include", "extends", "import", "from", "block", "call", "filter", "with", "autoescape", "do", "trans",
    ]

    init(segments: [TemplateSegment]) { self.segments = segments }

    mutating func parseTemplate() throws -> [TemplateNode] {
        let (nodes, end) = try parseBody(until: [], opener: nil)
        if let (keyword, _, position) = end {
            throw TemplateError(.syntax, "unexpected '\(keyword)'", at: position)
        }
        return nodes
    }

    /// Parses nodes until a statement whose keyword is in `until` (returned with its tokens) or
    /// the end of the template (an error if an end tag was expected).
    private mutating func parseBody(until: Set<String>, opener: (String, SourcePosition)?) throws
        -> ([TemplateNode], (String, [TemplateToken], SourcePosition)?) {
        var nodes: [TemplateNode] = []
        while index < segments.count {
            let segment = segments[index]
            index += 1
            switch segment {
            case .text(let text):
                nodes.append(.text(text))
            case .output(let tokens, let position):
                var parser = ExpressionParser(tokens: tokens, tagPosition: position)
                guard !tokens.isEmpty else { throw TemplateError(.syntax, "empty expression '{{ }}'", at: position) }
                let expression = try parser.parseExpression()
                try parser.expectEnd()
                nodes.append(.output(expression, position))
            case .statement(let tokens, let position):
                guard let keyword = tokens.first?.name else {
                    throw TemplateError(.syntax, "expected a statement name after '{%'", at: position)
                }
                if until.contains(keyword) { return (nodes, (keyword, tokens, position)) }
                nodes.append(try parseStatement(keyword: keyword, tokens: tokens, position: position))
            }
        }
        if let (name, position) = opener {
            throw TemplateError(.syntax, "unclosed '\(name)' block: missing '{% end\(name) %}'", at: position)
        }
        return (nodes, nil)
    }

    private mutating func parseStatement(keyword: String, tokens: [TemplateToken], position: SourcePosition) throws
        -> TemplateNode {
        blockDepth += 1
        defer { blockDepth -= 1 }
        guard blockDepth <= Self.maximumNesting else {
            throw TemplateError(.unsupported, "unsupported construct: blocks nested deeper than \(Self.maximumNesting)", at: position)
        }
        var parser = ExpressionParser(tokens: tokens, tagPosition: position)
        parser.advance()
        switch keyword {
        case "if":
            var branches: [(TemplateExpression, [TemplateNode])] = []
            var condition = try parser.parseExpression()
            try parser.expectEnd()
            while true {
                let (body, end) = try parseBody(until: ["elif", "else", "endif"], opener: ("if", position))
                branches.append((condition, body))
                guard let (endKeyword, endTokens, endPosition) = end else { break }
                if endKeyword == "endif" { try expectBare(endTokens, endPosition); break }
                if endKeyword == "else" {
                    try expectBare(endTokens, endPosition)
                    let (otherwise, _) = try parseBody(until: ["endif"], opener: ("if", position))
                    return .conditional(branches: branches, otherwise: otherwise)
                }
                var elifParser = ExpressionParser(tokens: endTokens, tagPosition: endPosition)
                elifParser.advance()
                condition = try elifParser.parseExpression()
                try elifParser.expectEnd()
            }
            return .conditional(branches: branches, otherwise: [])
        case "for":
            var targets = [try parser.expectName()]
            while parser.consumeSymbol(",") { targets.append(try parser.expectName()) }
            try parser.expectKeyword("in")
            // The iterable stops before a trailing `if` (the loop filter), so no conditional here.
            let iterable = try parser.parseOr()
            var filter: TemplateExpression?
            if parser.consumeKeyword("if") { filter = try parser.parseOr() }
            if parser.consumeKeyword("recursive") {
                throw TemplateError(.unsupported, "unsupported construct: recursive for loop", at: position)
            }
            try parser.expectEnd()
            loopDepth += 1
            let (body, end) = try parseBody(until: ["else", "endfor"], opener: ("for", position))
            loopDepth -= 1
            var otherwise: [TemplateNode] = []
            if let (endKeyword, endTokens, endPosition) = end {
                try expectBare(endTokens, endPosition)
                if endKeyword == "else" {
                    let (elseBody, _) = try parseBody(until: ["endfor"], opener: ("for", position))
                    otherwise = elseBody
                }
            }
            return .loop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, position)
        case "set":
            let first = try parser.expectName()
            var target = AssignmentTarget.name(first)
            if parser.consumeSymbol(".") {
                target = .attribute(first, try parser.expectName())
            } else if parser.peekSymbol(",") {
                var names = [first]
                while parser.consumeSymbol(",") { names.append(try parser.expectName()) }
                target = .names(names)
            }
            if parser.atEnd, case .name(let name) = target {
                let (body, _) = try parseBody(until: ["endset"], opener: ("set", position))
                return .assignBlock(name, body)
            }
            try parser.expectSymbol("=")
            let value = try parser.parseTupleOrExpression()
            try parser.expectEnd()
            return .assign(target, value, position)
        case "macro":
            let name = try parser.expectName()
            var parameters: [(String, TemplateExpression?)] = []
            try parser.expectSymbol("(")
            if !parser.consumeSymbol(")") {
                repeat {
                    let parameter = try parser.expectName()
                    parameters.append((parameter, parser.consumeSymbol("=") ? try parser.parseExpression() : nil))
                } while parser.consumeSymbol(",")
                try parser.expectSymbol(")")
            }
            try parser.expectEnd()
            let (body, _) = try parseBody(until: ["endmacro"], opener: ("macro", position))
            return .macro(name: name, parameters: parameters, body: body)
        case "generation":
            try parser.expectEnd()
            let (body, _) = try parseBody(until: ["endgeneration"], opener: ("generation", position))
            return .group(body)
        case "break", "continue":
            try parser.expectEnd()
            guard loopDepth > 0 else {
                throw TemplateError(.syntax, "'\(keyword)' outside of a for loop", at: position)
            }
            return keyword == "break" ? .breakLoop : .continueLoop
        case "elif", "else", "endif", "endfor", "endset", "endmacro", "endgeneration", "endraw":
            throw TemplateError(.syntax, "unexpected '\(keyword)' without its opening block", at: position)
        default:
            if Self.unsupportedStatements.contains(keyword) {
                throw TemplateError(.unsupported, "unsupported construct: {% \(keyword) %}", at: position)
            }
            throw TemplateError(.syntax, "unknown statement '\(keyword)'", at: position)
        }
    }

    private func expectBare(_ tokens: [TemplateToken], _ position: SourcePosition) throws {
        if tokens.count > 1 {
            throw TemplateError(.syntax, "unexpected '\(tokens[1].display)' after '\(tokens[0].display)'", at: tokens[1].position)
        }
    }
}

/// Recursive-descent parser for one tag's tokens, following jinja2's grammar:
/// conditional → or → and → not → comparison → `+ -` → `~` → `* / // %` → `**` → unary → primary
/// with postfix `.x`, `[i]`, `(args)`, then filters `|f` and tests `is t`.
struct ExpressionParser {
    private let tokens: [TemplateToken]
    private let tagPosition: SourcePosition
    private var index = 0
    private var depth = 0

    /// Guards recursion (parentheses, `not not ...`, `- - ...`) against exhausting the stack.
    private mutating func enterNested() throws {
        depth += 1
        guard depth <= TemplateParser.maximumNesting else {
            throw TemplateError(.unsupported, "unsupported construct: expression nested deeper than \(TemplateParser.maximumNesting)",
                                at: currentPosition)
        }
    }

    init(tokens: [TemplateToken], tagPosition: SourcePosition) {
        self.tokens = tokens
        self.tagPosition = tagPosition
    }

    var atEnd: Bool { index >= tokens.count }
    private var current: TemplateToken? { index < tokens.count ? tokens[index] : nil }
    private var currentPosition: SourcePosition { current?.position ?? tagPosition }

    mutating func advance() { index += 1 }

    func peekSymbol(_ symbol: String) -> Bool { current?.isSymbol(symbol) == true }
    private func peekKeyword(_ word: String) -> Bool { current?.isName(word) == true }

    mutating func consumeSymbol(_ symbol: String) -> Bool {
        guard peekSymbol(symbol) else { return false }
        index += 1
        return true
    }

    mutating func consumeKeyword(_ word: String) -> Bool {
        guard peekKeyword(word) else { return false }
        index += 1
        return true
    }

    private func unexpected(_ expected: String) -> TemplateError {
        if let current {
            return TemplateError(.syntax, "expected \(expected), found '\(current.display)'", at: current.position)
        }
        return TemplateError(.syntax, "expected \(expected) before the end of the tag", at: tagPosition)
    }

    mutating func expectSymbol(_ symbol: String) throws {
        guard consumeSymbol(symbol) else { throw unexpected("'\(symbol)'") }
    }

    mutating func expectKeyword(_ word: String) throws {
        guard consumeKeyword(word) else { throw unexpected("'\(word)'") }
    }

    mutating func expectName() throws -> String {
        guard let name = current?.name else { throw unexpected("a name") }
        index += 1
        return name
    }

    func expectEnd() throws {
        if let current { throw TemplateError(.syntax, "unexpected '\(current.display)'", at: current.position) }
    }

    /// `a, b` without parentheses (right side of `set`) becomes a tuple.
    mutating func parseTupleOrExpression() throws -> TemplateExpression {
        let first = try parseExpression()
        guard peekSymbol(",") else { return first }
        var items = [first]
        while consumeSymbol(",") {
            if atEnd { break }
            items.append(try parseExpression())
        }
        return .tuple(items)
    }

    mutating func parseExpression() throws -> TemplateExpression {
        try enterNested()
        defer { depth -= 1 }
        let value = try parseOr()
        guard consumeKeyword("if") else { return value }
        let condition = try parseOr()
        let otherwise = consumeKeyword("else") ? try parseExpression() : nil
        return .conditional(value: value, condition: condition, otherwise: otherwise)
    }

    mutating func parseOr() throws -> TemplateExpression {
        var left = try parseAnd()
        while consumeKeyword("or") { left = .or(left, try parseAnd()) }
        return left
    }

    private mutating func parseAnd() throws -> TemplateExpression {
        var left = try parseNot()
        while consumeKeyword("and") { left = .and(left, try parseNot()) }
        return left
    }

    private mutating func parseNot() throws -> TemplateExpression {
        if consumeKeyword("not") {
            try enterNested()
            defer { depth -= 1 }
            return .not(try parseNot())
        }
        return try parseComparison()
    }

    private mutating func parseComparison() throws -> TemplateExpression {
        var left = try parseAdditive()
        while true {
            let position = currentPosition
            if let symbol = current, case .symbol(let op) = symbol.kind, ["==", "!=", "<", ">", "<=", ">="].contains(op) {
                index += 1
                left = .binary(op, left, try parseAdditive(), position)
            } else if consumeKeyword("in") {
                left = .binary("in", left, try parseAdditive(), position)
            } else if peekKeyword("not"), index + 1 < tokens.count, tokens[index + 1].isName("in") {
                index += 2
                left = .binary("not in", left, try parseAdditive(), position)
            } else {
                return left
            }
        }
    }

    private mutating func parseAdditive() throws -> TemplateExpression {
        var left = try parseConcat()
        while let symbol = current, symbol.isSymbol("+") || symbol.isSymbol("-") {
            index += 1
            left = .binary(symbol.display, left, try parseConcat(), symbol.position)
        }
        return left
    }

    private mutating func parseConcat() throws -> TemplateExpression {
        var left = try parseMultiplicative()
        while let symbol = current, symbol.isSymbol("~") {
            index += 1
            left = .binary("~", left, try parseMultiplicative(), symbol.position)
        }
        return left
    }

    private mutating func parseMultiplicative() throws -> TemplateExpression {
        var left = try parsePower()
        while let symbol = current, ["*", "/", "//", "%"].contains(where: { symbol.isSymbol($0) }) {
            index += 1
            left = .binary(symbol.display, left, try parsePower(), symbol.position)
        }
        return left
    }

    private mutating func parsePower() throws -> TemplateExpression {
        var left = try parseUnary(withFilters: true)
        while let symbol = current, symbol.isSymbol("**") {
            index += 1
            left = .binary("**", left, try parseUnary(withFilters: true), symbol.position)
        }
        return left
    }

    private mutating func parseUnary(withFilters: Bool) throws -> TemplateExpression {
        try enterNested()
        defer { depth -= 1 }
        let position = currentPosition
        var node: TemplateExpression
        if consumeSymbol("-") {
            node = .negate(try parseUnary(withFilters: false), position)
        } else if consumeSymbol("+") {
            node = try parseUnary(withFilters: false)
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilters { node = try parseFiltersAndTests(node) }
        return node
    }

    private mutating func parsePrimary() throws -> TemplateExpression {
        guard let token = current else { throw unexpected("an expression") }
        index += 1
        switch token.kind {
        case .name(let name):
            switch name {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .variable(name, token.position)
            }
        case .string(let value):
            // Adjacent string literals concatenate, as in Python.
            var text = value
            while let next = current, case .string(let more) = next.kind {
                text += more
                index += 1
            }
            return .literal(.string(text))
        case .integer(let value): return .literal(.int(value))
        case .float(let value): return .literal(.double(value))
        case .symbol("("):
            if consumeSymbol(")") { return .tuple([]) }
            let first = try parseExpression()
            if consumeSymbol(")") { return first }
            var items = [first]
            while consumeSymbol(",") {
                if peekSymbol(")") { break }
                items.append(try parseExpression())
            }
            try expectSymbol(")")
            return .tuple(items)
        case .symbol("["):
            var items: [TemplateExpression] = []
            while !peekSymbol("]") {
                items.append(try parseExpression())
                if !consumeSymbol(",") { break }
            }
            try expectSymbol("]")
            return .list(items)
        case .symbol("{"):
            var pairs: [(TemplateExpression, TemplateExpression)] = []
            while !peekSymbol("}") {
                let key = try parseExpression()
                try expectSymbol(":")
                pairs.append((key, try parseExpression()))
                if !consumeSymbol(",") { break }
            }
            try expectSymbol("}")
            return .dictionary(pairs, token.position)
        default:
            index -= 1
            throw unexpected("an expression")
        }
    }

    private mutating func parsePostfix(_ base: TemplateExpression) throws -> TemplateExpression {
        var node = base
        while let token = current {
            if token.isSymbol(".") {
                index += 1
                guard let next = current else { throw unexpected("an attribute name") }
                index += 1
                switch next.kind {
                case .name(let name): node = .attribute(node, name, token.position)
                case .integer(let value): node = .item(node, .literal(.int(value)), token.position)
                default: throw TemplateError(.syntax, "expected an attribute name after '.'", at: next.position)
                }
            } else if token.isSymbol("[") {
                index += 1
                node = try parseSubscript(node, position: token.position)
            } else if token.isSymbol("(") {
                index += 1
                node = .call(node, try parseCallArguments(), token.position)
            } else {
                break
            }
        }
        return node
    }

    private mutating func parseSubscript(_ base: TemplateExpression, position: SourcePosition) throws -> TemplateExpression {
        var parts: [TemplateExpression?] = [nil]
        var isSlice = false
        while !peekSymbol("]") {
            if consumeSymbol(":") {
                isSlice = true
                parts.append(nil)
                guard parts.count <= 3 else { throw unexpected("']'") }
                continue
            }
            guard parts[parts.count - 1] == nil else { throw unexpected("':' or ']'") }
            parts[parts.count - 1] = try parseExpression()
        }
        try expectSymbol("]")
        if !isSlice {
            guard let key = parts[0] else { throw TemplateError(.syntax, "empty subscript '[]'", at: position) }
            return .item(base, key, position)
        }
        while parts.count < 3 { parts.append(nil) }
        return .slice(base, start: parts[0], stop: parts[1], step: parts[2], position)
    }

    private mutating func parseCallArguments() throws -> CallArguments {
        var arguments = CallArguments()
        while !peekSymbol(")") {
            if let name = current?.name, index + 1 < tokens.count, tokens[index + 1].isSymbol("=") {
                index += 2
                arguments.keyword.append((name, try parseExpression()))
            } else {
                arguments.positional.append(try parseExpression())
            }
            if !consumeSymbol(",") { break }
        }
        try expectSymbol(")")
        return arguments
    }

    private mutating func parseFiltersAndTests(_ base: TemplateExpression) throws -> TemplateExpression {
        var node = base
        while let token = current {
            if token.isSymbol("|") {
                index += 1
                var name = try expectName()
                while consumeSymbol(".") { name += "." + (try expectName()) }
                guard TemplateBuiltins.filters.contains(name) else {
                    throw TemplateError(.unsupported, "unsupported construct: filter '\(name)'", at: token.position)
                }
                let arguments = consumeSymbol("(") ? try parseCallArguments() : CallArguments()
                node = .filter(node, name, arguments, token.position)
            } else if token.isName("is") {
                index += 1
                let negated = consumeKeyword("not")
                let name = try expectName()
                guard TemplateBuiltins.tests.contains(name) else {
                    throw TemplateError(.unsupported, "unsupported construct: test '\(name)'", at: token.position)
                }
                var arguments = CallArguments()
                if consumeSymbol("(") {
                    arguments = try parseCallArguments()
                } else if let next = current, startsTestArgument(next) {
                    let argument = try parsePostfix(try parsePrimary())
                    arguments.positional = [argument]
                }
                node = .test(node, name, negated: negated, arguments, token.position)
            } else if token.isSymbol("(") {
                index += 1
                node = .call(node, try parseCallArguments(), token.position)
            } else {
                break
            }
        }
        return node
    }

    /// jinja2 reads one bare argument after a test name (`is divisibleby 3`, `is equalto 'x'`)
    /// unless the next token ends the expression.
    private func startsTestArgument(_ token: TemplateToken) -> Bool {
        switch token.kind {
        case .name(let name): return !["else", "or", "and", "if", "in", "not", "is"].contains(name)
        case .string, .integer, .float: return true
        case .symbol(let symbol): return symbol == "[" || symbol == "{"
        }
    }
}
