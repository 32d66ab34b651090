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

extension GGUFTokenizerMetadata {
    /// The `tokenizer.ggml.*` entries a GGUF file stores for this metadata (`architecture` and `source` are not
    /// tokenizer keys and are left out).
    public var ggufEntries: [(String, GGUFValue)] {
        let prefix = "tokenizer.ggml."
        func id(_ value: Int) -> GGUFValue { .uint32(UInt32(value)) }
        var entries: [(String, GGUFValue)] = [(prefix + "model", .string(model))]
        if let preTokenizer { entries.append((prefix + "pre", .string(preTokenizer))) }
        entries.append((prefix + "tokens", .array(elementType: .string, elements: tokens.map { .string($0) })))
        if let scores { entries.append((prefix + "scores", .array(elementType: .float32, elements: scores.map { .float32($0) }))) }
        if let tokenTypes {
            entries.append((prefix + "token_type", .array(elementType: .int32, elements: tokenTypes.map { .int32($0) })))
        }
        if let merges { entries.append((prefix + "merges", .array(elementType: .string, elements: merges.map { .string($0) }))) }
        if let bosTokenID { entries.append((prefix + "bos_token_id", id(bosTokenID))) }
        if let eosTokenID { entries.append((prefix + "eos_token_id", id(eosTokenID))) }
        if let unknownTokenID { entries.append((prefix + "unknown_token_id", id(unknownTokenID))) }
        if let addBOS { entries.append((prefix + "add_bos_token", .bool(addBOS))) }
        if let addEOS { entries.append((prefix + "add_eos_token", .bool(addEOS))) }
        if let addSpacePrefix { entries.append((prefix + "add_space_prefix", .bool(addSpacePrefix))) }
        return entries
    }
}
