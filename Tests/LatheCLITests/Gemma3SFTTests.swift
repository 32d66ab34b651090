import Foundation
import XCTest
@testable import LatheCLI
import LatheModels
import LatheTraining
import LatheTestSupport

/// `lathe sft` with the bundled orders config on Gemma 3 270M (the optional second model): one LoRA step on a
/// row of the task lower the held-out loss and write a PEFT adapter for Gemma's linears (that PEFT applies it as
/// Lathe does: scripts/reference/check_peft_adapter.py RUN BASE_GGUF). Skipped when the model is not installed.
final class Gemma3SFTTests: XCTestCase {
    func testAShortLoRARunOnTheOrdersTaskLowersHeldOutLoss() throws {
        let model = try Gemma3ModelFile.url().path
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let orders = root.appendingPathComponent("examples/orders")
        // One row each way: a debug build takes seconds per row through the 262k-token head.
        func slice(_ name: String) throws -> URL {
            let rows = try String(contentsOf: orders.appendingPathComponent(name), encoding: .utf8).split(separator: "\n").prefix(1)
            let url = folder.appendingPathComponent(name)
            try write(rows.joined(separator: "\n") + "\n", to: url)
            return url
        }
        let output = folder.appendingPathComponent("run").path
        // The command's own configuration (the YAML, then the flags), trained in process: `lathe sft` would also
        // sample an answer before and after, a minute of greedy decoding in a debug build. f32: the debug build's
        // bf16 products are unoptimised Swift.
        let command = try SFTCommand.parse([orders.appendingPathComponent("sft.yaml").path, "--model", model,
                                            "--data", try slice("train.jsonl").path, "--valid", try slice("valid.jsonl").path,
                                            "--max-steps", "1", "--batch-size", "1", "--dtype", "f32", "--output", output])
        var c = try command.resolvedConfiguration()
        c.warmupSteps = 0  // the one step at the config's full learning rate, not at warmup's first (zero)
        let lm = try LanguageModel.load(c.model, weightFormat: try c.loadingFormat())
        var heldOut: [Double] = []
        try Trainer(config: c, languageModel: lm).run(resume: false) { event in
            if case .validation(_, let metrics) = event, let loss = metrics["eval_loss"] { heldOut.append(loss) }
        }
        XCTAssertGreaterThanOrEqual(heldOut.count, 2, "held-out loss before and after")
        XCTAssertLessThan(try XCTUnwrap(heldOut.last), try XCTUnwrap(heldOut.first), "held-out loss \(heldOut)")
        let config = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: "\(output)/adapter_config.json")))
        let targets = Set(config["target_modules"]?.array?.compactMap(\.string) ?? [])
        XCTAssertEqual(targets, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    }
}
