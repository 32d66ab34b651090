import Foundation

/// Why a tokenizer could not be built: each case names the file or metadata field and what is wrong with it.
public enum TokenizerError: Error, Equatable, CustomStringConvertible {
    /// The file is not JSON at all (or not a JSON object at its top).
    case malformedJSON(file: String, detail: String)
    /// A required field is absent.
    case missingField(file: String, field: String)
    /// A field is present but holds the wrong kind of value.
    case wrongFieldType(file: String, field: String, expected: String)
    /// A field names a feature this tokenizer does not implement.
    case unsupported(file: String, field: String, value: String)
    /// A `Split` pre-tokenizer regex that has no hand-written scanner here.
    case unknownSplitPattern(field: String, pattern: String)
    /// A GGUF `tokenizer.ggml.pre` name with no known pre-tokenizer.
    case unknownPreTokenizer(name: String)
    /// A merge line is not two tokens separated by a space.
    case malformedMerge(source: String, index: Int, merge: String)
    /// A merge names a token (or produces a token) that the vocabulary lacks.
    case unknownTokenInMerge(source: String, index: Int, merge: String, token: String)
    /// A token id (BOS, EOS, an added token...) outside the vocabulary.
    case invalidTokenID(field: String, id: Int, vocabularySize: Int)
    /// A token named by a field is not in the vocabulary.
    case unknownToken(field: String, token: String)
    /// Two arrays that must be parallel have different lengths.
    case lengthMismatch(field: String, expected: Int, actual: Int)
    /// A tokenizer file could not be read.
    case unreadableFile(path: String, detail: String)

    public var description: String {
        switch self {
        case let .malformedJSON(file, detail):
            return "\(file): not a valid JSON object (\(detail))"
        case let .missingField(file, field):
            return "\(file): required field '\(field)' is missing"
        case let .wrongFieldType(file, field, expected):
            return "\(file): field '\(field)' should be \(expected)"
        case let .unsupported(file, field, value):
            return "\(file): '\(field)' = \(value) is not supported by LatheTokenizers"
        case let .unknownSplitPattern(field, pattern):
            return "\(field): the Split regex \(pattern.debugDescription) is not one of the known patterns "
                + "(GPT-2, Llama 3, Qwen2); add a scanner for it"
        case let .unknownPreTokenizer(name):
            return "tokenizer.ggml.pre: unknown pre-tokenizer '\(name)' (known: "
                + PreTokenizer.knownGGUFNames.sorted().joined(separator: ", ") + ")"
        case let .malformedMerge(source, index, merge):
            return "\(source)[\(index)]: merge \(merge.debugDescription) is not two tokens separated by a space"
        case let .unknownTokenInMerge(source, index, merge, token):
            return "\(source)[\(index)]: merge \(merge.debugDescription) uses \(token.debugDescription), "
                + "which is not in the vocabulary"
        case let .invalidTokenID(field, id, vocabularySize):
            return "\(field): token id \(id) is outside the vocabulary of \(vocabularySize) tokens"
        case let .unknownToken(field, token):
            return "\(field): token \(token.debugDescription) is not in the vocabulary"
        case let .lengthMismatch(field, expected, actual):
            return "\(field): has \(actual) entries, expected \(expected) (one per vocabulary token)"
        case let .unreadableFile(path, detail):
            return "\(path): cannot be read (\(detail))"
        }
    }
}

extension TokenizerError: LocalizedError {
    public var errorDescription: String? { description }
}
