import Foundation

// Python `str` behaviour the templates rely on, over Unicode scalars as Python counts them.

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
