import Foundation
import XCTest
import LatheModels
import LatheTestSupport

/// `lathe sft`, `lathe merge` and `lathe pretrain` end to end on the built binary, with the flags external checks use.
final class TrainingCommandTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func testSFTWritesAPEFTAdapterThatGenerateAndMergeUse() throws {
        let model = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: model))
        let rows = (0..<12).map { i in #"{"messages": [{"role": "user", "content": "the \#(i)"}, {"role": "assistant", "content": "then the inn \#(i % 3)"}]}"# }
        let train = folder.appendingPathComponent("train.jsonl"), valid = folder.appendingPathComponent("valid.jsonl")
        try write(rows.joined(separator: "\n"), to: train)
        try write(rows.prefix(3).joined(separator: "\n"), to: valid)
        let output = folder.appendingPathComponent("run").path
        let result = try LatheProcess.run(["sft", "--model", model, "--data", train.path, "--output", output, "--valid", valid.path,
                                           "--epochs", "2", "--lr", "0.01", "--batch-size", "4", "--lora-rank", "4",
                                           "--lora-alpha", "8", "--max-length", "64", "--seed", "1"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("step 6/6"), result.stderr)
        XCTAssertTrue(result.stdout.contains("held-out loss"), result.stdout)
        for file in ["adapter_model.safetensors", "adapter_config.json", "config.yaml", "metrics.jsonl"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(output)/\(file)"), file)
        }
        let events = try FileManager.default.contentsOfDirectory(atPath: "\(output)/tb")
        XCTAssertEqual(events.count, 1)
        XCTAssertTrue(events.allSatisfy { $0.hasPrefix("events.out.tfevents.") }, "\(events)")
        let config = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: "\(output)/adapter_config.json")))
        XCTAssertEqual(config["r"]?.int, 4)
        XCTAssertEqual(config["lora_alpha"]?.int, 8)

        // The adapter changes what the model says; merged, the model says the same without it.
        let input = folder.appendingPathComponent("in.jsonl")
        try write(#"{"messages": [{"role": "user", "content": "the 5"}]}"#, to: input)
        let base = try LatheProcess.run(["logprobs", "--model", model, "--input", input.path]).stdout
        let adapted = try LatheProcess.run(["logprobs", "--model", model, "--adapter", output, "--input", input.path]).stdout
        XCTAssertNotEqual(base, adapted)
        let merged = folder.appendingPathComponent("merged").path
        let merge = try LatheProcess.run(["merge", "--model", model, "--adapter", output, "--output", merged, "--type", "f32"])
        XCTAssertEqual(merge.status, 0, merge.stderr)
        XCTAssertTrue(merge.stderr.contains("merged onto the float32 base"), merge.stderr)
        let mergedOut = try LatheProcess.run(["generate", "--model", "\(merged)/model.gguf", "--input", input.path, "--max-tokens", "8"]).stdout
        let adaptedOut = try LatheProcess.run(["generate", "--model", model, "--adapter", output, "--input", input.path, "--max-tokens", "8"]).stdout
        XCTAssertEqual(mergedOut, adaptedOut)
    }

    /// QLoRA from the command line: an NF4 base, 8-bit AdamW; the adapter loads and merges onto the NF4 base it was
    /// trained on unless --quantize none asks for the float base; inspect shows the base's bits per parameter.
    func testQLoRARunLoadsAndMergesOntoItsNF4Base() throws {
        let model = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: model), hidden: 64)
        let rows = (0..<8).map { i in #"{"prompt": "the \#(i)", "completion": " then the inn"}"# }
        let train = folder.appendingPathComponent("train.jsonl")
        try write(rows.joined(separator: "\n"), to: train)
        let output = folder.appendingPathComponent("qlora").path
        let result = try LatheProcess.run(["sft", "--model", model, "--data", train.path, "--output", output, "--max-steps", "2",
                                           "--quantize", "nf4", "--optimizer", "adamw8bit", "--lora-rank", "4"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let config = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: "\(output)/adapter_config.json")))
        XCTAssertEqual(config["lathe_training"]?["base_weights"]?.string, "nf4")
        let resolved = try String(contentsOfFile: "\(output)/config.yaml", encoding: .utf8)
        XCTAssertTrue(resolved.contains("quantize: nf4") && resolved.contains("adamw8bit"), resolved)
        let merge = try LatheProcess.run(["merge", "--model", model, "--adapter", output, "--output",
                                          folder.appendingPathComponent("merged").path, "--type", "f32"])
        XCTAssertEqual(merge.status, 0, merge.stderr)
        XCTAssertTrue(merge.stderr.contains("trained on an NF4 base: merged onto the dequantized NF4 weights"), merge.stderr)
        let floatMerge = try LatheProcess.run(["merge", "--model", model, "--adapter", output, "--output",
                                               folder.appendingPathComponent("merged-float").path, "--type", "f32", "--quantize", "none"])
        XCTAssertEqual(floatMerge.status, 0, floatMerge.stderr)
        XCTAssertTrue(floatMerge.stderr.contains("merged onto the float32 base"), floatMerge.stderr)

        // --adapter alone scores as --quantize nf4 does, and says so; --quantize none is the float base.
        let input = folder.appendingPathComponent("in.jsonl")
        try write(#"{"text": "the 3 then the inn"}"#, to: input)
        func logprobs(_ flags: [String]) throws -> LatheProcess.Output {
            let result = try LatheProcess.run(["logprobs", "--model", model, "--adapter", output, "--input", input.path] + flags)
            XCTAssertEqual(result.status, 0, result.stderr)
            return result
        }
        let byDefault = try logprobs([]), nf4 = try logprobs(["--quantize", "nf4"]), float = try logprobs(["--quantize", "none"])
        XCTAssertEqual(byDefault.stdout, nf4.stdout)
        XCTAssertNotEqual(byDefault.stdout, float.stdout)
        XCTAssertTrue(byDefault.stderr.contains("was trained on an NF4 base: loading the base as NF4 (--quantize none for the "),
                      byDefault.stderr)
        XCTAssertFalse(nf4.stderr.contains("trained on") || float.stderr.contains("trained on"), nf4.stderr + float.stderr)
        let mergedScores = try LatheProcess.run(["logprobs", "--model", folder.appendingPathComponent("merged/model.gguf").path,
                                                 "--input", input.path])
        XCTAssertEqual(mergedScores.status, 0, mergedScores.stderr)
        XCTAssertNotEqual(mergedScores.stdout, float.stdout)

        let inspect = try LatheProcess.run(["inspect", "--model", model, "--quantize", "nf4"])
        XCTAssertTrue(inspect.stdout.contains("nf4, 4.1"), inspect.stdout)
        let bad = try LatheProcess.run(["sft", "--model", model, "--data", train.path, "--output", output, "--quantize", "int3"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("quantize: 'int3'"), bad.stderr)
    }

    /// `lathe plan` reads only the configuration and prints the terms: QLoRA's NF4 base weighs less than LoRA's
    /// float32 one, and full fine-tuning has gradients for every weight.
    func testPlanPrintsTheTermsAndOrdersTheMethods() throws {
        let model = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: model), hidden: 64)
        func plan(_ method: String, _ extra: [String] = []) throws -> JSONValue {
            let result = try LatheProcess.run(["plan", "--model", model, "--method", method, "--batch", "2", "--seq", "32",
                                               "--dtype", "f32", "--json"] + extra)
            XCTAssertEqual(result.status, 0, result.stderr)
            let plan = try JSONValue.parse(Data(result.stdout.utf8))
            for key in ["weights_mib", "gradients_mib", "optimizer_mib", "activations_mib", "workspace_mib", "runtime_mib"] {
                XCTAssertNotNil(plan[key]?.double, "\(key) in \(result.stdout)")
            }
            XCTAssertGreaterThan(plan["total_mib"]?.double ?? 0, plan["runtime_mib"]?.double ?? .infinity)
            return plan
        }
        let full = try plan("full"), lora = try plan("lora"), qlora = try plan("qlora")
        XCTAssertLessThan(try XCTUnwrap(lora["gradients_mib"]?.double), try XCTUnwrap(full["gradients_mib"]?.double))
        XCTAssertLessThan(try XCTUnwrap(qlora["weights_mib"]?.double), try XCTUnwrap(lora["weights_mib"]?.double))
        let table = try LatheProcess.run(["plan", "--model", model, "--method", "qlora"])
        XCTAssertTrue(table.stdout.contains("optimizer state") && table.stdout.contains("total"), table.stdout)
        // A preference objective's micro-batch holds two rows per pair: twice LoRA's activations.
        let dpo = try plan("dpo")
        XCTAssertEqual(try XCTUnwrap(dpo["activations_mib"]?.double), 2 * (try XCTUnwrap(lora["activations_mib"]?.double)), accuracy: 0.2)
        // GRPO and PPO plan their rollouts from the prompt's length: more completions per step, a larger KV cache.
        let bad = try LatheProcess.run(["plan", "--model", model, "--method", "ppo"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--prompt-length"), bad.stderr)
        let grpo = try plan("grpo", ["--prompt-length", "16", "--completion-length", "16"])
        let accumulated = try plan("grpo", ["--prompt-length", "16", "--completion-length", "16", "--grad-accum", "8"])
        XCTAssertEqual(try XCTUnwrap(grpo["activations_mib"]?.double), try XCTUnwrap(lora["activations_mib"]?.double), accuracy: 0.05,
                       "the update holds batch × (prompt + completion) tokens")
        XCTAssertGreaterThan(try XCTUnwrap(accumulated["rollouts_mib"]?.double), try XCTUnwrap(grpo["rollouts_mib"]?.double))
        let ppo = try plan("ppo", ["--prompt-length", "16", "--response-length", "16", "--reward-lora-rank", "64"])
        XCTAssertGreaterThan(try XCTUnwrap(ppo["weights_mib"]?.double), try XCTUnwrap(lora["weights_mib"]?.double),
                             "the reward model's adapter and head, and the value head")
        // --serve: the KV cache is slots × context, adapters come on top, and the weights are the inference format's.
        func serve(_ flags: [String]) throws -> JSONValue {
            let result = try LatheProcess.run(["plan", "--model", model, "--serve", "--dtype", "f32", "--json"] + flags)
            XCTAssertEqual(result.status, 0, result.stderr)
            return try JSONValue.parse(Data(result.stdout.utf8))
        }
        let served = try serve(["--max-concurrency", "4", "--context", "256"])
        let doubled = try serve(["--max-concurrency", "8", "--context", "256", "--adapters", "2"])
        XCTAssertEqual(try XCTUnwrap(doubled["kv_cache_mib"]?.double), 2 * (try XCTUnwrap(served["kv_cache_mib"]?.double)), accuracy: 0.2)
        XCTAssertEqual(served["adapters_mib"]?.double, 0)
        XCTAssertGreaterThan(try XCTUnwrap(doubled["adapters_mib"]?.double), 0)
        XCTAssertEqual(served["weights_mib"]?.double, full["weights_mib"]?.double, "float32 weights, as full fine-tuning holds them")
        let badServe = try LatheProcess.run(["plan", "--model", model, "--serve", "--context", "0"])
        XCTAssertNotEqual(badServe.status, 0)
        XCTAssertTrue(badServe.stderr.contains("--context"), badServe.stderr)
    }

    func testSFTRejectsBadFlagsAndBadDataByName() throws {
        let model = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: model))
        let bad = folder.appendingPathComponent("bad.jsonl")
        try write("{\"prompt\": \"the\", \"completion\": \" tea\"}\n{\"prompt\": \"the\"}\n", to: bad)
        var result = try LatheProcess.run(["sft", "--model", model, "--data", bad.path, "--output", folder.appendingPathComponent("r").path])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("bad.jsonl:2"), result.stderr)
        result = try LatheProcess.run(["sft", "--model", model, "--data", bad.path, "--output", "x", "--lora-rank", "0"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("rank"), result.stderr)
    }

    func testPretrainBuildsAModelFromScratchThatLoadsBack() throws {
        let corpus = folder.appendingPathComponent("corpus.txt")
        try write((0..<40).map { i in "the theory of the inn on the river \(i % 7), then the tea.\n" }.joined(separator: "\n"), to: corpus)
        let tokenizer = folder.appendingPathComponent("tok").path
        var result = try LatheProcess.run(["tokenizer", "train", "--input", corpus.path, "--vocab-size", "280", "--output", tokenizer])
        XCTAssertEqual(result.status, 0, result.stderr)
        let output = folder.appendingPathComponent("new").path
        result = try LatheProcess.run(["pretrain", "--tokenizer", tokenizer, "--data", corpus.path, "--output", output,
                                       "--max-steps", "12", "--seq-len", "32", "--batch-size", "4", "--lr", "0.003", "--seed", "2",
                                       "--report-to", "none"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(output)/tb"), "--report-to none writes no event files")
        let losses = try JSONLines.read(URL(fileURLWithPath: "\(output)/metrics.jsonl")).compactMap { $0.value["loss"]?.double }
        XCTAssertEqual(losses.count, 12)
        XCTAssertLessThan(losses.last!, losses.first! - 1, "loss curve \(losses)")
        let lm = try LanguageModel.load(output)
        XCTAssertEqual(lm.model.config.vocabularySize, 280)
        XCTAssertEqual(lm.tokenizer.decode(lm.tokenizer.encode("the inn")), "the inn")
    }
}

extension TrainingCommandTests {
    /// A run killed (SIGKILL) after a checkpoint and resumed logs the same losses as a run that was never stopped.
    func testKilledRunResumesWithTheSameLossCurve() throws {
        let model = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: model))
        let rows = (0..<24).map { i in #"{"prompt": "the \#(i % 5) inn", "completion": " then the tea \#(i % 3)"}"# }
        let train = folder.appendingPathComponent("train.jsonl")
        try write(rows.joined(separator: "\n"), to: train)
        func arguments(_ output: String) -> [String] {
            ["sft", "--model", model, "--data", train.path, "--output", output, "--max-steps", "120", "--batch-size", "2",
             "--lora-dropout", "0.1", "--save-every", "5", "--seed", "3"]
        }
        func losses(_ output: String) throws -> [Int: Double] {
            var byStep: [Int: Double] = [:]  // the last line of a step wins: work after the checkpoint is redone
            for line in try JSONLines.read(URL(fileURLWithPath: "\(output)/metrics.jsonl")) {
                if let step = line.value["step"]?.int, let loss = line.value["loss"]?.double { byStep[step] = loss }
            }
            return byStep
        }
        let straight = folder.appendingPathComponent("straight").path
        XCTAssertEqual(try LatheProcess.run(arguments(straight)).status, 0)

        let killed = folder.appendingPathComponent("killed").path
        let process = Process()
        process.executableURL = LatheProcess.binary
        process.arguments = arguments(killed)
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let state = "\(killed)/checkpoint/state.json"
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: state) && process.isRunning && Date() < deadline { usleep(2_000) }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal, "the run ended before it could be killed")
        let resumed = try LatheProcess.run(arguments(killed) + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try losses(killed), try losses(straight))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(killed)/tb").count, 2, "a resumed run adds an event file")
        XCTAssertEqual(try losses(straight).count, 120)
    }
}

final class DataSynthCommandTests: XCTestCase {
    /// `lathe data synth` against an OpenAI-compatible endpoint on loopback: a new task and its answer are written.
    func testSynthFromAnEndpointWritesCheckedRows() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let server = try ChatCompletionTestServer(script: [
            .answer("Task 3: Name a metal."), .answer("Iron."),
        ])
        defer { server.stop() }
        let seeds = folder.appendingPathComponent("seeds.jsonl"), output = folder.appendingPathComponent("new.jsonl")
        try write(#"{"messages": [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "Apple."}]}"#, to: seeds)
        let result = try LatheProcess.run(["data", "synth", "--seeds", seeds.path, "--output", output.path, "--count", "1",
                                           "--url", server.baseURL.absoluteString, "--remote-model", "teacher"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("1 examples kept of 1 attempts"), result.stderr)
        let rows = try JSONLines.read(output)
        XCTAssertEqual(rows.count, 1)
        XCTAssertEqual(rows[0].value["messages"]?.array?.map { $0["content"]?.string ?? "" }, ["Name a metal.", "Iron."])
        XCTAssertEqual(server.requests.count, 2)
    }
}
