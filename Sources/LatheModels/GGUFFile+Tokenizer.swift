import LatheFormats
import LatheTokenizers

extension GGUFFile {
    /// The `tokenizer.ggml.*` metadata that `Tokenizer(gguf:)` builds a tokenizer from; a present key of the
    /// wrong type is an error naming the key.
    public func tokenizerMetadata() throws -> GGUFTokenizerMetadata {
        func optional<T>(_ key: String, _ read: (String) throws -> T) throws -> T? {
            metadata[key] == nil ? nil : try read(key)
        }
        let prefix = "tokenizer.ggml."
        return GGUFTokenizerMetadata(
            source: url.path,
            architecture: try optional("general.architecture", requiredString) ?? "",
            model: try requiredString(prefix + "model"),
            tokens: try requiredStringArray(prefix + "tokens"),
            scores: try optional(prefix + "scores", requiredFloatArray),
            tokenTypes: try optional(prefix + "token_type", requiredIntArray)?.map { Int32(truncatingIfNeeded: $0) },
            merges: try optional(prefix + "merges", requiredStringArray),
            preTokenizer: try optional(prefix + "pre", requiredString),
            bosTokenID: try optional(prefix + "bos_token_id", requiredInt),
            eosTokenID: try optional(prefix + "eos_token_id", requiredInt),
            unknownTokenID: try optional(prefix + "unknown_token_id", requiredInt),
            addBOS: try optional(prefix + "add_bos_token", requiredBool),
            addEOS: try optional(prefix + "add_eos_token", requiredBool),
            addSpacePrefix: try optional(prefix + "add_space_prefix", requiredBool))
    }
}
