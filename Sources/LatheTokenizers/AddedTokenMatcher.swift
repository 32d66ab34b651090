/// Finds added tokens in text, leftmost then longest first, as Hugging Face's added-vocabulary split does.
struct AddedTokenMatcher: Sendable {
    enum Segment: Equatable {
        case text(Range<Int>)
        case token(Int)
    }

    private struct Candidate: Sendable {
        var scalars: [Unicode.Scalar]
        var token: AddedToken
    }

    /// Candidates by first scalar, longest first.
    private let candidates: [Unicode.Scalar: [Candidate]]

    /// `normalizer` is applied to the contents of normalized tokens, as they are matched in normalized text.
    init(tokens: [AddedToken], normalizer: [Tokenizer.NormalizerStep]) {
        var candidates: [Unicode.Scalar: [Candidate]] = [:]
        for token in tokens {
            var content = token.content
            for step in normalizer { content = step.apply(content) }
            let scalars = Array(content.unicodeScalars)
            guard let first = scalars.first else { continue }
            candidates[first, default: []].append(Candidate(scalars: scalars, token: token))
        }
        self.candidates = candidates.mapValues { $0.sorted { $0.scalars.count > $1.scalars.count } }
    }

    /// `text` cut into plain stretches and matched tokens (with any whitespace their lstrip/rstrip swallow).
    func split(_ text: [Unicode.Scalar]) -> [Segment] {
        guard !candidates.isEmpty else { return text.isEmpty ? [] : [.text(0..<text.count)] }
        var segments: [Segment] = []
        var plainStart = 0
        var index = 0
        while index < text.count {
            guard let options = candidates[text[index]],
                  let found = options.first(where: { matches($0.scalars, in: text, at: index) }) else {
                index += 1
                continue
            }
            var start = index
            var end = index + found.scalars.count
            if found.token.isSingleWord
                && ((start > 0 && isWordScalar(text[start - 1])) || (end < text.count && isWordScalar(text[end]))) {
                index += 1
                continue
            }
            if found.token.stripsLeft {
                while start > plainStart && text[start - 1].properties.isWhitespace { start -= 1 }
            }
            if found.token.stripsRight {
                while end < text.count && text[end].properties.isWhitespace { end += 1 }
            }
            if start > plainStart { segments.append(.text(plainStart..<start)) }
            segments.append(.token(found.token.id))
            plainStart = end
            index = end
        }
        if plainStart < text.count { segments.append(.text(plainStart..<text.count)) }
        return segments
    }

    private func matches(_ needle: [Unicode.Scalar], in text: [Unicode.Scalar], at index: Int) -> Bool {
        guard index + needle.count <= text.count else { return false }
        for offset in 0..<needle.count where text[index + offset] != needle[offset] { return false }
        return true
    }

    private func isWordScalar(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "_" || ScalarClass.of(scalar) == .letter || ScalarClass.of(scalar) == .number
    }
}
