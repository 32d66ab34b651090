import Foundation
import XCTest
// LatheTensors comes with LatheTestSupport: its seeded generator draws the random corpora.
import LatheTensors
@testable import LatheTokenizers

/// Tests/Fixtures/toktrain, written by scripts/reference/toktrain.py and `lathe tokenizer train`.
private enum TrainerFixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/toktrain")

    /// What Hugging Face's BpeTrainer learned from corpus.txt.
    struct HuggingFaceTraining: Decodable {
        let vocab_size: Int
        let min_frequency: Int
        let special_tokens: [String]
        let vocab: [String]
        let merges: [[String]]
    }

    /// Ids Hugging Face gives heldout.txt when it loads the tokenizer.json that Lathe wrote.
    struct HeldOut: Decodable {
        let text: String
        let ids: [Int]
        let corpus_token_count: Int
    }

    static func data(_ name: String) throws -> Data { try Data(contentsOf: directory.appendingPathComponent(name)) }
    static func text(_ name: String) throws -> String { String(decoding: try data(name), as: UTF8.self) }

    /// The options the fixtures were made with (`lathe tokenizer train --vocab-size 1024 --chat-template chatml`).
    static func trainCorpus(_ reference: HuggingFaceTraining) throws -> TrainedBPE {
        var trainer = try BPETrainer(options: .init(vocabularySize: reference.vocab_size,
                                                    minimumFrequency: reference.min_frequency,
                                                    specialTokens: reference.special_tokens))
        trainer.add(document: try text("corpus.txt"))
        return try trainer.train()
    }

    static let chatMLConfig = TokenizerConfigOptions(bosToken: "<|endoftext|>", eosToken: "<|im_end|>",
                                                     unknownToken: "<|endoftext|>",
                                                     chatTemplate: TokenizerConfigOptions.chatMLTemplate)
}

final class BPETrainerReferenceTests: XCTestCase {
    func testMergesAndVocabularyEqualHuggingFaceBpeTrainer() throws {
        let reference = try JSONDecoder().decode(TrainerFixtures.HuggingFaceTraining.self,
                                                 from: try TrainerFixtures.data("hf_trained.json"))
        let trained = try TrainerFixtures.trainCorpus(reference)
        let merges = trained.merges.map { [$0.left, $0.right] }
        let firstMergeDifference = zip(merges, reference.merges).enumerated().first { $1.0 != $1.1 }?.offset
        XCTAssertEqual(merges.count, reference.merges.count, "merge counts differ")
        XCTAssertNil(firstMergeDifference, "merges differ first at index \(firstMergeDifference ?? -1) "
                     + "(exact equality required): ours \(firstMergeDifference.map { merges[$0] } ?? []) "
                     + "HF \(firstMergeDifference.map { reference.merges[$0] } ?? [])")
        let firstTokenDifference = zip(trained.vocabulary, reference.vocab).enumerated().first { $1.0 != $1.1 }?.offset
        XCTAssertEqual(trained.vocabulary.count, reference.vocab.count)
        XCTAssertNil(firstTokenDifference, "vocabularies differ first at id \(firstTokenDifference ?? -1)")
        XCTAssertEqual(trained.vocabulary.count, reference.vocab_size, "the corpus should fill the vocabulary")
        // The chosen pair is the most frequent at its step, so the counts never rise.
        for (step, (earlier, later)) in zip(trained.merges, trained.merges.dropFirst()).enumerated() {
            XCTAssertGreaterThanOrEqual(earlier.count, later.count, "merge \(step + 1) is more frequent than merge \(step)")
        }
        XCTAssertGreaterThanOrEqual(trained.merges.last?.count ?? 0, reference.min_frequency)
    }

    func testHuggingFaceEncodesHeldOutTextWithOurFileAsWeDo() throws {
        let heldOut = try JSONDecoder().decode(TrainerFixtures.HeldOut.self,
                                               from: try TrainerFixtures.data("heldout_ids.json"))
        let tokenizer = try Tokenizer(huggingFaceFolder: TrainerFixtures.directory.appendingPathComponent("lathe"))
        let ids = tokenizer.encode(heldOut.text)
        let first = zip(ids, heldOut.ids).enumerated().first { $1.0 != $1.1 }?.offset
        XCTAssertEqual(ids.count, heldOut.ids.count)
        XCTAssertNil(first, "ids differ first at index \(first ?? -1) of \(heldOut.ids.count) (exact match required)")
        XCTAssertEqual(tokenizer.decode(ids), heldOut.text)
        XCTAssertEqual(tokenizer.encode(try TrainerFixtures.text("corpus.txt")).count, heldOut.corpus_token_count)
        XCTAssertEqual(tokenizer.eosTokenID, 2)
        XCTAssertEqual(tokenizer.bosTokenID, 0)
    }

