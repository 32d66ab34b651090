import Foundation
import LatheTestSupport
import XCTest
@testable import LatheData

final class DatasetConvertTests: DatasetTestCase {
    func testAlpacaAndShareGPTBecomeMessagesKeepingFieldsWhenAsked() throws {
        let alpaca = try file("alpaca.jsonl", """
            {"instruction": "Translate", "input": "chat", "output": "cat", "id": 7, "system": "Be brief."}
            """)
        let rows = try DatasetReader.read(alpaca)
        XCTAssertEqual(try DatasetConverter.convert(rows, to: .messages, keepFields: true).map(DatasetJSON.encode), [
            #"{"id":7,"messages":[{"content":"Be brief.","role":"system"},{"content":"Translate\n\nchat","role":"user"},{"content":"cat","role":"assistant"}]}"#,
        ])
        XCTAssertEqual(try DatasetConverter.convert(rows, to: .alpaca).map(DatasetJSON.encode), [
            #"{"input":"","instruction":"Translate\n\nchat","output":"cat","system":"Be brief."}"#,
        ])
        let sharegpt = try file("sharegpt.jsonl", """
            {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}], "source": "x"}
            """)
        let converted = try DatasetConverter.convert(try DatasetReader.read(sharegpt), to: .promptCompletion)
        XCTAssertEqual(converted.map(DatasetJSON.encode), [#"{"completion":"hello","prompt":"hi"}"#])
        XCTAssertEqual(try DatasetConverter.convert(try DatasetReader.read(sharegpt), to: .text,
                                                    renderConversation: { $0.map { "\($0.role): \($0.content)" }.joined(separator: "|") })
                        .map(DatasetJSON.encode), [#"{"text":"user: hi|assistant: hello"}"#])
    }

    func testLossyConversionsAreRefusedNamingTheLine() throws {
        let url = try file("multi.jsonl", """
            {"prompt": "p", "completion": "c"}
            """ + "\n" + """
            {"prompt": "p2", "completion": "c2", "messages": null}
            """)
        XCTAssertEqual(try DatasetConverter.convert(try DatasetReader.read(url), to: .messages).map(DatasetJSON.encode), [
            #"{"messages":[{"content":"p","role":"user"},{"content":"c","role":"assistant"}]}"#,
            #"{"messages":[{"content":"p2","role":"user"},{"content":"c2","role":"assistant"}]}"#,
        ])
        let multi = try file("turns.jsonl", """
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}
            """)
        XCTAssertThrowsError(try DatasetConverter.convert(try DatasetReader.read(multi), to: .promptCompletion)) {
            XCTAssertEqual("\($0)", "\(multi.path):1: cannot convert this messages row to prompt_completion: only a user turn "
                           + "then an assistant turn (after an optional system message) fits; this conversation has 4 messages")
        }
        let preference = try file("pref.jsonl", "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n")
        XCTAssertThrowsError(try DatasetConverter.convert(try DatasetReader.read(preference), to: .messages))
        XCTAssertThrowsError(try DatasetConverter.convert(try DatasetReader.read(multi), to: .text)) {
            XCTAssertTrue("\($0)".hasSuffix("conversations become text through a chat template: give --model"), "\($0)")
        }
    }
}

final class DatasetStatsTests: DatasetTestCase {
    func testLengthsLabelsAndQualityFlagsInCharacters() throws {
        var objects: [[String: JSONValue]] = (1...20).map { i in
            ["prompt": .string(String(repeating: "p", count: i)), "completion": .string(String(repeating: "c", count: 100)),
             "label": .bool(i % 4 == 0)]
        }
        objects.append(["prompt": .string("Echo me"), "completion": .string("echo  ME"), "label": .bool(true)])  // line 21
        objects.append(["prompt": .string("x"), "completion": .string(" "), "label": .bool(false)])  // line 22
        objects.append(["prompt": .string("y"), "completion": .string(String(repeating: "c", count: 5000)), "label": .bool(false)])
        let url = try file("kto.jsonl", try jsonl(objects) + "not json\n")
        let stats = try DatasetStatistics.compute(url, unit: "characters", measure: { $0.count }, maxLength: 150)
        XCTAssertEqual(stats.format, "kto")
        XCTAssertEqual(stats.rows, 24)
        XCTAssertEqual(stats.invalidRows, 1)
        XCTAssertEqual(stats.fields.map(\.field), ["prompt", "completion"])
        let prompt = try XCTUnwrap(LengthSummary([Array(1...20), [7, 1, 1]].flatMap { $0 }))
        XCTAssertEqual(stats.fields[0].lengths, prompt)
        XCTAssertEqual(prompt.median, 9)  // nearest rank: the 12th of 23 sorted values
        XCTAssertEqual(prompt.p95, 19)  // the 22nd of 23
        XCTAssertEqual(stats.overMaxLength, 1)
        XCTAssertEqual(stats.labelField, "label")
        XCTAssertEqual(stats.labels, [.init(label: "false", count: 17), .init(label: "true", count: 6)])
        XCTAssertEqual(stats.flags.emptyAnswers, [22])
        XCTAssertEqual(stats.flags.answerRepeatsPrompt, [21])
        XCTAssertEqual(stats.flags.veryShortAnswers, [21])
        XCTAssertEqual(stats.flags.veryLongRows, [23])
    }

    func testTokenLengthsWithTheModelsTokenizerAndChatTemplate() throws {
        let modelURL = folder.appendingPathComponent("tiny.gguf")
        try TinyModel.write(to: modelURL)
        let lm = try LanguageModel.load(modelURL.path)
        let messages = [ChatMessage(role: "user", content: "the theory"), ChatMessage(role: "assistant", content: "of the tea")]
        let url = try file("chat.jsonl", try jsonl([["messages": .array(messages.map {
            .object(["role": .string($0.role), "content": .string($0.content)])
        })]]))
        let stats = try DatasetStatistics.compute(
            url, unit: "tokens", measure: { lm.tokenizer.encode($0, addSpecialTokens: false).count },
            renderConversation: { try lm.renderChat($0, addGenerationPrompt: false) })
        XCTAssertEqual(stats.total?.max, try lm.chatTokens(messages, addGenerationPrompt: false).count)
        XCTAssertEqual(stats.fields.first { $0.field == "user" }?.lengths.max, lm.tokenizer.encode("the theory", addSpecialTokens: false).count)
        XCTAssertEqual(stats.turns?.max, 2)
    }
}
