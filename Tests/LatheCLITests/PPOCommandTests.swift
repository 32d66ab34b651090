import Foundation
import XCTest
import LatheModels
import LatheTestSupport
import LatheTraining
@testable import LatheCLI

/// `lathe ppo`'s flags, exactly as external checks call it, over a YAML file's `ppo:` section; and sft → reward → ppo
/// on the built binary, with an exact resume.
final class PPOCommandTests: XCTestCase {
    func testTheExternalChecksFlagsResolveOverTheYAMLFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-ppo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let yaml = folder.appendingPathComponent("ppo.yaml")
        try "seed: 7\nppo:\n  kl_coef: 0.1\n  num_mini_batches: 2\n".write(to: yaml, atomically: true, encoding: .utf8)
        let c = try PPOCommand.parse([yaml.path, "--model", "m.gguf", "--adapter", "sft", "--reward-model", "rm",
                                      "--data", "prompts.jsonl", "--output", "out", "--max-steps", "3", "--seed", "5",
                                      "--kl-coef", "0.2"]).resolved()
        XCTAssertEqual(c.rl, .ppo)
        XCTAssertEqual(c.model, "m.gguf")
        XCTAssertEqual(c.adapter, "sft")
        XCTAssertEqual(c.ppo.rewardModelPath, "rm")
        XCTAssertEqual(c.data, "prompts.jsonl")
        XCTAssertEqual(c.output, "out")
        XCTAssertEqual(c.maxSteps, 3)
        XCTAssertEqual(c.seed, 5, "the flag wins over the file")
        XCTAssertEqual(c.ppo.klCoef, 0.2)
        XCTAssertEqual(c.ppo.numMiniBatches, 2, "the file wins over the default")
        XCTAssertThrowsError(try PPOCommand.parse(["--data", "p.jsonl", "--output", "out"]).resolved()) {
            XCTAssertTrue("\($0)".contains("--reward-model"), "\($0)")
        }
    }

    /// Runs once `lathe reward` exists (branch reward): until then RewardModel is a stand-in and this skips.
    func testSFTThenRewardThenPPOLogsTRLsMetricsAndResumesExactly() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try XCTSkipUnless(LatheCommand.configuration.subcommands.contains { $0.configuration.commandName == "reward" },
                          "lathe reward comes with the reward branch")
        let model = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: model))
        let sftData = folder.appendingPathComponent("sft.jsonl"), pairs = folder.appendingPathComponent("pairs.jsonl")
        let prompts = folder.appendingPathComponent("prompts.jsonl"), yaml = folder.appendingPathComponent("ppo.yaml")
        try write((0..<8).map { #"{"prompt": "the \#($0)", "completion": " an inn"}"# }.joined(separator: "\n"), to: sftData)
        try write((0..<8).map { #"{"prompt": "the \#($0)", "chosen": " then the inn", "rejected": " an art"}"# }.joined(separator: "\n"),
                  to: pairs)
        try write((0..<8).map { #"{"prompt": "on the \#($0)"}"# }.joined(separator: "\n"), to: prompts)
        try write("batch_size: 4\nsave_every: 2\nppo:\n  response_length: 5\n  num_ppo_epochs: 1\n  num_mini_batches: 2\n", to: yaml)
        let sft = folder.appendingPathComponent("sft").path, rm = folder.appendingPathComponent("rm").path
        let ppo = folder.appendingPathComponent("ppo").path, resumed = folder.appendingPathComponent("resumed").path
        XCTAssertEqual(try LatheProcess.run(["sft", "--model", model, "--data", sftData.path, "--output", sft, "--max-steps", "2",
                                             "--lora-rank", "4"]).status, 0)
        XCTAssertEqual(try LatheProcess.run(["reward", "--model", model, "--adapter", sft, "--data", pairs.path, "--output", rm,
                                             "--epochs", "1", "--lr", "0.02", "--batch-size", "4", "--seed", "1"]).status, 0)
        let arguments = [yaml.path, "--model", model, "--adapter", sft, "--reward-model", rm, "--data", prompts.path,
                         "--max-steps", "6", "--seed", "3"]
        let run = try LatheProcess.run(["ppo"] + arguments + ["--output", ppo])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stderr.contains("step 6/6"), run.stderr)
        func lines(_ folder: String) throws -> [JSONValue] {
            try String(contentsOfFile: folder + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map { try JSONValue.parse(Data($0.utf8)) }
        }
        let first = try lines(ppo)
        XCTAssertEqual(first.count, 6)
        for name in ["objective/kl", "objective/scores", "objective/rlhf_reward", "objective/non_score_reward", "objective/entropy",
                     "policy/approxkl_avg", "policy/clipfrac_avg", "loss/policy_avg", "loss/value_avg", "val/clipfrac_avg",
                     "val/ratio", "val/num_eos_tokens"] {
            XCTAssertNotNil(first[5][name]?.double, name)
        }
        XCTAssertNotNil(first[5]["val/ratio_var"]?.double, "the rollout's second update has the ratio's variance")
        // From the step-4 checkpoint (mid-run: the second rollout's buffer in task_state.json), steps 5 and 6 again.
        try FileManager.default.copyItem(atPath: ppo, toPath: resumed)
        let again = try LatheProcess.run(["ppo"] + arguments + ["--output", resumed, "--resume"])
        XCTAssertEqual(again.status, 0, again.stderr)
        let second = try lines(resumed)
        XCTAssertEqual(second.count, 8)
        for (a, b) in zip(first[4...], second[6...]) {
            for key in ["step", "loss", "grad_norm", "objective/scores", "objective/kl", "policy/approxkl_avg", "loss/value_avg"] {
                XCTAssertEqual(a[key], b[key], "resumed \(key) at step \(a["step"]?.int ?? -1)")
            }
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: ppo + "/adapter_model.safetensors")),
                       try Data(contentsOf: URL(fileURLWithPath: resumed + "/adapter_model.safetensors")))
    }
}
