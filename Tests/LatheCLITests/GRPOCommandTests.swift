import Foundation
import XCTest
import LatheModels
import LatheTestSupport
import LatheTraining
@testable import LatheCLI

/// `lathe grpo` exactly as external checks call it: rewards by flag over a YAML file's settings, and a run on the built
/// binary with the default group and batch.
final class GRPOCommandTests: XCTestCase {
    func testRewardFlagsReplaceTheListKeepingTheYAMLsSettings() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-grpo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let yaml = folder.appendingPathComponent("grpo.yaml")
        try "grpo:\n  rewards:\n    - name: regex\n      pattern: '^\\{'\n    - name: json_valid\n".write(to: yaml, atomically: true, encoding: .utf8)
        let c = try GRPOCommand.parse([yaml.path, "--model", "m.gguf", "--data", "p.jsonl", "--output", "out",
                                       "--reward", "regex=0.5", "--reward", "json_match", "--max-steps", "2",
                                       "--num-generations", "4", "--seed", "3"]).resolvedConfiguration()
        XCTAssertEqual(c.rl, .grpo)
        XCTAssertEqual(c.grpo.rewards.map(\.name), [.regex, .jsonMatch])
        XCTAssertEqual(c.grpo.rewards.map(\.weight), [0.5, 1])
        XCTAssertEqual(c.grpo.rewards[0].pattern, "^\\{", "the YAML's settings of a reward the flag names stay")
        XCTAssertEqual(c.grpo.numGenerations, 4)
        XCTAssertEqual(c.maxSteps, 2)
        XCTAssertEqual(c.seed, 3)
        XCTAssertThrowsError(try GRPOCommand.parse(["--data", "p.jsonl", "--output", "o", "--reward", "json_matches"])
            .resolvedConfiguration()) { XCTAssertTrue("\($0)".contains("unknown reward 'json_matches'"), "\($0)") }
        XCTAssertThrowsError(try GRPOCommand.parse(["--data", "p.jsonl", "--output", "o", "--reward", "json_match=x"])
            .resolvedConfiguration()) { XCTAssertTrue("\($0)".contains("not a number"), "\($0)") }
    }

    func testARunWithTheDefaultGroupAndBatchWritesTRLsMetrics() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-grpo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: model))
        let prompts = folder.appendingPathComponent("prompts.jsonl")
        try (0..<4).map { #"{"prompt": "the \#($0)", "reference": "{\"a\": \#($0)}"}"# }.joined(separator: "\n")
            .write(to: prompts, atomically: true, encoding: .utf8)
        let output = folder.appendingPathComponent("run").path
        // TRL's group of 8 with the default batch of 4: one prompt a step, its completions in two micro-batches.
        let run = try LatheProcess.run(["grpo", "--model", model, "--data", prompts.path, "--output", output,
                                        "--reward", "json_match", "--reward", "json_valid=0.5", "--max-steps", "2", "--seed", "1"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stderr.contains("1 per step × 8 completions"), run.stderr)
        let lines = try JSONLines.read(URL(fileURLWithPath: output).appendingPathComponent("metrics.jsonl")).map(\.value)
        XCTAssertEqual(lines.count, 2)
        for key in ["reward", "reward_std", "rewards/json_match/mean", "rewards/json_valid/mean", "completions/mean_length",
                    "clip_ratio"] {
            XCTAssertNotNil(lines[1][key]?.double, key)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: output + "/adapter_model.safetensors"))
    }
}
