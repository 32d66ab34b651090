import Foundation
import XCTest
@testable import LatheFormats

/// Paths and decoders for the fixtures written by scripts/reference/formats.py.
enum Fixtures {
    static let folder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("formats")

    static func url(_ name: String) -> URL { folder.appendingPathComponent(name) }

    static func decode<T: Decodable>(_ type: T.Type, from name: String) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(contentsOf: url(name)))
    }

    static func floats(fromBits bits: [UInt32]) -> [Float] { bits.map(Float.init(bitPattern:)) }

    static func bytes(fromHex hex: String) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(hex.count / 2)
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            result.append(UInt8(hex[index..<next], radix: 16) ?? 0)
            index = next
        }
        return result
    }

    /// A fresh empty folder under the temporary directory, removed by the test case's teardown.
    static func temporaryFolder(for testCase: XCTestCase) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-formats-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        testCase.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}

/// Bit-for-bit comparison of Float arrays (tolerance 0; NaNs compare by bit pattern). On failure, reports the
/// first mismatch and the largest absolute difference.
func assertBitIdentical(_ actual: [Float], _ expected: [Float], _ context: String, file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        XCTFail("\(context): \(actual.count) values, expected \(expected.count)", file: file, line: line)
        return
    }
    var mismatches = 0
    var firstMismatch: Int?
    var largest: Float = 0
    for i in 0..<actual.count where actual[i].bitPattern != expected[i].bitPattern {
        mismatches += 1
        if firstMismatch == nil { firstMismatch = i }
        largest = max(largest, abs(actual[i] - expected[i]))
    }
    if let first = firstMismatch {
        XCTFail("\(context): \(mismatches) of \(actual.count) values differ (tolerance 0); first at \(first): \(actual[first]) vs \(expected[first]); largest difference \(largest)",
                file: file, line: line)
    }
}

/// Asserts that `body` throws a FormatError whose message mentions every one of `fragments`.
func assertFormatError(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected a FormatError mentioning \(fragments)", file: file, line: line)
    } catch let error as FormatError {
        for fragment in fragments where !error.description.contains(fragment) {
            XCTFail("error \"\(error)\" does not mention \"\(fragment)\"", file: file, line: line)
        }
    } catch {
        XCTFail("expected a FormatError, got \(error)", file: file, line: line)
    }
}
