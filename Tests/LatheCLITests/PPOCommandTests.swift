import Foundation
import XCTest
import LatheTraining
@testable import LatheCLI

/// `lathe ppo`'s flags, exactly as external checks call it, over a YAML file's `ppo:` section.
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
}
