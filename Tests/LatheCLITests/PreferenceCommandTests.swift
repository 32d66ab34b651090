import Foundation
import XCTest
import LatheModels
import LatheTestSupport

/// `lathe sft` then `lathe dpo --adapter` then `lathe eval preference`, `lathe orpo|simpo|kto`, and `lathe reward`
/// from the SFT adapter with `lathe reward score`, on the built binary with the flags external checks use.
final class PreferenceCommandTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func pairs(_ count: Int, offset: Int = 0) -> String {
        (0..<count).map { i in
            #"{"prompt": "the \#(i + offset)", "chosen": " then the inn", "rejected": " an art on the river \#(i % 3)"}"#
        }.joined(separator: "\n")
    }

    /// A tiny model, a 2-step SFT adapter on it, and training and held-out pairs: where the stages after SFT start.
    func sftStart() throws -> (model: String, sft: String, train: URL, valid: URL) {
        let model = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: model))
        let sftRows = (0..<8).map { i in #"{"prompt": "the \#(i)", "completion": " an inn"}"# }.joined(separator: "\n")
        let sftData = folder.appendingPathComponent("sft.jsonl"), train = folder.appendingPathComponent("pairs.jsonl")
        let valid = folder.appendingPathComponent("valid.jsonl")
        try write(sftRows, to: sftData)
        try write(pairs(12), to: train)
        try write(pairs(4, offset: 50), to: valid)
        let sft = folder.appendingPathComponent("sft").path
        let first = try LatheProcess.run(["sft", "--model", model, "--data", sftData.path, "--output", sft, "--max-steps", "2",
                                          "--lora-rank", "4"])
        XCTAssertEqual(first.status, 0, first.stderr)
        return (model, sft, train, valid)
    }

    func testSFTThenDPOFromTheAdapterRaisesTheHeldOutRewardAccuracy() throws {
        let (model, sft, train, valid) = try sftStart()
        let dpo = folder.appendingPathComponent("dpo").path
        let result = try LatheProcess.run(["dpo", "--model", model, "--adapter", sft, "--data", train.path, "--output", dpo,
                                           "--valid", valid.path, "--beta", "0.5", "--loss-type", "sigmoid", "--epochs", "2",
                                           "--lr", "0.02", "--batch-size", "4", "--max-length", "32", "--seed", "1"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("step 6/6"), result.stderr)
        XCTAssertTrue(result.stderr.contains("rewards/margins"), result.stderr)
        XCTAssertTrue(result.stdout.contains("held-out rewards/accuracies: 0.0000 before"), result.stdout)
        let config = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: "\(dpo)/adapter_config.json")))
        XCTAssertEqual(config["r"]?.int, 4, "the DPO adapter keeps the SFT adapter's shape")

        let evaluation = try LatheProcess.run(["eval", "preference", "--model", model, "--adapter", dpo, "--reference-adapter", sft,
                                               "--input", valid.path, "--beta", "0.5", "--json"])
        XCTAssertEqual(evaluation.status, 0, evaluation.stderr)
        let report = try JSONValue.parse(Data(evaluation.stdout.utf8))
        XCTAssertEqual(report["pairs"]?.int, 4)
        XCTAssertEqual(report["accuracy"]?["estimate"]?.double, 1, evaluation.stdout)
        XCTAssertGreaterThan(report["margin"]?["estimate"]?.double ?? 0, 0, evaluation.stdout)
        XCTAssertNotNil(report["margin"]?["lower"]?.double)
        // The SFT adapter against itself: every reward is 0.
        let same = try LatheProcess.run(["eval", "preference", "--model", model, "--adapter", sft, "--reference-adapter", sft,
                                         "--input", valid.path, "--json"])
        XCTAssertEqual(try JSONValue.parse(Data(same.stdout.utf8))["margin"]?["estimate"]?.double, 0, same.stdout)
    }

    func testORPOSimPOAndKTORunWithTheSameFlags() throws {
        let model = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: model))
        let train = folder.appendingPathComponent("pairs.jsonl")
        try write(pairs(8), to: train)
        for (command, extra, key) in [("orpo", [String](), "log_odds_ratio"), ("simpo", ["--gamma", "0.3"], "rewards/margins"),
                                      ("kto", [], "kl")] {
            let output = folder.appendingPathComponent(command).path
            let result = try LatheProcess.run([command, "--model", model, "--data", train.path, "--output", output, "--max-steps", "2",
                                               "--batch-size", "4", "--lora-rank", "4", "--lora-alpha", "8", "--beta", "0.2",
                                               "--seed", "2"] + extra)
            XCTAssertEqual(result.status, 0, "\(command): \(result.stderr)")
            let lines = try String(contentsOfFile: "\(output)/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(lines.count, 2, command)
            XCTAssertTrue(lines.allSatisfy { $0.contains("\"\(key)\"") }, "\(command): \(lines)")
            let yaml = try String(contentsOfFile: "\(output)/config.yaml", encoding: .utf8)
            XCTAssertTrue(yaml.contains("objective: \(command)"), yaml)
        }
    }

    /// `lathe reward --adapter` then `lathe reward score`.
    func testRewardFromAnSFTAdapterRaisesHeldOutAccuracyAndScoresRows() throws {
        let (model, sft, train, valid) = try sftStart()
        let rm = folder.appendingPathComponent("rm").path
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
