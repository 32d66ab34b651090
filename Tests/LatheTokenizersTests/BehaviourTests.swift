import Foundation
import XCTest
@testable import LatheTokenizers

/// Errors on bad input, the streaming decoder, the small API and encoding speed.
final class BehaviourTests: XCTestCase {
    private func tinyJSON() throws -> [String: Any] {
        let data = try Data(contentsOf: Fixtures.directory.appendingPathComponent("tiny/tokenizer.json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    private func build(_ json: [String: Any], config: [String: Any]? = nil) throws -> Tokenizer {
        try Tokenizer(tokenizerJSON: JSONSerialization.data(withJSONObject: json),
                         tokenizerConfigJSON: config.map { try JSONSerialization.data(withJSONObject: $0) })
    }

    private func assertError(_ expected: TokenizerError, _ body: () throws -> Any,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertEqual(error as? TokenizerError, expected, "\(error)", file: file, line: line)
        }
    }

    func testMalformedTokenizerJSONIsReportedWithTheFileName() {
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: Data("{\"model\": [".utf8), tokenizerConfigJSON: nil)) {
            guard case .malformedJSON(let file, _)? = $0 as? TokenizerError else { return XCTFail("\($0)") }
            XCTAssertEqual(file, "tokenizer.json")
        }
        assertError(.malformedJSON(file: "tokenizer.json", detail: "the top level is not an object")) {
            try Tokenizer(tokenizerJSON: Data("[1, 2]".utf8), tokenizerConfigJSON: nil)
        }
        assertError(.missingField(file: "tokenizer.json", field: "model")) { try self.build(["version": "1.0"]) }
    }

    func testFolderLoadingReadsTheConfigAndNamesMissingFiles() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-tokenizer-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        XCTAssertThrowsError(try Tokenizer(huggingFaceFolder: folder)) {
            guard case .unreadableFile(let path, _)? = $0 as? TokenizerError else { return XCTFail("\($0)") }
            XCTAssertTrue(path.hasSuffix("tokenizer.json"), path)
        }
        try FileManager.default.copyItem(at: Fixtures.directory.appendingPathComponent("tiny/tokenizer.json"),
                                         to: folder.appendingPathComponent("tokenizer.json"))
        XCTAssertEqual(try Tokenizer(huggingFaceFolder: folder).encode("the cat").first, 1, "<s> from the template")
        let config = ["add_bos_token": false, "bos_token": "<s>", "eos_token": ["content": "</s>"]] as [String: Any]
        try JSONSerialization.data(withJSONObject: config).write(to: folder.appendingPathComponent("tokenizer_config.json"))
        let tokenizer = try Tokenizer(huggingFaceFolder: folder)
        XCTAssertEqual(tokenizer.eosTokenID, 2)
        XCTAssertNotEqual(tokenizer.encode("the cat").first, 1, "add_bos_token false removes <s>")
    }

    func testWrongFieldsAreNamed() throws {
        var json = try tinyJSON()
        var model = try XCTUnwrap(json["model"] as? [String: Any])
        model["type"] = "WordPiece"
        json["model"] = model
        assertError(.unsupported(file: "tokenizer.json", field: "model.type", value: "WordPiece")) { try self.build(json) }

        json = try tinyJSON()
        json["pre_tokenizer"] = ["type": "Split", "pattern": ["Regex": "\\w+"], "behavior": "Isolated", "invert": false]
        assertError(.unknownSplitPattern(field: "tokenizer.json: pre_tokenizer.pattern.Regex", pattern: "\\w+")) {
            try self.build(json)
        }

        json = try tinyJSON()
        json["decoder"] = ["type": "WordPiece"]
        assertError(.unsupported(file: "tokenizer.json", field: "decoder.type", value: "WordPiece")) {
            try self.build(json)
        }

        json = try tinyJSON()
        var addedTokens = try XCTUnwrap(json["added_tokens"] as? [Any])
        addedTokens.append(["id": 10_000_000_000, "content": "<far>", "special": true])
        json["added_tokens"] = addedTokens
        XCTAssertThrowsError(try build(json), "an id far past the vocabulary leaves a gap") {
            guard case .wrongFieldType(_, let field, _)? = $0 as? TokenizerError else { return XCTFail("\($0)") }
            XCTAssertEqual(field, "model.vocab and added_tokens")
        }

        json = try tinyJSON()
        assertError(.unknownToken(field: "tokenizer_config.json: bos_token", token: "<nope>")) {
            try self.build(json, config: ["bos_token": "<nope>"])
        }
    }

    func testMergeNamingAnUnknownTokenIsRejected() throws {
        var json = try tinyJSON()
        var model = try XCTUnwrap(json["model"] as? [String: Any])
        var merges = try XCTUnwrap(model["merges"] as? [Any])
        merges.insert(["▁zz", "q"], at: 3)
        model["merges"] = merges
        json["model"] = model
        assertError(.unknownTokenInMerge(source: "tokenizer.json: model.merges", index: 3, merge: "▁zz q",
                                         token: "▁zz")) { try self.build(json) }

        assertError(.unknownTokenInMerge(source: "tokenizer.ggml.merges", index: 1, merge: "b x", token: "x")) {
            try Tokenizer(vocabulary: ["a", "b", "ab"], merges: ["a b", "b x"], tokenTypes: nil,
                             preTokenizer: .gpt2, bosTokenID: nil, eosTokenID: nil, addBOS: false)
        }
        assertError(.malformedMerge(source: "tokenizer.ggml.merges", index: 0, merge: "ab")) {
            try Tokenizer(vocabulary: ["a", "b", "ab"], merges: ["ab"], tokenTypes: nil,
                             preTokenizer: .gpt2, bosTokenID: nil, eosTokenID: nil, addBOS: false)
        }
        assertError(.invalidTokenID(field: "GGUF tokenizer.ggml: bos token", id: 7, vocabularySize: 3)) {
            try Tokenizer(vocabulary: ["a", "b", "ab"], merges: ["a b"], tokenTypes: nil,
                             preTokenizer: .gpt2, bosTokenID: 7, eosTokenID: nil, addBOS: true)
        }
        assertError(.lengthMismatch(field: "tokenizer.ggml.token_type", expected: 3, actual: 1)) {
            try Tokenizer(vocabulary: ["a", "b", "ab"], merges: ["a b"], tokenTypes: [1],
                             preTokenizer: .gpt2, bosTokenID: nil, eosTokenID: nil, addBOS: false)
        }
    }

    func testUnknownGGUFPreTokenizerNameIsRejected() throws {
        assertError(.unknownPreTokenizer(name: "klingon")) { try PreTokenizer(ggufName: "klingon") }
        XCTAssertTrue(TokenizerError.unknownPreTokenizer(name: "klingon").description.contains("smollm"),
                      "the message lists the known names")
        XCTAssertEqual(try PreTokenizer(ggufName: "smollm"), .smolLM)
        XCTAssertEqual(try PreTokenizer(ggufName: "llama-bpe"), .llama3)
    }

    func testByteLevelTableIsABijection() {
        XCTAssertEqual(Set(ByteLevel.scalarForByte).count, 256)
        XCTAssertEqual(ByteLevel.scalarForByte[32], "\u{120}", "space is Ġ")
        XCTAssertEqual(ByteLevel.scalarForByte[10], "\u{10A}", "newline is Ċ")
        for byte in 0..<256 { XCTAssertEqual(ByteLevel.byteForScalar[ByteLevel.scalarForByte[byte].value], UInt8(byte)) }
    }

    func testSmallAPIAndSpecialTokens() throws {
        let tokenizer = try Fixtures.smolLM2Tokenizer()
        XCTAssertEqual(tokenizer.id(of: "<|im_start|>"), 1)
        XCTAssertEqual(tokenizer.tokenText(2), "<|im_end|>")
        XCTAssertNil(tokenizer.tokenText(49152))
        XCTAssertTrue(tokenizer.specialTokenIDs.contains(0))
        XCTAssertFalse(tokenizer.specialTokenIDs.contains(100))
        // Special tokens in text are recognised whether or not BOS/EOS are added.
        XCTAssertEqual(tokenizer.encode("<|im_start|>", addSpecialTokens: false), [1])
        XCTAssertEqual(tokenizer.decode([1, 9468, 2], skipSpecialTokens: true), tokenizer.decode([9468]))
        XCTAssertEqual(tokenizer.decode([-1, 1_000_000]), "", "ids outside the vocabulary are skipped")
        let withBOS = try Tokenizer(vocabulary: tokenizer.vocabulary, merges: Fixtures.smolLM2Vocabulary().merges,
                                       tokenTypes: nil, preTokenizer: .smolLM, bosTokenID: 1, eosTokenID: 2,
                                       addBOS: true, addEOS: true)
        XCTAssertEqual(withBOS.encode("hi"), [1] + tokenizer.encode("hi") + [2])
        XCTAssertEqual(withBOS.encode("hi", addSpecialTokens: false), tokenizer.encode("hi"))
    }

    /// Feeding ids one at a time must give exactly the whole decode, and never emit half a character.
    func testStreamingDecoderEmitsCompleteCharactersOnly() throws {
        for (tokenizer, fixture) in [(try Fixtures.smolLM2Tokenizer(), "smollm2.json"),
                                     (try Tokenizer(tokenizerJSON: Data(contentsOf: Fixtures.directory
                                        .appendingPathComponent("tiny/tokenizer.json")), tokenizerConfigJSON: nil),
                                      "tiny.json")] {
            var mismatches: [String] = []
            for item in try Fixtures.reference(fixture).cases {
                var streaming = StreamingDecoder(tokenizer: tokenizer)
                var text = ""
                var sawReplacement = false
                for id in item.ids {
                    let piece = streaming.feed(id)
                    sawReplacement = sawReplacement || piece.unicodeScalars.contains("\u{FFFD}")
                    text += piece
                }
                text += streaming.finish()
                if text != item.decoded { mismatches.append(item.text.prefix(40).debugDescription) }
                if sawReplacement && !item.decoded.unicodeScalars.contains("\u{FFFD}") {
                    mismatches.append("U+FFFD mid-stream in \(item.text.prefix(40).debugDescription)")
                }
            }
            XCTAssertTrue(mismatches.isEmpty, "\(fixture): streamed text differs from decode for \(mismatches)")
        }
        // "€" (E2 82 AC) spelled as three byte tokens: nothing comes out until the third.
        let tokenizer = try Fixtures.smolLM2Tokenizer()
        let euro = try [0xE2, 0x82, 0xAC].map { byte in
            try XCTUnwrap(tokenizer.id(of: String(ByteLevel.scalarForByte[byte])))
        }
        var streaming = StreamingDecoder(tokenizer: tokenizer)
        XCTAssertEqual(euro.map { streaming.feed($0) }, ["", "", "€"])
        XCTAssertEqual(streaming.feed(euro[0]), "")
        XCTAssertEqual(streaming.finish(), "\u{FFFD}", "an unfinished character is flushed as U+FFFD")
    }

    /// Long text of many distinct words (so that the per-word cache does not hide the merges) and long runs of
    /// one character round-trip. Set LATHE_TOKENIZER_BENCH_BYTES to size the text (default 200 kB).
    func testLongTextAndLongRunsRoundTrip() throws {
        let tokenizer = try Fixtures.smolLM2Tokenizer()
        let size = ProcessInfo.processInfo.environment["LATHE_TOKENIZER_BENCH_BYTES"].flatMap { Int($0) } ?? 200_000
        // Seeded words: decoded vocabulary entries joined into sentences, plus the English paragraph.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var text = try XCTUnwrap(Fixtures.reference("smollm2.json").cases.last).text
        while text.utf8.count < size {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let id = 17 + Int(state >> 33) % (tokenizer.vocabularySize - 17)
            text += tokenizer.decode([id])
            if state >> 60 == 0 { text += ".\n" }
        }
        let ids = tokenizer.encode(text)
        XCTAssertEqual(tokenizer.decode(ids), text, "round trip")
        let runs = String(repeating: " ", count: 50_000) + String(repeating: "a", count: 50_000)
        let longRuns = tokenizer.encode(runs)
        XCTAssertGreaterThan(longRuns.count, 100)
        XCTAssertEqual(tokenizer.decode(longRuns), runs, "round trip of long runs")
    }
}
