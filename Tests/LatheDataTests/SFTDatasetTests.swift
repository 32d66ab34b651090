import Foundation
import LatheData
import XCTest

final class SFTDatasetTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-sftdata-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func write(_ name: String, _ lines: [String]) throws -> URL {
        let url = folder.appendingPathComponent(name)
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func testReportCountsRowsTruncationSkipsAndTokens() throws {
        let renderer = SFTRenderer(model: try TinySFTModel.load(), options: try SFTOptions(maxLength: 12))
        let url = try write("pc.jsonl", [
            #"{"prompt": "Q: a", "completion": " b"}"#,
            #"{"prompt": "Q: c", "completion": " a much longer answer"}"#,
            #"{"prompt": "a prompt much longer than twelve tokens", "completion": " x"}"#,
        ])
        let (examples, report) = try SFTDataset.load(url, renderer: renderer)
        XCTAssertEqual(examples.map(\.source), ["\(url.path):1", "\(url.path):2"])
        XCTAssertEqual(report.rows, 3)
        XCTAssertEqual(report.examples, 2)
        XCTAssertEqual(report.truncated, 1)
        XCTAssertEqual(report.skipped, [SFTSkipReason.noSupervisedTokenAfterTruncation.rawValue: 1])
        XCTAssertEqual(report.skippedSources, ["\(url.path):3: skipped: no supervised token left after truncation"])
        XCTAssertEqual(report.totalTokens, examples.map(\.ids.count).reduce(0, +))
        XCTAssertEqual(report.supervisedTokens, examples.map(\.supervisedCount).reduce(0, +))
        XCTAssertEqual(examples[1].ids.count, 12)
        XCTAssertEqual(report.description, "3 rows → 2 examples, \(report.totalTokens) tokens (\(report.supervisedTokens) supervised), " +
                       "1 truncated, 1 skipped: 1 (no supervised token left after truncation)")
    }

    func testAlpacaRowsGoThroughTheChatTemplate() throws {
        let model = try TinySFTModel.load()
        let renderer = SFTRenderer(model: model, options: try SFTOptions(maxLength: 64))
        let url = try write("alpaca.jsonl", [#"{"instruction": "say hi", "input": "", "output": "hi"}"#])
        let (examples, _) = try SFTDataset.load(url, renderer: renderer)
        XCTAssertEqual(supervisedSpans(examples[0], model), ["hi<|im_end|>\n"])
    }

    func testBadRowsAreErrorsNamingFileAndLine() throws {
        let renderer = SFTRenderer(model: try TinySFTModel.load(), options: try SFTOptions(maxLength: 64))
        let malformed = try write("bad.jsonl", [#"{"text": "fine"}"#, #"{"text": 3}"#])
        XCTAssertThrowsError(try SFTDataset.load(malformed, renderer: renderer)) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(malformed.path):2:"), "\(error)")
        }
        let preference = try write("pref.jsonl", [#"{"prompt": "p", "chosen": "a", "rejected": "b"}"#])
        XCTAssertThrowsError(try SFTDataset.load(preference, renderer: renderer)) { error in
            XCTAssertEqual("\(error)", "\(preference.path):1: a preference row is not SFT data " +
                           "(SFT takes text, prompt/completion, messages, Alpaca or ShareGPT rows)")
        }
        let empty = try write("empty.jsonl", [])
        XCTAssertThrowsError(try SFTDataset.load(empty, renderer: renderer)) { error in
            XCTAssertTrue("\(error)".contains("no rows"), "\(error)")
        }
        let allSkipped = try write("skip.jsonl", [#"{"prompt": "\#(String(repeating: "long ", count: 20))", "completion": "x"}"#])
        XCTAssertThrowsError(try SFTDataset.load(allSkipped, renderer: SFTRenderer(model: renderer.model, options: try SFTOptions(maxLength: 8)))) { error in
            XCTAssertTrue("\(error)".contains("every row was skipped"), "\(error)")
        }
    }

    func testOptionsDecodeWithDefaultsAndNameBadKeys() throws {
        let decoded = try JSONDecoder().decode(SFTOptions.self, from: Data(#"{"max_length": 256, "packing": true}"#.utf8))
        XCTAssertEqual(decoded, try SFTOptions(maxLength: 256, lossOn: .completion, truncation: .right, packing: true))
        let roundTrip = try JSONDecoder().decode(SFTOptions.self, from: JSONEncoder().encode(decoded))
        XCTAssertEqual(roundTrip, decoded)
        func error(_ json: String) -> String {
            do { _ = try JSONDecoder().decode(SFTOptions.self, from: Data(json.utf8)); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(error(#"{"loss_on": "prompt"}"#), "SFT option 'loss_on' must be one of completion, all, got 'prompt'")
        XCTAssertEqual(error(#"{"max_lenght": 5}"#),
                       "SFT option 'max_lenght' is not an SFT option (known: max_length, loss_on, truncation, packing)")
        XCTAssertEqual(error(#"{"max_length": 1}"#), "SFT option 'max_length' must be at least 2, got 1")
        XCTAssertEqual(error(#"{"packing": "yes"}"#), "SFT option 'packing' must be true or false")
    }
}
