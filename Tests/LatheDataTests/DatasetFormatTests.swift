import Foundation
import XCTest
@testable import LatheData

/// A scratch folder per test, removed afterwards.
class DatasetTestCase: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    /// Writes `text` to a file in the scratch folder and returns its URL.
    func file(_ name: String, _ text: String) throws -> URL {
        let url = folder.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url
    }

    /// Writes one line per string.
    func file(_ name: String, lines: [String]) throws -> URL { try file(name, lines.joined(separator: "\n")) }

    /// One JSON Lines line per object, keys sorted.
    func jsonl(_ objects: [[String: JSONValue]]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try objects.map { String(decoding: try encoder.encode(JSONValue.object($0)), as: UTF8.self) }
            .joined(separator: "\n") + "\n"
    }
}

final class DatasetFormatTests: DatasetTestCase {
    func testEveryFormatIsDetectedAndDecoded() throws {
        let url = try file("all.jsonl", """
            {"text": "plain"}
            {"prompt": "p", "completion": "c"}
            {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}
            {"instruction": "do", "input": "this", "output": "done", "system": "be brief"}
            {"instruction": "do", "input": "", "output": "done"}
            {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "h"}, {"from": "gpt", "value": "g"}]}
            {"prompt": "p", "chosen": "good", "rejected": "bad"}
            {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}], "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]}
            {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}], "rejected": [{"role": "assistant", "content": "bad"}]}
            {"chosen": "good", "rejected": "bad"}
            {"prompt": "p", "completion": "c", "label": false}
            """)
        let lines = try JSONLines.read(url)
        // The implicit prompt is the messages both answers begin with (TRL's extract_prompt).
        let conversationalPair = PreferenceRecord(prompt: .messages([.init(role: "user", content: "q")]),
                                                  chosen: .messages([.init(role: "assistant", content: "good")]),
                                                  rejected: .messages([.init(role: "assistant", content: "bad")]))
        let expected: [(DatasetFormat, DatasetRecord)] = [
            (.text, .text("plain")),
            (.promptCompletion, .promptCompletion(prompt: "p", completion: "c")),
            (.messages, .messages([.init(role: "system", content: "s"), .init(role: "user", content: "u"),
                                   .init(role: "assistant", content: "a")])),
            (.alpaca, .messages([.init(role: "system", content: "be brief"), .init(role: "user", content: "do\n\nthis"),
                                 .init(role: "assistant", content: "done")])),
            (.alpaca, .messages([.init(role: "user", content: "do"), .init(role: "assistant", content: "done")])),
            (.sharegpt, .messages([.init(role: "system", content: "s"), .init(role: "user", content: "h"),
                                   .init(role: "assistant", content: "g")])),
            (.preference, .preference(PreferenceRecord(prompt: .text("p"), chosen: .text("good"), rejected: .text("bad")))),
            (.preference, .preference(conversationalPair)),
            (.preference, .preference(conversationalPair)),
            (.preference, .preference(PreferenceRecord(prompt: .text(""), chosen: .text("good"), rejected: .text("bad")))),
            (.kto, .kto(KTORecord(prompt: .text("p"), completion: .text("c"), label: false))),
        ]
        XCTAssertEqual(lines.count, expected.count)
        for (line, (format, record)) in zip(lines, expected) {
            XCTAssertEqual(DatasetReader.detect(try XCTUnwrap(line.value.object)), format, "line \(line.line)")
            XCTAssertEqual(try DatasetReader.decode(line, as: format), record, "line \(line.line)")
        }
        XCTAssertNil(DatasetReader.detect(["id": .number(1), "body": .string("x")]))
    }

    func testReadThrowsTheFirstProblemWithLineAndField() throws {
        let url = try file("bad.jsonl", """
            {"prompt": "p", "completion": "c"}

            {"prompt": "p", "completion": 3}
            {"prompt": "p"}
            """)
        XCTAssertThrowsError(try DatasetReader.read(url)) { error in
            XCTAssertEqual("\(error)", "\(url.path):3: field \"completion\" must be a string, got 3")
        }
        let mixed = try file("mixed.jsonl", "{\"text\": \"a\"}\n{\"prompt\": \"p\", \"completion\": \"c\"}\n")
        XCTAssertThrowsError(try DatasetReader.read(mixed)) { error in
            XCTAssertEqual("\(error)", "\(mixed.path):2: mixed formats: this row is prompt_completion, the file's first row is text")
        }
        XCTAssertThrowsError(try DatasetReader.read(mixed, format: .text)) { error in
            XCTAssertEqual("\(error)", "\(mixed.path):2: missing field \"text\"")
        }
    }

    func testCSVWithAHeaderReadsQuotedCellsAndKeepsLineNumbers() throws {
        let url = try file("data.csv", "prompt,completion,label\n\"a, b\",\"two\nlines\",true\nq,\"say \"\"hi\"\"\",false\n")
        let rows = try DatasetReader.read(url)
        XCTAssertEqual(rows.map(\.record), [.kto(KTORecord(prompt: .text("a, b"), completion: .text("two\nlines"), label: true)),
                                            .kto(KTORecord(prompt: .text("q"), completion: .text("say \"hi\""), label: false))])
        XCTAssertEqual(rows.map(\.line.line), [2, 4])
        let ragged = try file("ragged.csv", "text,id\nhello,1\nbye\n")
        XCTAssertThrowsError(try DatasetReader.read(ragged)) { error in
            XCTAssertEqual("\(error)", "\(ragged.path):3: the record has 1 cells, the header has 2")
        }
    }
}
