import Foundation
import LatheTensors
import XCTest
@testable import LatheData

final class SplitTests: DatasetTestCase {
    /// Property: for random files of random keys, a key split puts every row on exactly one side and no key on
    /// both. Prints the seed of a failing case.
    func testKeySplitNeverLeaksOverRandomKeys() throws {
        var generator = SeededGenerator(seed: 99)
        for trial in 0..<40 {
            let seed = generator.next()
            var rows = SeededGenerator(seed: seed)
            let rowCount = Int.random(in: 1...150, using: &rows)
            let keyCount = Int.random(in: 1...40, using: &rows)
            let objects: [[String: JSONValue]] = (0..<rowCount).map { i in
                // Keys of several JSON types, to show the comparison is by value.
                let k = Int.random(in: 0..<keyCount, using: &rows)
                let key: JSONValue = k % 3 == 0 ? .number(Double(k)) : .string("customer-\(k)")
                return ["customer_id": key, "text": .string("row \(i)")]
            }
            let url = try file("keys-\(trial).jsonl", try jsonl(objects))
            let dataset = try DatasetFile.read(url)
            let fraction = Double.random(in: 0.05...0.5, using: &rows)
            let result = try DatasetSplitter.split(dataset, strategy: .byKey(field: "customer_id"), testFraction: fraction,
                                                   seed: seed)
            let message = "trial \(trial), seed \(seed): \(rowCount) rows, \(keyCount) keys, fraction \(fraction)"
            XCTAssertEqual((result.train + result.test).sorted(), Array(0..<rowCount), message)
            let key = { (i: Int) in DatasetJSON.encode(objects[i]["customer_id"] ?? .null) }
            XCTAssertTrue(Set(result.train.map(key)).isDisjoint(with: Set(result.test.map(key))), message)
            XCTAssertEqual(result.leakedKeys, [], message)
        }
    }

    func testRandomSplitIsSeededAndHoldsOutTheFraction() throws {
        let url = try file("F.jsonl", try jsonl((0..<50).map { ["text": .string("row \($0)")] }))
        let dataset = try DatasetFile.read(url)
        let a = try DatasetSplitter.split(dataset, strategy: .random, testFraction: 0.2, seed: 1)
        let b = try DatasetSplitter.split(dataset, strategy: .random, testFraction: 0.2, seed: 1)
        let c = try DatasetSplitter.split(dataset, strategy: .random, testFraction: 0.2, seed: 2)
        XCTAssertEqual(a.test.count, 10)
        XCTAssertEqual(a.test, b.test)
        XCTAssertNotEqual(a.test, c.test)
        XCTAssertEqual(a.duplicatedAcross, 0)
        XCTAssertThrowsError(try DatasetSplitter.split(dataset, strategy: .random, testFraction: 1))
    }

    func testDateSplitAndStratifiedSplit() throws {
        let url = try file("dated.jsonl", """
            {"text": "a", "date": "2023-12-31T23:59:59Z", "label": "x"}
            {"text": "b", "date": "2024-01-01", "label": "x"}
            {"text": "c", "date": "2023-06-01", "label": "y"}
            {"text": "d", "date": "2024-03-05T10:00:00Z", "label": "x"}
            """)
        let dataset = try DatasetFile.read(url)
        let byDate = try DatasetSplitter.split(dataset, strategy: .byDate(field: "date", cutoff: "2024-01-01"))
        XCTAssertEqual(byDate.train, [0, 2])
        XCTAssertEqual(byDate.test, [1, 3])
        XCTAssertEqual(byDate.leakedKeys, [])
        let bad = try file("bad-date.jsonl", "{\"text\": \"a\", \"date\": \"yesterday\"}\n")
        XCTAssertThrowsError(try DatasetSplitter.split(try DatasetFile.read(bad), strategy: .byDate(field: "date", cutoff: "2024-01-01"))) {
            XCTAssertEqual("\($0)", "\(bad.path):1: field \"date\" must be an ISO-8601 date (YYYY-MM-DD...), got \"yesterday\"")
        }
        let missing = try file("no-key.jsonl", "{\"text\": \"a\", \"user\": 1}\n{\"text\": \"b\"}\n")
        XCTAssertThrowsError(try DatasetSplitter.split(try DatasetFile.read(missing), strategy: .byKey(field: "user"))) {
            XCTAssertEqual("\($0)", "\(missing.path):2: missing field \"user\"")
        }

        let labels = (0..<100).map { i -> [String: JSONValue] in ["text": .string("row \(i)"), "label": .string(i < 80 ? "common" : "rare")] }
        let stratified = try DatasetSplitter.split(try DatasetFile.read(try file("labels.jsonl", try jsonl(labels))),
                                                   strategy: .stratified(field: "label"), testFraction: 0.25, seed: 3)
        XCTAssertEqual(stratified.test.filter { $0 < 80 }.count, 20)
        XCTAssertEqual(stratified.test.filter { $0 >= 80 }.count, 5)
    }

    func testDuplicatesAcrossSidesAreReported() throws {
        let url = try file("dups.jsonl", try jsonl((0..<20).map { ["text": .string("same text"), "n": .number(Double($0))] }))
        let result = try DatasetSplitter.split(try DatasetFile.read(url), strategy: .random, testFraction: 0.25, seed: 0)
        XCTAssertEqual(result.duplicatedAcross, 5)
        XCTAssertTrue(result.summary.contains("5 test rows repeat a train row's content"), result.summary)
    }
}
