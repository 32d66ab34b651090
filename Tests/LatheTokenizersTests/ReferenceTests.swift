import Foundation
import XCTest
@testable import LatheTokenizers

/// Token ids must equal Hugging Face `tokenizers` exactly on the corpus (see scripts/reference/tokenizer_ids.py).
final class ReferenceTests: XCTestCase {
    /// The scanners alone, compared word by word with Hugging Face's `pre_tokenize_str` (this catches split
    /// differences that a vocabulary without multi-digit or cross-boundary tokens would hide).
    func testPreTokenizerWordsMatchHuggingFace() throws {
        for (preTokenizer, fixture) in [(PreTokenizer.smolLM, "smollm2.json"), (.gpt2, "gpt2-pre.json"),
                                        (.llama3, "llama3-pre.json"), (.qwen2, "qwen2-pre.json")] {
            let reference = try Fixtures.reference(fixture)
            let expected = try XCTUnwrap(reference.pieces, "\(fixture) has no pieces")
            XCTAssertEqual(expected.count, reference.cases.count)
            var failures: [String] = []
            for (item, want) in zip(reference.cases, expected) {
                let got = preTokenizer.split(Array(item.text.unicodeScalars)).map { String(String.UnicodeScalarView($0)) }
                if got != want { failures.append("\(item.text.prefix(50).debugDescription): got \(got.prefix(12)) want \(want.prefix(12))") }
            }
            XCTAssertTrue(failures.isEmpty, "\(fixture): \(failures.count) texts split differently:\n"
                          + failures.prefix(8).joined(separator: "\n"))
        }
    }

    func testSmolLM2FromGGUFMatchesHuggingFace() throws {
        let tokenizer = try Fixtures.smolLM2Tokenizer()
        XCTAssertEqual(tokenizer.vocabularySize, 49152)
        XCTAssertEqual(tokenizer.bosTokenID, 1)
        XCTAssertEqual(tokenizer.eosTokenID, 2)
        XCTAssertEqual(tokenizer.specialTokenIDs.count, 17)
        assertMatchesReference(tokenizer, try Fixtures.reference("smollm2.json"), label: "smollm (GGUF)")
    }

    func testSpecialTokensAsPlainTextMatchHuggingFace() throws {
        let tokenizer = try Fixtures.smolLM2Tokenizer()
        let cases = try XCTUnwrap(Fixtures.reference("smollm2.json").specialTokensAsText)
        XCTAssertGreaterThan(cases.count, 5)
        for item in cases {
            let ids = tokenizer.encode(item.text, parseSpecialTokens: false)
            XCTAssertEqual(ids, item.ids, item.text.debugDescription)
            XCTAssertFalse(ids.contains { tokenizer.specialTokenIDs.contains($0) }, item.text.debugDescription)
        }
    }

    func testGPT2PreTokenizerMatchesHuggingFace() throws {
        let tokenizer = try Fixtures.smolLM2Tokenizer(preTokenizer: .gpt2)
        assertMatchesReference(tokenizer, try Fixtures.reference("gpt2-pre.json"), label: "gpt2")
    }

    func testLlama3PreTokenizerMatchesHuggingFace() throws {
        let tokenizer = try Fixtures.smolLM2Tokenizer(preTokenizer: PreTokenizer(ggufName: "llama-bpe"))
        XCTAssertTrue(tokenizer.ignoresMerges)
        assertMatchesReference(tokenizer, try Fixtures.reference("llama3-pre.json"), label: "llama3")
    }

    func testQwen2PreTokenizerMatchesHuggingFace() throws {
        let tokenizer = try Fixtures.smolLM2Tokenizer(preTokenizer: PreTokenizer(ggufName: "qwen2"))
        assertMatchesReference(tokenizer, try Fixtures.reference("qwen2-pre.json"), label: "qwen2")
    }

