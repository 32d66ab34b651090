import Foundation
import LatheTensors
import XCTest
@testable import LatheData

final class DedupTests: DatasetTestCase {
    func testExactDuplicatesAfterNormalisingCaseAndSpaceIgnoringIDs() throws {
        let url = try file("F.jsonl", """
            {"id": "a", "prompt": "What is 2+2?", "completion": "Four."}
            {"id": "b", "prompt": "what  is 2+2?", "completion": "four.\\n"}
            {"id": "c", "prompt": "What is 3+3?", "completion": "Six."}
            {"id": "a", "prompt": "What is 5+5?", "completion": "Ten."}
            """)
        let result = try Deduplicator.deduplicate(try DatasetFile.read(url))
        XCTAssertEqual(result.kept, [0, 2, 3])  // the same id with different content is not a duplicate
        XCTAssertEqual(result.dropped, [1])
        XCTAssertEqual(result.exactDuplicates, 1)
        XCTAssertEqual(result.clusters, [DuplicateCluster(representative: RowReference(file: url.path, line: 1),
                                                          members: [.init(line: 2, similarity: 1, exact: true)])])
        // --fields: comparing only the prompt makes rows 1 and 2 duplicates whatever their answers.
        let byPrompt = try file("G.jsonl", """
            {"prompt": "Same question", "completion": "one answer"}
            {"prompt": "same question", "completion": "another answer"}
            """)
        XCTAssertEqual(try Deduplicator.deduplicate(try DatasetFile.read(byPrompt), options: DedupOptions(fields: ["prompt"])).kept, [0])
        XCTAssertEqual(try Deduplicator.deduplicate(try DatasetFile.read(byPrompt)).kept, [0, 1])
    }

    func testNearDuplicatesAndDecontaminationAgainstATestFile() throws {
        let base = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat by the door"
        let edited = base.replacingOccurrences(of: "warm", with: "soft")  // 3 of 18 shingles change
        let train = try file("train.jsonl", try jsonl([
            ["text": .string(base), "source": .string("a")],
            ["text": .string(edited), "source": .string("b")],
            ["text": .string("an entirely different sentence about the weather in spring and rain")],
            ["text": .string("questions from the test set leak into training data more often than one thinks")],
        ]))
        let test = try file("test.jsonl", try jsonl([
            ["text": .string("questions from the test set leak into training data more often than we think")],
        ]))
        let similarity = WordShingles.jaccard(WordShingles.hashes(base), WordShingles.hashes(edited))
        XCTAssertEqual(similarity, 15.0 / 21.0, accuracy: 1e-12)
        let near = try Deduplicator.deduplicate(try DatasetFile.read(train), against: [try DatasetFile.read(test)],
                                                options: DedupOptions(nearThreshold: 0.7))
        XCTAssertEqual(near.kept, [0, 2])
        XCTAssertEqual(near.nearDuplicates, 1)
        XCTAssertEqual(near.againstDuplicates, 1)
        XCTAssertEqual(near.clusters.map(\.representative.description), ["\(train.path):1", "\(test.path):1"])
        XCTAssertEqual(near.clusters[0].members[0].similarity, similarity, accuracy: 1e-12)
        // Above the pair's similarity, both rows stay.
        let strict = try Deduplicator.deduplicate(try DatasetFile.read(train), options: DedupOptions(nearThreshold: 0.8))
        XCTAssertEqual(strict.kept, [0, 1, 2, 3])
    }

    func testNormalisationOfASCIIAndOtherTextAgrees() {
        XCTAssertEqual(TextNormalizer.normalize("  Hello\t\n WORLD \r\n"), "hello world")
        XCTAssertEqual(TextNormalizer.normalize("\u{00A0}Ünï  CODE\u{2003}x É"), "ünï code x é")
        XCTAssertEqual(TextNormalizer.normalize(" \t "), "")
        XCTAssertEqual(WordShingles.hashes("A b  C d"), WordShingles.hashes("a B c\nD"))
        XCTAssertEqual(WordShingles.hashes("a b c d").count, 2)
        XCTAssertEqual(WordShingles.hashes("a b").count, 1)
        XCTAssertEqual(WordShingles.hashes(" "), [])
    }

