import Foundation
import XCTest
import LatheModels
import LatheTestSupport

/// `lathe sft` with the bundled orders config on Gemma 3 270M (the optional second model): a few LoRA steps on a
/// slice of the task lower the held-out loss and write a PEFT adapter for Gemma's linears (that PEFT applies it as
/// Lathe does: scripts/reference/check_peft_adapter.py RUN BASE_GGUF). Skipped when the model is not installed.
final class Gemma3SFTTests: XCTestCase {
    func testAShortLoRARunOnTheOrdersTaskLowersHeldOutLoss() throws {
        let model = try Gemma3ModelFile.url().path
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let orders = root.appendingPathComponent("examples/orders")
        // Two rows each way: a debug build runs the 262k-token head at a few seconds per row.
        func slice(_ name: String) throws -> URL {
            let rows = try String(contentsOf: orders.appendingPathComponent(name), encoding: .utf8).split(separator: "\n").prefix(2)
            let url = folder.appendingPathComponent(name)
            try write(rows.joined(separator: "\n") + "\n", to: url)
            return url
        }
        let output = folder.appendingPathComponent("run").path
        let result = try LatheProcess.run(["sft", orders.appendingPathComponent("sft.yaml").path, "--model", model,
                                           "--data", try slice("train.jsonl").path, "--valid", try slice("valid.jsonl").path,
                                           "--max-steps", "2", "--batch-size", "2", "--output", output])
        XCTAssertEqual(result.status, 0, result.stderr)
        let line = try XCTUnwrap(result.stdout.split(separator: "\n").first { $0.hasPrefix("held-out loss:") }, result.stdout)
        let numbers = line.split(whereSeparator: { !"0123456789.".contains($0) }).compactMap { Double($0) }
        XCTAssertEqual(numbers.count, 2, String(line))
        XCTAssertLessThan(numbers[1], numbers[0], String(line))
        let config = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: "\(output)/adapter_config.json")))
        let targets = Set(config["target_modules"]?.array?.compactMap(\.string) ?? [])
        XCTAssertEqual(targets, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    }
}