    /// The same vocabulary through the tokenizer.json path, with the pre-tokenizers spelled as in the real
    /// SmolLM2 and Llama 3 tokenizer.json files.
    func testTokenizerJSONWithLargeVocabularyMatchesHuggingFace() throws {
        let vocabulary = try Fixtures.smolLM2Vocabulary()
        let addedTokens: [[String: Any]] = vocabulary.tokenTypes.enumerated().filter { $1 == 3 }.map { id, _ in
            ["id": id, "content": vocabulary.tokens[id], "special": true, "lstrip": false, "rstrip": false,
             "normalized": false, "single_word": false]
        }
        let smolLMPre: [String: Any] = ["type": "Sequence", "pretokenizers": [
            ["type": "Digits", "individual_digits": true],
            ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
        ]]
        let llama3Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let llama3Pre: [String: Any] = ["type": "Sequence", "pretokenizers": [
            ["type": "Split", "pattern": ["Regex": llama3Pattern], "behavior": "Isolated", "invert": false],
            ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false],
        ]]
        for (preTokenizer, ignoreMerges, fixture) in [(smolLMPre, false, "smollm2.json"),
                                                      (llama3Pre, true, "llama3-pre.json")] {
            let json: [String: Any] = [
                "version": "1.0", "added_tokens": addedTokens, "normalizer": NSNull(),
                "pre_tokenizer": preTokenizer,
                "post_processor": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false,
                                   "use_regex": true],
                "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
                "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "fuse_unk": false,
                          "byte_fallback": false, "ignore_merges": ignoreMerges,
                          "vocab": Dictionary(vocabulary.tokens.enumerated().map { ($1, $0) },
                                              uniquingKeysWith: { _, last in last }),
                          "merges": vocabulary.merges.map { $0.split(separator: " ").map(String.init) }],
            ]
            let config: [String: Any] = ["bos_token": "<|im_start|>", "eos_token": "<|im_end|>"]
            let tokenizer = try Tokenizer(tokenizerJSON: JSONSerialization.data(withJSONObject: json),
                                             tokenizerConfigJSON: JSONSerialization.data(withJSONObject: config))
            XCTAssertEqual(tokenizer.bosTokenID, 1)
            XCTAssertEqual(tokenizer.eosTokenID, 2)
            assertMatchesReference(tokenizer, try Fixtures.reference(fixture), label: "tokenizer.json \(fixture)")
        }
    }

    func testTinyByteFallbackTokenizerMatchesHuggingFace() throws {
        let data = try Data(contentsOf: Fixtures.directory.appendingPathComponent("tiny/tokenizer.json"))
        let tokenizer = try Tokenizer(tokenizerJSON: data, tokenizerConfigJSON: nil)
        XCTAssertEqual(tokenizer.prefixIDs, [1], "TemplateProcessing puts <s> first")
        XCTAssertEqual(tokenizer.bosTokenID, 1)
        XCTAssertEqual(tokenizer.unknownTokenID, 0)
        let reference = try Fixtures.reference("tiny.json")
        XCTAssertTrue(reference.cases.contains { $0.ids.contains(3 + 0xF0) }, "the corpus exercises byte fallback")
        assertMatchesReference(tokenizer, reference, label: "tiny")
    }

    /// The tiny model with a Metaspace pre-tokenizer ("first" with the Metaspace decoder; "always" with split).
    func testTinyMetaspaceVariantsMatchHuggingFace() throws {
        for name in ["tiny-metaspace-first", "tiny-metaspace-always-split"] {
            let data = try Data(contentsOf: Fixtures.directory.appendingPathComponent("\(name)/tokenizer.json"))
            let tokenizer = try Tokenizer(tokenizerJSON: data, tokenizerConfigJSON: nil)
            assertMatchesReference(tokenizer, try Fixtures.reference("\(name).json"), label: name)
        }
    }

    /// NFC normalization and `ignore_merges` (a vocabulary word that no merge reaches).
    func testTinyNFCIgnoreMergesVariantMatchesHuggingFace() throws {
        let data = try Data(contentsOf: Fixtures.directory.appendingPathComponent("tiny-nfc-ignore-merges/tokenizer.json"))
        let tokenizer = try Tokenizer(tokenizerJSON: data, tokenizerConfigJSON: nil)
        XCTAssertTrue(tokenizer.ignoresMerges)
        XCTAssertEqual(tokenizer.encode("sat on"), [1, try XCTUnwrap(tokenizer.id(of: "▁sat▁on"))])
        assertMatchesReference(tokenizer, try Fixtures.reference("tiny-nfc-ignore-merges.json"), label: "tiny variant")
    }

    /// Every Split behaviour (with a literal pattern) and contiguous Digits against `pre_tokenize_str`.
    func testSplitBehavioursMatchHuggingFace() throws {
        struct Reference: Decodable {
            let texts: [String]
            let literal: String
            let behaviours: [String: [[String]]]
            let contiguousDigits: [[String]]
        }
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: Fixtures.directory
            .appendingPathComponent("split-behaviours.json")))
        let behaviours: [String: PreTokenizer.SplitBehavior] = [
            "isolated": .isolated, "removed": .removed, "merged_with_previous": .mergedWithPrevious,
            "merged_with_next": .mergedWithNext, "contiguous": .contiguous,
        ]
        XCTAssertEqual(Set(reference.behaviours.keys), Set(behaviours.keys))
        func words(_ preTokenizer: PreTokenizer, _ text: String) -> [String] {
            preTokenizer.split(Array(text.unicodeScalars)).map { String(String.UnicodeScalarView($0)) }
        }
        for (name, expected) in reference.behaviours {
            let preTokenizer = PreTokenizer(steps: [.split(.literal(reference.literal), try XCTUnwrap(behaviours[name]))])
            for (text, want) in zip(reference.texts, expected) {
                XCTAssertEqual(words(preTokenizer, text), want, "\(name) on \(text.debugDescription)")
            }
        }
        for (text, want) in zip(reference.texts, reference.contiguousDigits) {
            XCTAssertEqual(words(PreTokenizer(steps: [.digits(individual: false)]), text), want, text.debugDescription)
        }
    }

    /// llama.cpp's "default" BPE pre-tokenizer has no Hugging Face equivalent and llama.cpp is not installed
    /// here: this expectation is derived by hand from llama.cpp's four regexes applied one after another
    /// (punctuation runs, GPT-2, number runs, three ASCII digits), each cutting the previous fragments.
    func testLlamaCppDefaultPreTokenizerByHand() throws {
        let words = try PreTokenizer(ggufName: "default").split(Array("Hello, world!! 12345".unicodeScalars))
            .map { String(String.UnicodeScalarView($0)) }
        XCTAssertEqual(words, ["Hello", ",", "\u{120}world", "!!", "\u{120}", "123", "45"])
    }
}
