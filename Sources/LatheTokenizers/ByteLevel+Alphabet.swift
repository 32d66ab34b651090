extension Tokenizer {
    /// The 256 single-character tokens of byte-level BPE, in byte order: every vocabulary of a byte-level
    /// tokenizer starts from these (used to build new tokenizers and tiny test models).
    public static let byteLevelAlphabet: [String] = ByteLevel.scalarForByte.map { String(Character($0)) }
}
