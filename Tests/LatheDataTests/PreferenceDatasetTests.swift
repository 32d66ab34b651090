import Foundation
@testable import LatheData
import LatheModels
import LatheTemplates
import LatheTestSupport
import XCTest

/// Token ids on the real SmolLM2-135M-Instruct (skipped when it is not installed) against TRL 1.16.0's own
/// DPOTrainer/KTOTrainer preprocessing and collators (fixture from scripts/reference/preference_data.py).
final class PreferenceSmolLM2Tests: DatasetTestCase {
    static let model: Result<LanguageModel, Error> = Result { try LanguageModel.load(try DefaultModelFile.url().path) }
    static let fixture: Result<JSONValue, Error> = Result {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/preference/smollm2_trl.json")
        return try JSONValue.parse(Data(contentsOf: url))
    }

    /// Each group of the fixture written as a JSONL file, with its expected examples; `line` maps a row id to its line.
    func groups(_ key: String) throws -> [(name: String, url: URL, line: [Int: Int], expected: [JSONValue])] {
        try XCTUnwrap(Self.fixture.get()[key]?.array).map { group in
            let name = try XCTUnwrap(group["name"]?.string)
            let rows = try XCTUnwrap(group["rows"]?.array)
            let url = try file("\(key)-\(name).jsonl", lines: rows.map(DatasetJSON.encode))
            let line = Dictionary(uniqueKeysWithValues: try rows.enumerated().map { (try XCTUnwrap($1["id"]?.int), $0 + 1) })
            return (name, url, line, try XCTUnwrap(group["expected"]?.array))
        }
    }

    func renderer() throws -> PreferenceRenderer {
        PreferenceRenderer(model: try Self.model.get(), maxLength: try XCTUnwrap(Self.fixture.get()["max_length"]?.int))
    }

    func ids(_ value: JSONValue?) throws -> [Int] { try XCTUnwrap(value?.array).compactMap(\.int) }

    func testPairsEqualTRL() throws {
        let renderer = try renderer()
        var dropped = 0, truncated = 0
        for group in try groups("pairs") {
            let (examples, report) = try PreferenceDataset.loadPairs(group.url, renderer: renderer)
            let kept = group.expected.filter { $0["dropped"] == nil }
            XCTAssertEqual(examples.count, kept.count, group.name)
            for (example, expected) in zip(examples, kept) {
                let id = try XCTUnwrap(expected["id"]?.int)
                XCTAssertEqual(example.source, "\(group.url.path):\(group.line[id] ?? 0)")
                XCTAssertEqual(example.prompt, try ids(expected["prompt_ids"]), "\(group.name) row \(id): prompt")
                XCTAssertEqual(example.chosen, try ids(expected["chosen_ids"]), "\(group.name) row \(id): chosen")
                XCTAssertEqual(example.rejected, try ids(expected["rejected_ids"]), "\(group.name) row \(id): rejected")
                XCTAssertEqual(example.truncated, expected["truncated"]?.bool, "\(group.name) row \(id): truncated")
            }
            XCTAssertEqual(report.droppedCount, group.expected.count - kept.count, group.name)
            dropped += report.droppedCount
            truncated += report.truncated
        }
        // The fixture covers both (asserted by the script too).
        XCTAssertEqual(dropped, 1)
        XCTAssertEqual(truncated, 1)
    }

    func testUnpairedRowsEqualTRL() throws {
        let renderer = try renderer()
        for group in try groups("unpaired") {
            let (examples, report) = try PreferenceDataset.loadUnpaired(group.url, renderer: renderer)
            // TRL unpairs a batch's chosen rows before its rejected ones; here each pair gives its two rows in turn.
            let ours = Dictionary(uniqueKeysWithValues: examples.map { ("\($0.source) \($0.label)", $0) })
            let kept = group.expected.filter { $0["dropped"] == nil }
            XCTAssertEqual(examples.count, kept.count, group.name)
            for expected in kept {
                let id = try XCTUnwrap(expected["id"]?.int), label = try XCTUnwrap(expected["label"]?.bool)
                let example = try XCTUnwrap(ours["\(group.url.path):\(group.line[id] ?? 0) \(label)"], "\(group.name) row \(id)")
                XCTAssertEqual(example.prompt, try ids(expected["prompt_ids"]), "\(group.name) row \(id): prompt")
                XCTAssertEqual(example.completion, try ids(expected["completion_ids"]), "\(group.name) row \(id): completion")
                XCTAssertEqual(example.truncated, expected["truncated"]?.bool, "\(group.name) row \(id): truncated")
            }
            XCTAssertEqual(report.droppedCount, group.expected.count - kept.count, group.name)
        }
    }
}

