import ArgumentParser
import Foundation
import XCTest
@testable import LatheCLI
import LatheModels
import LatheTestSupport
import LatheTraining

/// `lathe advise`: its flags' errors before running, and the external checks' call on the built binary — the JSON
/// keys they read, and a written configuration that `lathe sft` resolves as it is.
final class AdviseCommandTests: XCTestCase {
    func testBadFlagsAreRejectedWithTheFlagNamed() throws {
        func message(_ arguments: [String]) -> String {
            do { _ = try LatheCommand.parseAsRoot(["advise"] + arguments); return "accepted" } catch {
                return LatheCommand.message(for: error)
            }
        }
        XCTAssertTrue(message(["--goal", "format"]).contains("give --model M or --model-size S"))
        XCTAssertTrue(message(["--goal", "format", "--model", "m.gguf", "--model-size", "7B"]).contains("one of them"))
        XCTAssertTrue(message(["--goal", "fame", "--model", "m.gguf"]).contains("fame"))
        XCTAssertTrue(message(["--goal", "format", "--model-size", "7B", "--architecture", "gpt9"]).contains("--architecture: 'gpt9'"))
        XCTAssertTrue(message(["--goal", "format", "--model-size", "5B", "--architecture", "llama"]).contains("--model-size: no llama model"))
        XCTAssertTrue(message(["--goal", "format", "--model", "m", "--gpu-memory", "lots"]).contains("--gpu-memory: 'lots'"))
        XCTAssertTrue(message(["--goal", "format", "--model", "m", "--gpu-memory", "24GB", "--cpu-memory", "8GB"]).contains("at most one"))
        XCTAssertTrue(message(["--goal", "format", "--model", "m", "--device-tflops", "0"]).contains("--device-tflops"))
        let advise = try XCTUnwrap(try LatheCommand.parseAsRoot(["advise", "--goal", "style", "--model-size", "7B", "--architecture", "llama",
                                                                  "--gpu-memory", "24GB", "--method", "qlora"]) as? AdviseCommand)
        XCTAssertEqual(advise.goal, .style)
        XCTAssertEqual(advise.method, .qlora)
    }

    func testTheJSONKeysAndTheWrittenConfigurationOnTheBuiltBinary() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = folder.appendingPathComponent("tiny.gguf")
        try TinyModel.write(to: model)
        let rows = (0..<40).map { i in
            "{\"messages\": [{\"role\": \"user\", \"content\": \"list item \(i)\"}, {\"role\": \"assistant\", \"content\": \"{\\\"item\\\": \(i)}\"}]}"
        }
        let train = folder.appendingPathComponent("train.jsonl"), config = folder.appendingPathComponent("advised.yaml")
        try write(rows.joined(separator: "\n"), to: train)
        let run = try LatheProcess.run(["advise", "--json", "--model", model.path, "--cpu-memory", "8GB", "--goal", "format",
                                        "--data", train.path, "--write-config", config.path, "--output", folder.path + "/run"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(object["method"] as? String, "lora")
        XCTAssertEqual(object["pipeline"] as? [String], ["sft"])
        let memory = try XCTUnwrap(object["memory_mib"] as? [String: Double])
        XCTAssertEqual(Set(memory.keys), ["full", "lora", "qlora"])
        let warnings = try XCTUnwrap(object["warnings"] as? [String])
        XCTAssertTrue(warnings.contains("40 examples for a format goal: it usually takes 100 or more"), "\(warnings)")
        XCTAssertTrue(warnings.contains { $0.hasPrefix("no held-out data") }, "\(warnings)")

        // The trainer's own resolution of the file: defaults, then the YAML, then (no) flags, validated.
        let sft = try XCTUnwrap(try LatheCommand.parseAsRoot(["sft", config.path]) as? SFTCommand)
        let resolved = try sft.resolvedConfiguration()
        let settings = try XCTUnwrap(object["settings"] as? [String: Any])
        XCTAssertEqual(resolved.model, model.path)
        XCTAssertEqual(resolved.data, train.path)
        XCTAssertEqual(resolved.batchSize, settings["batch_size"] as? Int)
        XCTAssertEqual(resolved.sft.maxLength, settings["max_length"] as? Int)
        XCTAssertEqual(resolved.method, .lora)
        // The memory is lathe plan's at the same batch and the longest row (batches are padded to their longest).
        let peak = try XCTUnwrap(settings["peak_length"] as? Int)
        XCTAssertLessThanOrEqual(peak, resolved.sft.maxLength)
        let plan = try LatheProcess.run(["plan", "--json", "--model", model.path, "--method", "lora", "--batch", "\(resolved.batchSize)",
                                         "--seq", "\(peak)", "--lora-rank", "\(resolved.lora.rank)"])
        let planned = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(memory["lora"], planned["total_mib"] as? Double)
    }
}
