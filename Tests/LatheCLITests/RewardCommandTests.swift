import Foundation
import XCTest
import LatheModels
import LatheTestSupport

/// `lathe sft`, then `lathe reward --adapter` and `lathe reward score`, on the built binary with the flags external
/// checks use.
final class RewardCommandTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func pairs(_ count: Int, offset: Int = 0) -> String {
        (0..<count).map { i in
            #"{"prompt": "the \#(i + offset)", "chosen": " then the inn", "rejected": " an art on the river \#(i % 3)"}"#
        }.joined(separator: "\n")
    }

    func testRewardFromAnSFTAdapterRaisesHeldOutAccuracyAndScoresRows() throws {
        let model = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: model))
        let sftRows = (0..<8).map { i in #"{"prompt": "the \#(i)", "completion": " an inn"}"# }.joined(separator: "\n")
        let sftData = folder.appendingPathComponent("sft.jsonl"), train = folder.appendingPathComponent("pairs.jsonl")
        let valid = folder.appendingPathComponent("valid.jsonl")
        try write(sftRows, to: sftData)
        try write(pairs(12), to: train)
        try write(pairs(4, offset: 50), to: valid)
        let sft = folder.appendingPathComponent("sft").path, rm = folder.appendingPathComponent("rm").path
        let first = try LatheProcess.run(["sft", "--model", model, "--data", sftData.path, "--output", sft, "--max-steps", "2",
                                          "--lora-rank", "4"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let result = try LatheProcess.run(["reward", "--model", model, "--adapter", sft, "--data", train.path, "--output", rm,
                                           "--valid", valid.path, "--epochs", "3", "--lr", "0.02", "--batch-size", "4", "--seed", "1"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("step 9/9"), result.stderr)
        XCTAssertTrue(result.stderr.contains("accuracy"), result.stderr)
        let accuracy = result.stdout.split(separator: "\n").first { $0.hasPrefix("held-out accuracy:") }
        XCTAssertNotNil(accuracy, result.stdout)
        XCTAssertTrue(accuracy?.hasSuffix("1.0000 after") ?? false, result.stdout)
        let config = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: "\(rm)/adapter_config.json")))
        XCTAssertEqual(config["r"]?.int, 4, "the reward model's LoRA is the SFT adapter trained further")
        XCTAssertEqual(config["task_type"]?.string, "SEQ_CLS")

        let rows = folder.appendingPathComponent("rows.jsonl")
        try write(#"{"text": "the 60 then the inn"}"# + "\n" + #"{"messages": [{"role": "user", "content": "the 60"}, {"role": "assistant", "content": "an art on the river"}]}"# + "\n"
                  + #"{"text": "the 60 an art on the river 1"}"#, to: rows)
        let scored = try LatheProcess.run(["reward", "score", "--model", model, "--adapter", rm, "--input", rows.path])
        XCTAssertEqual(scored.status, 0, scored.stderr)
        let scores = try scored.stdout.split(separator: "\n").map { try JSONValue.parse(Data($0.utf8))["score"]?.double ?? .nan }
        XCTAssertEqual(scores.count, 3, scored.stdout)
        XCTAssertGreaterThan(scores[0], scores[2], "the chosen kind of answer scores higher")
        // One row at a time gives the batch's scores (padding does not change them).
        let single = try LatheProcess.run(["reward", "score", "--model", model, "--adapter", rm, "--input", rows.path, "--batch-size", "1"])
        let one = try single.stdout.split(separator: "\n").map { try JSONValue.parse(Data($0.utf8))["score"]?.double ?? .nan }
        for (a, b) in zip(one, scores) { XCTAssertEqual(a, b, accuracy: 1e-5) }

        let missing = try LatheProcess.run(["reward", "score", "--model", model, "--input", rows.path])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("--adapter"), missing.stderr)
    }
}