/// Behaviour on the tiny ChatML model: EOS, BOS, the prompt split, implicit prompts, drops, truncation, errors, CSV,
/// unpairing.
final class PreferenceDatasetTests: DatasetTestCase {
    func renderer(maxLength: Int? = nil, model: Result<LanguageModel, Error> = TinySFTModel.shared) throws -> PreferenceRenderer {
        PreferenceRenderer(model: try model.get(), maxLength: maxLength)
    }

    func decoded(_ model: LanguageModel, _ ids: [Int]) -> String { model.tokenizer.decode(ids) }

    func testTextPairsEndWithOneEOSAndSplitWhereThePromptStopsBeingAPrefix() throws {
        let r = try renderer()
        let eos = try XCTUnwrap(r.model.tokenizer.eosTokenID)
        let url = try file("pairs.jsonl", lines: [
            #"{"prompt": "in the", "chosen": " an", "rejected": " on<|im_end|>"}"#,
            // "the t" + "he": "Ġt" merges into "Ġthe", so the completions start one token earlier (as in TRL).
            #"{"prompt": "the t", "chosen": "he", "rejected": "in"}"#,
        ])
        let (examples, report) = try PreferenceDataset.loadPairs(url, renderer: r)
        XCTAssertEqual(examples[0].prompt, r.model.tokenizer.encode("in the"))
        XCTAssertEqual(examples[0].prompt + examples[0].chosen, r.model.tokenizer.encode("in the an<|im_end|>"))
        XCTAssertEqual(examples[0].rejected.filter { $0 == eos }.count, 1)
        XCTAssertEqual(examples[0].chosen.last, eos)
        XCTAssertEqual(decoded(r.model, examples[1].prompt), "the")
        XCTAssertEqual(decoded(r.model, examples[1].chosen), " the<|im_end|>")
        XCTAssertEqual(decoded(r.model, examples[1].rejected), " tin<|im_end|>")
        XCTAssertEqual(report.description, "2 rows → 2 examples, \(report.promptTokens) prompt and \(report.completionTokens) completion tokens")
        XCTAssertEqual(report.completionTokens, examples.map { $0.chosen.count + $0.rejected.count }.reduce(0, +))

        // A tokenizer that adds BOS adds it to the prompt, as `tokenizer(text)` does in TRL.
        let bos = try renderer(model: TinySFTModel.addingBOS)
        let withBOS = try PreferenceDataset.loadPairs(url, renderer: bos).examples[0]
        XCTAssertEqual(withBOS.prompt.first, bos.model.tokenizer.bosTokenID)
        XCTAssertEqual(Array(withBOS.prompt.dropFirst()), examples[0].prompt)
        XCTAssertEqual(withBOS.chosen, examples[0].chosen)
    }