    func testRetrainingReproducesTheCommittedFilesByteForByte() throws {
        let reference = try JSONDecoder().decode(TrainerFixtures.HuggingFaceTraining.self,
                                                 from: try TrainerFixtures.data("hf_trained.json"))
        let trained = try TrainerFixtures.trainCorpus(reference)
        XCTAssertEqual(try trained.tokenizerJSON(), try TrainerFixtures.data("lathe/tokenizer.json"),
                       "tokenizer.json differs from the committed one")
        XCTAssertEqual(try trained.tokenizerConfigJSON(TrainerFixtures.chatMLConfig),
                       try TrainerFixtures.data("lathe/tokenizer_config.json"),
                       "tokenizer_config.json differs from the committed one")
    }
}

final class BPETrainerBehaviourTests: XCTestCase {
    /// A small corpus with prose, code, digits, repeated words and multi-byte text.
    let corpus = [
        "the theory of the thing: the three thin thieves thought they'd thrive.\n",
        "func add(_ a: Int, _ b: Int) -> Int { return a + b }  // 2024-11-22\n",
        "Prices: $12.50, $120.05 and €7 — naïve café, 東京タワー 🙂🙂.\n\n\tindented   spaces",
        "the end. the end. the end.",
    ]

    func train(vocabularySize: Int, minimumFrequency: Int = 2, documents: [String]? = nil) throws -> TrainedBPE {
        var trainer = try BPETrainer(options: .init(vocabularySize: vocabularySize, minimumFrequency: minimumFrequency))
        for document in documents ?? corpus { trainer.add(document: document) }
        return try trainer.train()
    }

    func testRoundTripsTheCorpusAndGivesSpecialTokensTheFirstIDs() throws {
        let trained = try train(vocabularySize: 400, minimumFrequency: 1)
        let tokenizer = try trained.tokenizer()
        for text in corpus {
            let ids = tokenizer.encode(text)
            XCTAssertEqual(tokenizer.decode(ids), text)
            XCTAssertLessThan(ids.count, Array(text.utf8).count, "merges should shorten \(text.prefix(20))")
        }
        XCTAssertEqual(Array(trained.vocabulary.prefix(3)), ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        XCTAssertEqual(tokenizer.encode("<|im_start|>user<|im_end|><|endoftext|>"),
                       [1] + tokenizer.encode("user") + [2, 0])
        XCTAssertEqual(tokenizer.specialTokenIDs, [0, 1, 2])
        XCTAssertEqual(tokenizer.vocabularySize, trained.vocabulary.count)
    }

    func testStopsAtTheVocabularySizeOrTheMinimumFrequency() throws {
        let capped = try train(vocabularySize: 270, minimumFrequency: 1)
        XCTAssertEqual(capped.vocabulary.count, 270)
        XCTAssertEqual(capped.merges.count, 270 - 259)
        let noRepeats = try train(vocabularySize: 5000, minimumFrequency: 1_000)
        XCTAssertEqual(noRepeats.vocabulary.count, 259)
        XCTAssertTrue(noRepeats.merges.isEmpty)
        let frequent = try train(vocabularySize: 5000, minimumFrequency: 3)
        XCTAssertFalse(frequent.merges.isEmpty)
        XCTAssertTrue(frequent.merges.allSatisfy { $0.count >= 3 }, "\(frequent.merges.map(\.count))")
    }

    /// The incremental trainer against a plain one that recounts every pair at every step, on corpora drawn
    /// from a seed: both must choose the same merges (highest count, then smallest pair of ids).
    func testIncrementalCountsAgreeWithRecountingEveryStep() throws {
        for seed in 1...5 {
            var generator = SeededGenerator(seed: UInt64(seed))
            let letters = Array("abcde ".unicodeScalars)
            let documents = (0..<20).map { _ in
                String(String.UnicodeScalarView((0..<60).map { _ in letters[Int(generator.next() % 6)] }))
            }
            let trained = try train(vocabularySize: 330, minimumFrequency: 2, documents: documents)
            let expected = plainTraining(documents, vocabularySize: 330, minimumFrequency: 2)
            let ours = trained.merges.map { "\($0.left) \($0.right) \($0.count)" }
            let first = zip(ours, expected).enumerated().first { $1.0 != $1.1 }?.offset
            XCTAssertEqual(ours.count, expected.count, "seed \(seed)")
            XCTAssertNil(first, "seed \(seed): merges differ first at \(first ?? -1): \(ours.prefix((first ?? 0) + 1).suffix(2)) vs "
                         + "\(expected.prefix((first ?? 0) + 1).suffix(2))")
        }
    }

    func testBadInputIsRejectedWithAClearError() throws {
        var empty = try BPETrainer(options: .init(vocabularySize: 300))
        empty.add(document: "")
        XCTAssertThrowsError(try empty.train()) { error in
            XCTAssertEqual(error as? BPETrainerError, .emptyCorpus(documents: 1))
            XCTAssertTrue("\(error)".contains("no words"), "\(error)")
        }
        XCTAssertThrowsError(try BPETrainer(options: .init(vocabularySize: 258))) { error in
            XCTAssertEqual(error as? BPETrainerError, .vocabularyTooSmall(requested: 258, minimum: 259, specialTokens: 3))
            XCTAssertTrue("\(error)".contains("at least 259"), "\(error)")
        }
        XCTAssertThrowsError(try BPETrainer(options: .init(vocabularySize: 300, specialTokens: ["<a>", "<a>"]))) { error in
            XCTAssertEqual(error as? BPETrainerError, .duplicateSpecialToken("<a>"))
        }
        let metaspace = PreTokenizer(steps: [.metaspace(replacement: "▁", prepend: .always, split: true)])
        XCTAssertThrowsError(try BPETrainer(options: .init(vocabularySize: 300, preTokenizer: metaspace))) { error in
            XCTAssertEqual(error as? BPETrainerError, .preTokenizerNotByteLevel)
        }
        let trained = try train(vocabularySize: 300)
        XCTAssertThrowsError(try trained.tokenizerConfigJSON(TokenizerConfigOptions(eosToken: "</s>"))) { error in
            XCTAssertTrue("\(error)".contains("eos_token"), "\(error)")
        }
    }

    func testSavesBothFilesAndLoadsThemBack() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-toktrain-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        var options = BPETrainer.Options(vocabularySize: 320, minimumFrequency: 1, specialTokens: ["<s>", "</s>"],
                                         preTokenizer: .gpt2)
        options.minimumFrequency = 1
        var trainer = try BPETrainer(options: options)
        for document in corpus { trainer.add(document: document) }
        let trained = try trainer.train()
        try trained.save(to: folder, config: TokenizerConfigOptions(bosToken: "<s>", eosToken: "</s>"))
        let loaded = try Tokenizer(huggingFaceFolder: folder)
        XCTAssertEqual(loaded.vocabulary, trained.vocabulary)
        XCTAssertEqual(loaded.preTokenizer, .gpt2)
        XCTAssertEqual(loaded.bosTokenID, 0)
        XCTAssertEqual(loaded.eosTokenID, 1)
        // gpt2 keeps digit runs together, so "2024" is one word and can become one token.
        XCTAssertEqual(loaded.decode(loaded.encode(corpus[1])), corpus[1])
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("tokenizer_config.json")))
        XCTAssertEqual((config as? [String: Any])?["eos_token"] as? String, "</s>")
        XCTAssertNil((config as? [String: Any])?["chat_template"])
    }
}

