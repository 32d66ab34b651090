import Foundation

/// One token inside a `{{ }}` or `{% %}` tag.
struct TemplateToken: Equatable {
    enum Kind: Equatable {
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        case symbol(String)
    }
    let kind: Kind
    let position: SourcePosition

    var name: String? {
        if case .name(let value) = kind { return value }
        return nil
    }

    func isSymbol(_ symbol: String) -> Bool { kind == .symbol(symbol) }
    func isName(_ word: String) -> Bool { kind == .name(word) }

    var display: String {
        switch kind {
        case .name(let value), .symbol(let value): return value
        case .string(let value): return pythonStringRepr(value)
        case .integer(let value): return String(value)
        case .float(let value): return pythonFloatRepr(value)
        }
    }
}

/// The template split into literal text and tags, with jinja2's whitespace rules already applied.
enum TemplateSegment {
    case text(String)
    /// `{{ ... }}`: tokens of the expression, position of the opening `{{`.
    case output([TemplateToken], SourcePosition)
    /// `{% ... %}`: tokens of the statement, position of the opening `{%`.
    case statement([TemplateToken], SourcePosition)
}

/// Splits template source the way jinja2's lexer does with the settings transformers uses:
/// `trim_blocks` (drop the first newline after a block or comment tag), `lstrip_blocks` (drop
/// spaces and tabs before a block or comment tag that starts its line), `-`/`+` whitespace
/// control, `\r\n` → `\n`, one trailing newline of the template removed, `{% raw %}` kept verbatim.
struct TemplateLexer {
    private let source: [Unicode.Scalar]
    private let lineStarts: [Int]
    private var index = 0

    init(_ text: String) {
        var normalized = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        if normalized.hasSuffix("\n") { normalized.removeLast() }
        source = Array(normalized.unicodeScalars)
        var starts = [0]
        for (offset, scalar) in source.enumerated() where scalar == "\n" { starts.append(offset + 1) }
        lineStarts = starts
    }

