import Foundation
import XCTest
@testable import LatheData

final class DatasetCheckTests: DatasetTestCase {
    /// Every kind of bad line, each reported with its line and field, and good lines reported nothing.
    func testEveryKindOfBadLineIsReportedWithItsLineAndField() throws {
        let url = try file("F.jsonl", """
            {"id": 1, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
            {"id": 1, "messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}]}
            {"messages": [{"role": "user", "content": "hi"}]}
            {"messages": [{"role": "user", "content": "hi"

            {"text": "a plain row"}
            {"messages": "nope"}
            {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": 3}]}
            [1, 2]
            {"source": "web"}
            {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a"}]}
            {"messages": []}
            {"messages": [{"content": "q"}, "text"]}
            {"id": 2, "messages": [{"role": "user", "content": "fine"}, {"role": "assistant", "content": "fine too"}]}
            """)
        let report = try DatasetChecker.check(url)
        XCTAssertEqual(report.format, .messages)
        let f = url.path
        XCTAssertEqual(report.problems.map(\.description), [
            "\(f):2: field \"id\": duplicate id 1 (first on line 1)",
            "\(f):2: field \"messages[1].role\": unknown role \"bot\" (expected system, user, assistant or tool)",
            "\(f):3: field \"messages\": the conversation ends with user, not the assistant (nothing to learn from)",
            "\(f):4: invalid JSON (The given data was not valid JSON.)",
            "\(f):6: mixed formats: this row is text, most rows are messages",
            "\(f):7: field \"messages\" must be an array of messages, got \"nope\"",
            "\(f):8: field \"messages[0].content\" is empty",
            "\(f):8: field \"messages[1].content\" must be a string, got 3",
            "\(f):9: expected a JSON object, got an array",
            "\(f):10: missing field \"messages\"",
            "\(f):11: warning: field \"messages[2].role\": two user turns in a row",
            "\(f):12: field \"messages\" is empty",
            "\(f):13: missing field \"messages[0].role\"",
            "\(f):13: field \"messages[1]\" must be an object with \"role\" and \"content\", got \"text\"",
        ])
        XCTAssertEqual(report.problems.map(\.field)[0...2], ["id", "messages[1].role", "messages[0]"])
        XCTAssertEqual(report.errorCount, 13)
        XCTAssertEqual(report.warningCount, 1)
    }