/// Byte-level BPE training in the plainest form: recount every pair of every word at each step. Returns
/// "left right count" per merge. It differs from Hugging Face's only when a merge re-forms an existing token,
/// which these small corpora are checked not to do.
private func plainTraining(_ documents: [String], vocabularySize: Int, minimumFrequency: Int) -> [String] {
    var vocabulary = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocabulary += ByteLevel.scalarForByte.map(\.value).sorted().compactMap { Unicode.Scalar($0).map { String($0) } }
    var idFor = Dictionary(uniqueKeysWithValues: vocabulary.enumerated().map { ($1, $0) })
    var wordCounts: [[Int]: Int] = [:]
    for document in documents {
        for word in PreTokenizer.smolLM.split(Array(document.unicodeScalars)) {
            wordCounts[word.compactMap { idFor[String($0)] }, default: 0] += 1
        }
    }
    var words = Array(wordCounts.keys)
    let counts = words.map { wordCounts[$0] ?? 0 }
    var merges: [String] = []
    while vocabulary.count < vocabularySize {
        var pairCounts: [[Int]: Int] = [:]
        for (word, count) in zip(words, counts) where word.count > 1 {
            for index in 0..<(word.count - 1) { pairCounts[[word[index], word[index + 1]], default: 0] += count }
        }
        guard let best = pairCounts.min(by: { $0.value != $1.value ? $0.value > $1.value
                                                : $0.key.lexicographicallyPrecedes($1.key) }),
              best.value >= max(minimumFrequency, 1) else { break }
        let token = vocabulary[best.key[0]] + vocabulary[best.key[1]]
        guard idFor[token] == nil else { XCTFail("merge re-forms \(token); pick another corpus"); break }
        idFor[token] = vocabulary.count
        vocabulary.append(token)
        merges.append("\(vocabulary[best.key[0]]) \(vocabulary[best.key[1]]) \(best.value)")
        for wordIndex in words.indices {
            var word = words[wordIndex]
            var index = 0
            while index + 1 < word.count {
                if word[index] == best.key[0] && word[index + 1] == best.key[1] {
                    word[index] = vocabulary.count - 1
                    word.remove(at: index + 1)
                }
                index += 1
            }
            words[wordIndex] = word
        }
    }
    return merges
}