    func position(of offset: Int) -> SourcePosition {
        var low = 0, high = lineStarts.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if lineStarts[middle] <= offset { low = middle } else { high = middle - 1 }
        }
        return SourcePosition(line: low + 1, column: offset - lineStarts[low] + 1)
    }

    private func matches(_ text: String, at offset: Int) -> Bool {
        var cursor = offset
        for scalar in text.unicodeScalars {
            guard cursor < source.count, source[cursor] == scalar else { return false }
            cursor += 1
        }
        return true
    }

    private func string(_ range: Range<Int>) -> String {
        String(String.UnicodeScalarView(source[range]))
    }

    private static func isSpace(_ scalar: Unicode.Scalar) -> Bool {
        scalar == " " || scalar == "\t" || scalar == "\n" || scalar == "\r" || scalar == "\u{0B}" || scalar == "\u{0C}"
    }

    mutating func segments() throws -> [TemplateSegment] {
        var result: [TemplateSegment] = []
        var lineStarting = true
        while index < source.count {
            // Find the next tag opener.
            var opener = index
            while opener < source.count {
                if source[opener] == "{", opener + 1 < source.count, "{%#".unicodeScalars.contains(source[opener + 1]) { break }
                opener += 1
            }
            var textEnd = opener
            if opener >= source.count {
                result.append(.text(string(index..<source.count)))
                break
            }
            let kind = source[opener + 1]
            let sign: Unicode.Scalar? = opener + 2 < source.count && (source[opener + 2] == "-" || source[opener + 2] == "+")
                ? source[opener + 2] : nil
            if sign == "-" {
                while textEnd > index, Self.isSpace(source[textEnd - 1]) { textEnd -= 1 }
            } else if sign != "+" && kind != "{" {
                // lstrip_blocks: only if nothing but spaces/tabs precede the tag on its line.
                var lineStart = textEnd
                while lineStart > index, source[lineStart - 1] != "\n" { lineStart -= 1 }
                if lineStart > index || lineStarting,
                   source[lineStart..<textEnd].allSatisfy({ $0 == " " || $0 == "\t" }) {
                    textEnd = lineStart
                }
            }
            if textEnd > index { result.append(.text(string(index..<textEnd))) }
            let openerPosition = position(of: opener)
            let bodyStart = opener + 2 + (sign == nil ? 0 : 1)
            if kind == "#" {
                var close = bodyStart
                while close < source.count, !matches("#}", at: close) { close += 1 }
                guard close < source.count else {
                    throw TemplateError(.syntax, "unclosed comment '{#'", at: openerPosition)
                }
                index = close + 2
                let stripAfter = close > bodyStart && source[close - 1] == "-"
                let keepNewline = close > bodyStart && source[close - 1] == "+"
                lineStarting = finishTag(stripAfter: stripAfter, trimNewline: !keepNewline)
                continue
            }
            let closer = kind == "{" ? "}}" : "%}"
            let (tokens, stripAfter, keepNewline, afterTag) = try lexTag(from: bodyStart, closer: closer, opener: openerPosition)
            index = afterTag
            if kind == "{" {
                result.append(.output(tokens, openerPosition))
                lineStarting = finishTag(stripAfter: stripAfter, trimNewline: false)
                continue
            }
            if tokens.count == 1, tokens[0].isName("raw") {
                // Raw blocks: no trim_blocks newline after `{% raw %}` (jinja2's raw_begin rule).
                if stripAfter { while index < source.count, Self.isSpace(source[index]) { index += 1 } }
                try lexRawBody(opener: openerPosition, into: &result)
                lineStarting = index > 0 && source[index - 1] == "\n"
                continue
            }
            result.append(.statement(tokens, openerPosition))
            lineStarting = finishTag(stripAfter: stripAfter, trimNewline: !keepNewline)
        }
        return result
    }

    /// Applies `-%}` (strip all following whitespace) or trim_blocks (drop one newline); returns
    /// whether the consumed tag ended with a newline, which lets lstrip_blocks act on the next tag.
    private mutating func finishTag(stripAfter: Bool, trimNewline: Bool) -> Bool {
        if stripAfter {
            while index < source.count, Self.isSpace(source[index]) { index += 1 }
        } else if trimNewline, index < source.count, source[index] == "\n" {
            index += 1
        }
        // The closer itself ends in "}", so a newline here was consumed with the tag.
        return index > 0 && source[index - 1] == "\n"
    }

    private mutating func lexRawBody(opener: SourcePosition, into result: inout [TemplateSegment]) throws {
        var cursor = index
        while cursor < source.count {
            if matches("{%", at: cursor) {
                var probe = cursor + 2
                let stripBefore = probe < source.count && source[probe] == "-"
                if probe < source.count, source[probe] == "-" || source[probe] == "+" { probe += 1 }
                while probe < source.count, Self.isSpace(source[probe]) { probe += 1 }
                if matches("endraw", at: probe) {
                    probe += 6
                    while probe < source.count, Self.isSpace(source[probe]) { probe += 1 }
                    let stripAfter = probe < source.count && source[probe] == "-"
                    if probe < source.count, source[probe] == "-" || source[probe] == "+" { probe += 1 }
                    if matches("%}", at: probe) {
                        var textEnd = cursor
                        if stripBefore { while textEnd > index, Self.isSpace(source[textEnd - 1]) { textEnd -= 1 } }
                        if textEnd > index { result.append(.text(string(index..<textEnd))) }
                        index = probe + 2
                        _ = finishTag(stripAfter: stripAfter, trimNewline: true)
                        return
                    }
                }
            }
            cursor += 1
        }
        throw TemplateError(.syntax, "unclosed 'raw' block (missing {% endraw %})", at: opener)
    }

    /// Tokens of one tag up to its closer. Returns (tokens, `-` before closer, `+` before closer,
    /// offset after the closer).
    private func lexTag(from start: Int, closer: String, opener: SourcePosition) throws
        -> ([TemplateToken], Bool, Bool, Int) {
        var tokens: [TemplateToken] = []
        var cursor = start
        var depth = 0
        let tagName = closer == "}}" ? "'{{'" : "'{%'"
        while true {
            while cursor < source.count, Self.isSpace(source[cursor]) { cursor += 1 }
            guard cursor < source.count else {
                throw TemplateError(.syntax, "unclosed tag \(tagName): missing '\(closer)'", at: opener)
            }
            let atCloser = depth == 0 || closer == "%}"
            if atCloser {
                if matches(closer, at: cursor) { return (tokens, false, false, cursor + 2) }
                if source[cursor] == "-", matches(closer, at: cursor + 1) { return (tokens, true, false, cursor + 3) }
                if source[cursor] == "+", matches(closer, at: cursor + 1) { return (tokens, false, true, cursor + 3) }
            }
            if closer == "}}", matches("%}", at: cursor) || matches("{%", at: cursor) || matches("{{", at: cursor) && depth == 0 {
                throw TemplateError(.syntax, "unclosed tag \(tagName): found '\(string(cursor..<cursor + 2))' before '}}'", at: opener)
            }
            if closer == "%}", matches("}}", at: cursor) && depth == 0 || matches("{%", at: cursor) {
                throw TemplateError(.syntax, "unclosed tag \(tagName): found '\(string(cursor..<cursor + 2))' before '%}'", at: opener)
            }
            let tokenPosition = position(of: cursor)
            let scalar = source[cursor]
            if scalar == "_" || scalar.properties.isAlphabetic {
                let begin = cursor
                while cursor < source.count, source[cursor] == "_" || source[cursor].properties.isAlphabetic
                    || ("0"..."9").contains(source[cursor]) { cursor += 1 }
                tokens.append(TemplateToken(kind: .name(string(begin..<cursor)), position: tokenPosition))
            } else if ("0"..."9").contains(scalar) {
                let begin = cursor
                var isFloat = false
                while cursor < source.count, ("0"..."9").contains(source[cursor]) || source[cursor] == "_" { cursor += 1 }
                if cursor + 1 < source.count, source[cursor] == ".", ("0"..."9").contains(source[cursor + 1]) {
                    isFloat = true
                    cursor += 1
                    while cursor < source.count, ("0"..."9").contains(source[cursor]) || source[cursor] == "_" { cursor += 1 }
                }
                if cursor < source.count, source[cursor] == "e" || source[cursor] == "E" {
                    var probe = cursor + 1
                    if probe < source.count, source[probe] == "+" || source[probe] == "-" { probe += 1 }
                    if probe < source.count, ("0"..."9").contains(source[probe]) {
                        isFloat = true
                        cursor = probe
                        while cursor < source.count, ("0"..."9").contains(source[cursor]) { cursor += 1 }
                    }
                }
                let text = string(begin..<cursor).replacingOccurrences(of: "_", with: "")
                if isFloat, let value = Double(text) {
                    tokens.append(TemplateToken(kind: .float(value), position: tokenPosition))
                } else if let value = Int(text) {
                    tokens.append(TemplateToken(kind: .integer(value), position: tokenPosition))
                } else {
                    throw TemplateError(.syntax, "bad number '\(text)'", at: tokenPosition)
                }
            } else if scalar == "'" || scalar == "\"" {
                let (value, next) = try lexString(from: cursor, position: tokenPosition)
                tokens.append(TemplateToken(kind: .string(value), position: tokenPosition))
                cursor = next
            } else {
                let twoCharacter = cursor + 1 < source.count ? string(cursor..<cursor + 2) : ""
                if ["//", "**", "==", "!=", "<=", ">="].contains(twoCharacter) {
                    tokens.append(TemplateToken(kind: .symbol(twoCharacter), position: tokenPosition))
                    cursor += 2
                } else if "+-*/%~<>=()[]{},.:|".unicodeScalars.contains(scalar) {
                    if "([{".unicodeScalars.contains(scalar) { depth += 1 }
                    if ")]}".unicodeScalars.contains(scalar) { depth = max(0, depth - 1) }
                    tokens.append(TemplateToken(kind: .symbol(String(scalar)), position: tokenPosition))
                    cursor += 1
                } else {
                    throw TemplateError(.syntax, "unexpected character '\(scalar)'", at: tokenPosition)
                }
            }
        }
    }

    /// A quoted string literal with Python's escapes (`\n`, `\t`, `\\`, `\'`, `\"`, `\xHH`,
    /// `\uHHHH`, `\UHHHHHHHH`); unknown escapes keep their backslash, as Python does.
    private func lexString(from start: Int, position: SourcePosition) throws -> (String, Int) {
        let quote = source[start]
        var cursor = start + 1
        var value = String.UnicodeScalarView()
        while cursor < source.count {
            let scalar = source[cursor]
            if scalar == quote { return (String(value), cursor + 1) }
            if scalar == "\\", cursor + 1 < source.count {
                let escape = source[cursor + 1]
                cursor += 2
                switch escape {
                case "n": value.append("\n")
                case "t": value.append("\t")
                case "r": value.append("\r")
                case "\\": value.append("\\")
                case "'": value.append("'")
                case "\"": value.append("\"")
                case "0": value.append("\u{0}")
                case "a": value.append("\u{07}")
                case "b": value.append("\u{08}")
                case "f": value.append("\u{0C}")
                case "v": value.append("\u{0B}")
                case "\n": break
                case "x", "u", "U":
                    let width = escape == "x" ? 2 : escape == "u" ? 4 : 8
                    guard cursor + width <= source.count,
                          let code = UInt32(string(cursor..<cursor + width), radix: 16),
                          let decoded = Unicode.Scalar(code) else {
                        throw TemplateError(.syntax, "bad \\\(escape) escape in string literal", at: position)
                    }
                    value.append(decoded)
                    cursor += width
                default:
                    value.append("\\")
                    value.append(escape)
                }
                continue
            }
            value.append(scalar)
            cursor += 1
        }
        throw TemplateError(.syntax, "unterminated string literal", at: position)
    }
}
