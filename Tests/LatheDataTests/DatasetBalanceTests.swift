import Foundation
import XCTest
@testable import LatheData

final class BalanceTests: DatasetTestCase {
    func testCapAndUniformUpSamplingPerCategory() throws {
        let objects = (0..<30).map { i -> [String: JSONValue] in
            ["text": .string("row \(i)"), "topic": .string(i < 20 ? "a" : i < 27 ? "b" : "c")]
        }
        let dataset = try DatasetFile.read(try file("topics.jsonl", try jsonl(objects)))
        let capped = try DatasetBalancer.balance(dataset, by: "topic", options: BalanceOptions(maxPerClass: 5), seed: 4)
        XCTAssertEqual(capped.counts.map(\.category), ["a", "b", "c"])
        XCTAssertEqual(capped.counts.map(\.before), [20, 7, 3])
        XCTAssertEqual(capped.counts.map(\.after), [5, 5, 3])
        XCTAssertEqual(capped.rows, capped.rows.sorted())
        XCTAssertEqual(capped.rows.count, 13)
        XCTAssertEqual(try DatasetBalancer.balance(dataset, by: "topic", options: BalanceOptions(maxPerClass: 5), seed: 4).rows,
                       capped.rows)

        let uniform = try DatasetBalancer.balance(dataset, by: "topic", options: BalanceOptions(maxPerClass: 10, uniform: true))
        XCTAssertEqual(uniform.counts.map(\.after), [10, 10, 10])
        let topic = { (i: Int) in objects[i]["topic"]?.string ?? "" }
        XCTAssertEqual(uniform.rows.filter { topic($0) == "c" }.count, 10)
        XCTAssertEqual(Set(uniform.rows.filter { topic($0) == "c" }), [27, 28, 29])
    }
}