    func testBandsAndRowsKeepPairsAtTheThresholdAsCandidates() {
        let lsh = LSHParameters.forThreshold(0.8, permutations: 128)
        XCTAssertEqual(lsh, LSHParameters(bands: 21, rows: 6))
        XCTAssertGreaterThanOrEqual(lsh.candidateProbability(0.8), 0.99)
        XCTAssertLessThan(lsh.candidateProbability(0.3), 0.02)
    }

    /// A generated set with known near-duplicates: every row whose true shingle Jaccard similarity with an earlier
    /// kept row is ≥ 0.8 must be dropped (recall ≥ 0.95), and every dropped row must be such a row (precision 1,
    /// since candidates are verified exactly).
    func testNearDuplicateRecallAndPrecisionOnAGeneratedSet() throws {
        let seed: UInt64 = 2026
        var generator = SeededGenerator(seed: seed)
        let vocabulary = (0..<3000).map { "w\($0)" }
        func document() -> [String] { (0..<60).map { _ in vocabulary[Int.random(in: 0..<vocabulary.count, using: &generator)] } }
        var texts: [String] = []
        var sources: [Int?] = []
        for _ in 0..<250 {
            let words = document()
            texts.append(words.joined(separator: " "))
            sources.append(nil)
            // A variant with 1 to 5 words replaced: similarities from about 0.93 down to 0.6.
            var variant = words
            for _ in 0..<Int.random(in: 1...5, using: &generator) {
                variant[Int.random(in: 0..<variant.count, using: &generator)] = vocabulary[Int.random(in: 0..<vocabulary.count, using: &generator)]
            }
            texts.append(variant.joined(separator: " "))
            sources.append(texts.count - 2)
        }
        let url = try file("generated.jsonl", try jsonl(texts.map { ["text": .string($0)] }))
        let result = try Deduplicator.deduplicate(try DatasetFile.read(url), options: DedupOptions(nearThreshold: 0.8, seed: 7))
        let shingles = texts.map { WordShingles.hashes($0) }
        let expected = Set(texts.indices.filter { i in
            sources[i].map { WordShingles.jaccard(shingles[i], shingles[$0]) >= 0.8 } ?? false
        })
        let dropped = Set(result.dropped)
        let recall = Double(dropped.intersection(expected).count) / Double(expected.count)
        let precision = Double(dropped.intersection(expected).count) / Double(max(1, dropped.count))
        print("near-duplicate recall \(recall), precision \(precision) (\(expected.count) known duplicates, seed \(seed))")
        XCTAssertGreaterThan(expected.count, 60, "the generated set should hold many duplicates at Jaccard >= 0.8")
        XCTAssertLessThan(expected.count, 240, "and some variants below 0.8")
        let nearThreshold = expected.filter { i in sources[i].map { WordShingles.jaccard(shingles[i], shingles[$0]) < 0.86 } ?? false }
        XCTAssertGreaterThan(nearThreshold.count, 20, "many known duplicates should sit just above the threshold, where LSH can miss")
        XCTAssertGreaterThanOrEqual(recall, 0.95, "seed \(seed)")
        XCTAssertEqual(precision, 1, "seed \(seed)")
    }

    /// The rows kept at several thresholds equal those of an all-pairs brute force in Python
    /// (scripts/reference/data.py), which MinHash + LSH only approximates in cost, not in result.
    func testKeptRowsMatchABruteForceReference() throws {
        let fixture = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fixtures/data/near_duplicates.json")))
        let texts = try XCTUnwrap(fixture["texts"]?.array)
        let dataset = try DatasetFile.read(try file("reference.jsonl", try jsonl(texts.map { ["text": $0] })))
        for reference in try XCTUnwrap(fixture["cases"]?.array) {
            let threshold = try XCTUnwrap(reference["threshold"]?.double)
            let expected = try XCTUnwrap(reference["kept"]?.array).compactMap(\.int)
            let result = try Deduplicator.deduplicate(dataset, options: DedupOptions(nearThreshold: threshold))
            XCTAssertEqual(result.kept, expected, "threshold \(threshold): rows kept differ from the brute force")
        }
    }
}
