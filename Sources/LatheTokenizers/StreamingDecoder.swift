/// Turns generated ids into text one id at a time, emitting only complete characters: a multi-byte UTF-8
/// character split over several byte tokens is held back until its last byte arrives.
public struct StreamingDecoder: Sendable {
    private let tokenizer: Tokenizer
    private let skipsSpecialTokens: Bool
    private var ids: [Int] = []
    /// Ids before `emittedStart` are done with; ids from `emittedStart` to `pendingStart` were emitted and are
    /// kept only as context, so that decoders that treat the first token specially see the same first token.
    private var emittedStart = 0
    private var pendingStart = 0

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        skipsSpecialTokens = skipSpecialTokens
    }

    /// Adds one id and returns the text that is now complete (often empty mid-character).
    public mutating func feed(_ id: Int) -> String {
        ids.append(id)
        let emitted = tokenizer.decode(Array(ids[emittedStart..<pendingStart]), skipSpecialTokens: skipsSpecialTokens)
        let whole = tokenizer.decode(Array(ids[emittedStart...]), skipSpecialTokens: skipsSpecialTokens)
        let emittedCount = emitted.unicodeScalars.count
        guard whole.unicodeScalars.count > emittedCount, whole.unicodeScalars.last != "\u{FFFD}" else { return "" }
        emittedStart = pendingStart
        pendingStart = ids.count
        // Keep the window short: older ids never change the text still to come.
        ids.removeFirst(emittedStart)
        pendingStart -= emittedStart
        emittedStart = 0
        return String(String.UnicodeScalarView(whole.unicodeScalars.dropFirst(emittedCount)))
    }

    /// The text still held back (an incomplete character becomes U+FFFD), for the end of generation.
    public mutating func finish() -> String {
        let emitted = tokenizer.decode(Array(ids[emittedStart..<pendingStart]), skipSpecialTokens: skipsSpecialTokens)
        let whole = tokenizer.decode(Array(ids[emittedStart...]), skipSpecialTokens: skipsSpecialTokens)
        ids.removeAll()
        emittedStart = 0
        pendingStart = 0
        return String(String.UnicodeScalarView(whole.unicodeScalars.dropFirst(emitted.unicodeScalars.count)))
    }
}