    func testConversationalPairsAndImplicitPrompts() throws {
        let r = try renderer()
        let url = try file("chat.jsonl", lines: [
            #"{"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}], "chosen": [{"role": "assistant", "content": "yes"}], "rejected": [{"role": "assistant", "content": "no"}]}"#,
            #"{"chosen": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}, {"role": "assistant", "content": "yes"}], "rejected": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}, {"role": "assistant", "content": "no"}]}"#,
        ])
        let (examples, _) = try PreferenceDataset.loadPairs(url, renderer: r)
        let prompt = [ChatMessage(role: "system", content: "s"), ChatMessage(role: "user", content: "q"),
                      ChatMessage(role: "assistant", content: "a"), ChatMessage(role: "user", content: "q2")]
        XCTAssertEqual(examples[0].prompt, try r.model.chatTokens(prompt, addGenerationPrompt: true))
        XCTAssertEqual(decoded(r.model, examples[0].chosen), "yes<|im_end|>\n")
        XCTAssertEqual(decoded(r.model, examples[0].rejected), "no<|im_end|>\n")
        // The shared leading messages are the prompt: the same ids as the explicit form.
        XCTAssertEqual(examples[1].prompt, examples[0].prompt)
        XCTAssertEqual(examples[1].chosen, examples[0].chosen)
        XCTAssertEqual(examples[1].rejected, examples[0].rejected)

        // Text without a prompt: the common start, leaving the space before the split to the answers.
        let text = try file("text.jsonl", lines: [#"{"chosen": "the sky is blue", "rejected": "the sky is green"}"#])
        let pair = try PreferenceDataset.loadPairs(text, renderer: r).examples[0]
        XCTAssertEqual(decoded(r.model, pair.prompt), "the sky is")
        XCTAssertEqual(decoded(r.model, pair.chosen), " blue<|im_end|>")
    }

    func testDropsTruncationAndTheReport() throws {
        let r = try renderer(maxLength: 8)
        let url = try file("pairs.jsonl", lines: [
            #"{"prompt": "ab", "chosen": " x", "rejected": " y"}"#,
            #"{"prompt": "ab", "chosen": " same", "rejected": " same"}"#,
            #"{"prompt": "a prompt longer than eight tokens", "chosen": " x", "rejected": " y"}"#,
            #"{"prompt": "ab", "chosen": " x then a long answer", "rejected": " y then a long answer"}"#,
            #"{"prompt": "ab", "chosen": " a long answer one", "rejected": " a long answer two"}"#,
        ])
        let (examples, report) = try PreferenceDataset.loadPairs(url, renderer: r)
        XCTAssertEqual(examples.map(\.source), ["\(url.path):1", "\(url.path):4"])
        XCTAssertEqual(examples.map(\.truncated), [false, true])
        let cut = examples[1]
        XCTAssertEqual(cut.prompt.count + cut.chosen.count, 8)
        XCTAssertEqual(cut.prompt.count + cut.rejected.count, 8)
        XCTAssertEqual(cut.prompt + cut.chosen, Array(r.model.tokenizer.encode("ab x then a long answer").prefix(8)))
        XCTAssertEqual(report.rows, 5)
        XCTAssertEqual(report.truncated, 1)
        // Line 5's answers differ only after the cut: nothing is preferred in what is left.
        XCTAssertEqual(report.dropped, [PreferenceDropReason.sameChosenAndRejected.rawValue: 2,
                                        PreferenceDropReason.promptFillsMaxLength.rawValue: 1])
        XCTAssertEqual(report.droppedSources, [
            "\(url.path):2: dropped: chosen and rejected are the same tokens",
            "\(url.path):3: dropped: the prompt alone fills max_length",
            "\(url.path):5: dropped: chosen and rejected are the same tokens"])
        XCTAssertTrue(report.description.hasSuffix(", 1 truncated, 3 dropped: 2 (chosen and rejected are the same tokens), "
                                                    + "1 (the prompt alone fills max_length)"), report.description)

        let none = try file("none.jsonl", lines: [#"{"prompt": "a prompt longer than eight tokens", "chosen": " x", "rejected": " y"}"#])
        XCTAssertThrowsError(try PreferenceDataset.loadPairs(none, renderer: r)) { error in
            XCTAssertTrue("\(error)".contains("every row was dropped"), "\(error)")
            XCTAssertTrue("\(error)".contains("\(none.path):1: dropped: the prompt alone fills max_length"), "\(error)")
        }
        // Without a limit nothing is cut or dropped for length.
        XCTAssertEqual(try PreferenceDataset.loadPairs(url, renderer: renderer()).report.dropped,
                       [PreferenceDropReason.sameChosenAndRejected.rawValue: 1])
    }

    func testBadRowsAreErrorsNamingFileLineAndField() throws {
        let r = try renderer()
        let cases: [(String, String)] = [
            (#"{"prompt": "p", "chosen": "a"}"#, #"missing field "rejected""#),
            (#"{"prompt": "p", "chosen": 3, "rejected": "b"}"#, #"field "chosen" must be a string, got 3"#),
            (#"{"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}"#,
             #"field "prompt" is a list of messages while "chosen" is a string"#),
            (#"{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "user", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}"#,
             #"field "chosen[0].role": an answer holds only assistant messages, got user"#),
            (#"{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "robot", "content": "b"}]}"#,
             #"field "rejected[0].role": unknown role "robot""#),
        ]
        for (index, (row, message)) in cases.enumerated() {
            let url = try file("bad\(index).jsonl", lines: [#"{"prompt": "p", "chosen": "a", "rejected": "b"}"#, row])
            XCTAssertThrowsError(try PreferenceDataset.loadPairs(url, renderer: r)) { error in
                XCTAssertTrue("\(error)".hasPrefix("\(url.path):2: \(message)"), "\(error)")
            }
        }
        let kto = try file("kto.jsonl", lines: [#"{"prompt": "p", "completion": "c", "label": true}"#])
        XCTAssertThrowsError(try PreferenceDataset.loadPairs(kto, renderer: r)) { error in
            XCTAssertEqual("\(error)", "\(kto.path):1: a kto row is not a preference pair; give {\"prompt\", \"chosen\", \"rejected\"} rows")
        }
        let sft = try file("sft.jsonl", lines: [#"{"prompt": "p", "completion": "c"}"#])
        XCTAssertThrowsError(try PreferenceDataset.loadUnpaired(sft, renderer: r)) { error in
            XCTAssertEqual("\(error)", "\(sft.path):1: a prompt_completion row is not a KTO row; give {\"prompt\", \"completion\", \"label\"} rows")
        }
        let mixed = try file("mixed.jsonl", lines: [#"{"prompt": "p", "completion": [{"role": "assistant", "content": "c"}], "label": false}"#])
        XCTAssertThrowsError(try PreferenceDataset.loadUnpaired(mixed, renderer: r)) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(mixed.path):1: field \"prompt\" is a string while \"completion\" is a list of messages"), "\(error)")
        }
    }

    func testCSVPairsReadAsText() throws {
        let r = try renderer()
        let csv = folder.appendingPathComponent("pairs.csv")
        try "prompt,chosen,rejected\n\"in the, an\",\" on\",\" in\"\n".write(to: csv, atomically: true, encoding: .utf8)
        let json = try file("pairs.jsonl", lines: [#"{"prompt": "in the, an", "chosen": " on", "rejected": " in"}"#])
        let fromCSV = try PreferenceDataset.loadPairs(csv, renderer: r).examples
        XCTAssertEqual(fromCSV.map(\.source), ["\(csv.path):2"])
        let fromJSON = try PreferenceDataset.loadPairs(json, renderer: r).examples
        XCTAssertEqual(fromCSV.map { [$0.prompt, $0.chosen, $0.rejected] }, fromJSON.map { [$0.prompt, $0.chosen, $0.rejected] })
    }

    func testPairsAreUnpairedAsTRLDoes() throws {
        let r = try renderer(maxLength: 64)
        let pairs = try file("pairs.jsonl", lines: [
            #"{"prompt": "in the", "chosen": " an", "rejected": " on"}"#,
            #"{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "yes"}], "rejected": [{"role": "assistant", "content": "no"}]}"#,
        ])
        let kto = try file("kto.jsonl", lines: [
            #"{"prompt": "in the", "completion": " an", "label": true}"#,
            #"{"prompt": "in the", "completion": " on", "label": false}"#,
            #"{"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "yes"}], "label": true}"#,
            #"{"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "no"}], "label": false}"#,
        ])
        let (unpaired, report) = try PreferenceDataset.loadUnpaired(pairs, renderer: r)
        XCTAssertEqual(unpaired.map(\.source), ["1", "1", "2", "2"].map { "\(pairs.path):\($0)" })
        XCTAssertEqual(unpaired.map(\.label), [true, false, true, false])
        XCTAssertEqual(report.rows, 2)
        XCTAssertEqual(report.examples, 4)
        let direct = try PreferenceDataset.loadUnpaired(kto, renderer: r).examples
        XCTAssertEqual(unpaired.map { [$0.prompt, $0.completion] }, direct.map { [$0.prompt, $0.completion] })
        XCTAssertEqual(direct.map(\.label), [true, false, true, false])
        // The pair's ids and its unpaired rows' ids agree.
        let pair = try PreferenceDataset.loadPairs(pairs, renderer: r).examples[0]
        XCTAssertEqual([pair.prompt, pair.chosen, pair.rejected], [unpaired[0].prompt, unpaired[0].completion, unpaired[1].completion])
    }
}
