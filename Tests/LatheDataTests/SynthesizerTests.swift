import Foundation
import XCTest
import LatheTestSupport
import LatheRemote
@testable import LatheData

/// Self-Instruct synthesis: new tasks are answered, empty and near-duplicate ones are dropped and counted.
final class SynthesizerTests: TinyModelTestCase {
    /// Replies from a script, in order, recording what it was asked.
    final class ScriptedCompleter: ChatCompleting {
        var replies: [String]
        var requests: [[ChatCompletionMessage]] = []
        init(_ replies: [String]) { self.replies = replies }
        func complete(_ messages: [ChatCompletionMessage], temperature: Double, maxTokens: Int?, seed: Int?) throws -> String {
            requests.append(messages)
            return replies.isEmpty ? "" : replies.removeFirst()
        }
    }

    func seeds() throws -> [DatasetRow] {
        let url = tiny.file("seeds.jsonl")
        try [#"{"messages": [{"role": "user", "content": "Name a fruit that is red."}, {"role": "assistant", "content": "A strawberry."}]}"#,
             #"{"messages": [{"role": "user", "content": "Name a planet with rings."}, {"role": "assistant", "content": "Saturn."}]}"#]
            .joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return try DatasetReader.read(url)
    }

    func testKeepsNewAnsweredTasksAndCountsTheRest() throws {
        let completer = ScriptedCompleter([
            "Task 3: Name a colour of the sky.", "Blue.",     // kept (label stripped)
            "Name a fruit that is red.",                      // near-duplicate of a seed
            "  ",                                             // empty task
            "Name a colour of the sky!",                      // near-duplicate of the first new task
            "List two metals.", "Iron and copper.",           // kept
        ])
        var options = Synthesizer.Options(count: 2)
        options.seed = 1
        options.nearDuplicate = 0.5  // "…sky!" shares 3 of 5 word trigrams with "…sky."
        let (rows, report) = try Synthesizer(completer: completer, options: options).generate(seeds: try seeds())
        XCTAssertEqual(report.kept, 2)
        XCTAssertEqual(report.duplicates, 2)
        XCTAssertEqual(report.empty, 1)
        XCTAssertEqual(rows.count, 2)
        XCTAssertEqual(rows[0]["messages"]?.array?.first?["content"]?.string, "Name a colour of the sky.")
        XCTAssertEqual(rows[1]["messages"]?.array?.last?["content"]?.string, "Iron and copper.")
        // Every task request shows seed tasks to imitate.
        XCTAssertTrue(completer.requests[0][0].content.contains("Task 1: Name a"))
    }

    func testLocalModelSynthesisWritesRowsThatReadBack() throws {
        var options = Synthesizer.Options(count: 2)
        options.nearDuplicate = 1.01  // the tiny model repeats itself; keep whatever it says
        let completer = LocalChatCompleter(model: lm, maxTokens: 8)
        let (rows, report) = try Synthesizer(completer: completer, options: options).generate(seeds: try seeds())
        XCTAssertEqual(report.attempts, report.kept + report.empty + report.duplicates)
        XCTAssertEqual(rows.count, report.kept)
        let again = try Synthesizer(completer: completer, options: options).generate(seeds: try seeds())
        XCTAssertEqual(again.rows, rows, "same seed, same rows")
    }
}
