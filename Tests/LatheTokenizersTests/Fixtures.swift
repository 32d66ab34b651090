import Foundation
import XCTest
import LatheFormats
import LatheTestSupport
@testable import LatheTokenizers

/// Paths and loaders for Tests/Fixtures/tokenizers and the SmolLM2 GGUF file.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizers")

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

    private static let cachedVocabulary: Result<GGUFVocabulary, Error> = Result {
        let gguf = try GGUFFile(url: try DefaultModelFile.url())
        return GGUFVocabulary(tokens: try gguf.requiredStringArray("tokenizer.ggml.tokens"),
                              merges: try gguf.requiredStringArray("tokenizer.ggml.merges"),
                              tokenTypes: try gguf.requiredIntArray("tokenizer.ggml.token_type").map { Int32($0) },
                              bos: try gguf.requiredInt("tokenizer.ggml.bos_token_id"),
                              eos: try gguf.requiredInt("tokenizer.ggml.eos_token_id"),
                              pre: try gguf.requiredString("tokenizer.ggml.pre"))
    }

    /// The SmolLM2 vocabulary; skips the test when the default model is not installed.
    static func smolLM2Vocabulary() throws -> GGUFVocabulary { try cachedVocabulary.get() }

    static func smolLM2Tokenizer(preTokenizer: PreTokenizer? = nil) throws -> Tokenizer {
        let vocabulary = try smolLM2Vocabulary()
        return try Tokenizer(vocabulary: vocabulary.tokens, merges: vocabulary.merges,
                                tokenTypes: vocabulary.tokenTypes,
                                preTokenizer: preTokenizer ?? PreTokenizer(ggufName: vocabulary.pre),
                                bosTokenID: vocabulary.bos, eosTokenID: vocabulary.eos, addBOS: false)
    }
}

/// Compares a tokenizer with Hugging Face on every case; reports the first few mismatches with their text.
func assertMatchesReference(_ tokenizer: Tokenizer, _ reference: Fixtures.Reference, label: String,
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