    func testEachFormatsOwnProblems() throws {
        let url = try file("mixed.jsonl", """
            {"prompt": "p", "completion": ""}
            {"prompt": "same", "completion": "Same "}
            {"prompt": 1, "completion": "c"}
            """)
        XCTAssertEqual(try DatasetChecker.check(url).problems.map(\.message), [
            "field \"completion\" is empty",
            "field \"completion\" repeats the prompt",
            "field \"prompt\" must be a string, got 1",
        ])
        let alpaca = try file("alpaca.jsonl", """
            {"instruction": "do", "output": "done", "input": 5}
            {"instruction": "", "output": "done"}
            """)
        XCTAssertEqual(try DatasetChecker.check(alpaca).problems.map(\.message), [
            "field \"input\" must be a string, got 5", "field \"instruction\" is empty"])
        let sharegpt = try file("sharegpt.jsonl", """
            {"conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}]}
            {"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}
            """)
        XCTAssertEqual(try DatasetChecker.check(sharegpt).problems.map(\.message), [
            "field \"conversations[1].from\": unknown speaker \"robot\" (expected human, gpt or system)",
            "field \"conversations\": the conversation ends with user, not the assistant (nothing to learn from)"])
        let preference = try file("preference.jsonl", """
            {"prompt": "p", "chosen": "x", "rejected": "x"}
            {"prompt": "p", "chosen": "x"}
            {"chosen": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a"}], "rejected": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "b"}]}
            {"prompt": "p", "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "rejected": "b"}
            {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}], "rejected": "b"}
            {"prompt": [{"role": "system", "content": "s"}], "chosen": "a", "rejected": "b"}
            {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}
            {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "more"}]}
            """)
        // Line 2 has no "rejected": detected as nothing, read as the file's format (preference).
        XCTAssertEqual(try DatasetChecker.check(preference).problems.map(\.description), [
            "\(preference.path):1: warning: fields \"chosen\" and \"rejected\" are the same text",
            "\(preference.path):2: missing field \"rejected\"",
            "\(preference.path):3: field \"chosen[0].role\": an answer holds only assistant messages, got user "
                + "(without \"prompt\", the prompt is the messages \"chosen\" and \"rejected\" begin with alike)",
            "\(preference.path):4: field \"rejected\" is a string while \"chosen\" is a list of messages: give every field "
                + "as a string or every field as a list of messages",
            "\(preference.path):5: warning: field \"chosen[2].role\": two assistant turns in a row",
            "\(preference.path):5: field \"rejected\" is a string while \"chosen\" is a list of messages: give every field "
                + "as a string or every field as a list of messages",
            "\(preference.path):6: field \"prompt\" is a list of messages while \"chosen\" is a string: give every field "
                + "as a string or every field as a list of messages",
            "\(preference.path):7: field \"chosen[0].role\": an answer holds only assistant messages, got user",
            "\(preference.path):8: field \"rejected[2].role\": an answer holds only assistant messages, got user "
                + "(without \"prompt\", the prompt is the messages \"chosen\" and \"rejected\" begin with alike)"])
        let kto = try file("kto.jsonl", """
            {"prompt": "p", "completion": "c", "label": "yes"}
            {"prompt": "p", "completion": "c", "label": true}
            """)
        XCTAssertEqual(try DatasetChecker.check(kto).format, .promptCompletion)  // a category label, not KTO's
        XCTAssertEqual(try DatasetChecker.check(kto, format: .kto).problems.map(\.message), [
            "field \"label\" must be true or false, got \"yes\""])
    }

    func testAFileOfNoKnownFormatAndAnExplicitFormat() throws {
        let url = try file("odd.jsonl", "{\"question\": \"q\", \"answer\": \"a\"}\n")
        let report = try DatasetChecker.check(url)
        XCTAssertNil(report.format)
        XCTAssertEqual(report.problems.count, 1)
        XCTAssertTrue(report.problems[0].message.hasPrefix("no known dataset format fits the fields {\"answer\", \"question\"}"),
                      report.problems[0].message)
        let partial = try file("partial.jsonl", "{\"instruction\": \"do\", \"id\": 1}\n")
        XCTAssertEqual(try DatasetChecker.check(partial).problems.map(\.message), ["missing field \"output\""])
        let text = try file("text.jsonl", "{\"text\": \"a\"}\n{\"prompt\": \"p\", \"completion\": \"c\"}\n")
        XCTAssertEqual(try DatasetChecker.check(text, format: .promptCompletion).problems.map(\.description), [
            "\(text.path):1: missing field \"prompt\"", "\(text.path):1: missing field \"completion\""])
    }

    func testBrokenCSVIsReportedAtTheLineItStarts() throws {
        let url = try file("broken.csv", "text,id\nfine,1\n\"never closed,2\n")
        let report = try DatasetChecker.check(url)
        XCTAssertEqual(report.problems.map(\.description), ["\(url.path):3: a quoted cell is never closed"])
    }

    func testInvalidUTF8AndBlankLinesKeepTheirNumbers() throws {
        var bytes = Data("{\"text\": \"a\"}\n\n".utf8)
        bytes += Data([0x7B, 0x22, 0x74, 0x65, 0x78, 0x74, 0x22, 0x3A, 0x22, 0xFF, 0x22, 0x7D, 0x0A])  // {"text":"\xFF"}
        bytes += Data("{\"text\": 1}\r\n".utf8)
        let url = folder.appendingPathComponent("utf8.jsonl")
        try bytes.write(to: url)
        XCTAssertEqual(try DatasetChecker.check(url).problems.map(\.description), [
            "\(url.path):3: the line is not valid UTF-8",
            "\(url.path):4: field \"text\" must be a string, got 1"])
    }
}
