import ArgumentParser
import Foundation
import XCTest
@testable import LatheCLI
import LatheModels
import LatheTestSupport

/// Runs the built `lathe` binary (beside the test bundle) and captures what it prints.
struct LatheProcess {
    static var binary: URL {
        var folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        if folder.lastPathComponent.hasSuffix(".xctest") { folder = folder.deletingLastPathComponent() }
        return folder.appendingPathComponent("lathe")
    }

    struct Output { let status: Int32; let stdout: String; let stderr: String }

    static func run(_ arguments: [String]) throws -> Output {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }
}

func temporaryFolder() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-cli-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func write(_ text: String, to url: URL) throws { try Data(text.utf8).write(to: url) }

final class CLIParsingTests: XCTestCase {
    func testServeTakesTheIssuesFlagsAndRejectsAnAdapterWithoutAName() throws {
        let command = try LatheCommand.parseAsRoot(["serve", "--model", "m.gguf", "--adapter", "a=/x/a", "--adapter", "b=/x/b",
                                                    "--host", "0.0.0.0", "--port", "9000", "--api-key", "k",
                                                    "--max-concurrency", "16", "--adapters-dir", "/x"])
        let serve = try XCTUnwrap(command as? ServeCommand)
        XCTAssertEqual(serve.base.model, "m.gguf")
        XCTAssertEqual(serve.adapters, ["a=/x/a", "b=/x/b"])
        XCTAssertEqual(serve.port, 9000)
        XCTAssertEqual(serve.maxConcurrency, 16)
        XCTAssertEqual(serve.adaptersDir, "/x")
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["serve", "--adapter", "/x/a"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["serve", "--adapter", "a="]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["serve", "--max-concurrency", "0"]))
    }

    func testFlagsParseAndBadValuesAreRejectedBeforeRunning() throws {
        let command = try LatheCommand.parseAsRoot(["generate", "--model", "m.gguf", "--input", "f.jsonl",
                                                    "--max-tokens", "5", "--temperature", "0.7", "--top-p", "0.9", "--seed", "3"])
        let generate = try XCTUnwrap(command as? GenerateCommand)
        XCTAssertEqual(generate.model.model, "m.gguf")
        XCTAssertEqual(generate.sampling.options, SamplingOptions(temperature: 0.7, topP: 0.9, seed: 3))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["generate", "--input", "f", "--temperature", "-1"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["generate", "--input", "f", "--top-p", "0"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["generate"]))  // neither --input nor --prompt
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["tokenize"]))  // --input is required
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["logprobs", "--input", "f", "--threads", "0"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["logprobs", "--input", "f", "--threads", "two"]))
        XCTAssertEqual(try XCTUnwrap(LatheCommand.parseAsRoot(["logprobs", "--input", "f"]) as? LogprobsCommand).model.threads, .auto)
        XCTAssertEqual(try XCTUnwrap(LatheCommand.parseAsRoot(["logprobs", "--input", "f", "--threads", "2"]) as? LogprobsCommand)
                        .model.threads, .count(2))
        // sft: the flag wins over the YAML key, which wins over the default (auto).
        let sft = try XCTUnwrap(LatheCommand.parseAsRoot(["sft", "--data", "d.jsonl", "--output", "o", "--threads", "1"]) as? SFTCommand)
        XCTAssertEqual(try sft.resolvedConfiguration().threads, .count(1))
        let sftDefault = try XCTUnwrap(LatheCommand.parseAsRoot(["sft", "--data", "d.jsonl", "--output", "o"]) as? SFTCommand)
        XCTAssertEqual(try sftDefault.resolvedConfiguration().threads, .auto)
        XCTAssertEqual(try XCTUnwrap(LatheCommand.parseAsRoot(["tokenize", "--input", "f"]) as? TokenizeCommand).model.model,
                       "smollm2-135m")
    }
}

/// The three JSONL commands end to end on a tiny model written by the test, checked against the library.
final class CLIEndToEndTests: XCTestCase {
    var folder: URL!
    var modelPath: String!

    override func setUpWithError() throws {
        folder = try temporaryFolder()
        modelPath = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: modelPath))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func lines(_ text: String) throws -> [JSONValue] {
        try text.split(separator: "\n").map { try JSONValue.parse(Data($0.utf8)) }
    }

    func testTokenizeLogprobsAndGenerateAgreeWithTheLibrary() throws {
        let input = folder.appendingPathComponent("in.jsonl")
        try write("""
            {"text": "the theory of the tea"}
            {"messages": [{"role": "user", "content": "the answer?"}]}
            """, to: input)
        let lm = try LanguageModel.load(modelPath)
        let expectedIDs = [lm.tokenizer.encode("the theory of the tea"),
                           try lm.chatTokens([.init(role: "user", content: "the answer?")], addGenerationPrompt: true)]
        XCTAssertEqual(lm.tokenizer.decode(expectedIDs[1]), "<|im_start|>user\nthe answer?<|im_end|>\n<|im_start|>assistant\n")

        let tokenized = try LatheProcess.run(["tokenize", "--model", modelPath, "--input", input.path])
        XCTAssertEqual(tokenized.status, 0, tokenized.stderr)
        XCTAssertEqual(try lines(tokenized.stdout).map { $0["ids"]?.array?.compactMap(\.int) ?? [] }, expectedIDs)

        let scored = try LatheProcess.run(["logprobs", "--model", modelPath, "--input", input.path])
        XCTAssertEqual(scored.status, 0, scored.stderr)
        for (line, ids) in zip(try lines(scored.stdout), expectedIDs) {
            let logprobs = try XCTUnwrap(line["logprobs"]?.array)
            XCTAssertEqual(logprobs.count, ids.count)
            XCTAssertEqual(logprobs[0], .null)
            let expected = try lm.logProbabilities(of: ids)
            for i in 1..<ids.count {
                let value = try XCTUnwrap(logprobs[i].double)
                XCTAssertLessThan(value, 0)
                XCTAssertEqual(value, expected[i]!, accuracy: 1e-9)
            }
        }

        let generated = try LatheProcess.run(["generate", "--model", modelPath, "--input", input.path,
                                              "--max-tokens", "6", "--temperature", "0"])
        XCTAssertEqual(generated.status, 0, generated.stderr)
        let texts = try lines(generated.stdout).map { $0["text"]?.string }
        XCTAssertEqual(texts.count, 2)
        for (text, ids) in zip(texts, expectedIDs) {
            XCTAssertEqual(text, try lm.generate(ids, sampling: SamplingOptions(), maxTokens: 6))
        }
    }

    func testSampledGenerationIsRepeatableForASeed() throws {
        let input = folder.appendingPathComponent("in.jsonl")
        try write(#"{"text": "the"}"#, to: input)
        func sample(_ seed: Int) throws -> String {
            try LatheProcess.run(["generate", "--model", modelPath, "--input", input.path, "--max-tokens", "12",
                                  "--temperature", "1.5", "--top-k", "50", "--seed", String(seed)]).stdout
        }
        XCTAssertEqual(try sample(1), try sample(1))
        XCTAssertNotEqual(try sample(1), try sample(2))
    }

    func testBadInputFailsWithFileLineAndField() throws {
        let input = folder.appendingPathComponent("bad.jsonl")
        try write("{\"text\": \"fine\"}\n{\"text\": 12}\n", to: input)
        var result = try LatheProcess.run(["tokenize", "--model", modelPath, "--input", input.path])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("bad.jsonl:2: field \"text\" must be a string"), result.stderr)

        try write("{\"text\": \"fine\"}\n\n{\"messages\": [{\"role\": \"user\"}]}\n", to: input)
        result = try LatheProcess.run(["logprobs", "--model", modelPath, "--input", input.path])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("bad.jsonl:3: messages[0].content must be a string"), result.stderr)

        try write("{\"text\": \"fine\"\n", to: input)
        result = try LatheProcess.run(["generate", "--model", modelPath, "--input", input.path])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("bad.jsonl:1: invalid JSON"), result.stderr)
    }

    func testCorruptOrMissingModelFilesFailWithTheirName() throws {
        let input = folder.appendingPathComponent("in.jsonl")
        try write(#"{"text": "hi"}"#, to: input)
        let whole = try Data(contentsOf: URL(fileURLWithPath: modelPath))
        let truncated = folder.appendingPathComponent("truncated.gguf")
        try whole.prefix(whole.count / 2).write(to: truncated)
        let notGGUF = folder.appendingPathComponent("text.gguf")
        try write("this is not a model", to: notGGUF)
        for path in [truncated.path, notGGUF.path] {
            let result = try LatheProcess.run(["tokenize", "--model", path, "--input", input.path])
            XCTAssertEqual(result.status, 1)
            XCTAssertTrue(result.stderr.contains(path), result.stderr)
        }
        let missing = try LatheProcess.run(["tokenize", "--model", folder.appendingPathComponent("nope.gguf").path,
                                            "--input", input.path])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("nope.gguf: no such file or folder"), missing.stderr)
        // A Hugging Face folder without its tokenizer.
        let hf = fixtures.appendingPathComponent("models/tiny-llama").path
        let noTokenizer = try LatheProcess.run(["tokenize", "--model", hf, "--input", input.path])
        XCTAssertEqual(noTokenizer.status, 1)
        XCTAssertTrue(noTokenizer.stderr.contains("no tokenizer.json"), noTokenizer.stderr)
    }
}

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

/// The real default model through the CLI: ids (tokenizer and chat template) and log-probabilities against
/// transformers' (scripts/reference/models.py).
final class CLISmolLM2Tests: XCTestCase {
    func testLogprobsCommandMatchesTransformersOnTextAndChat() throws {
        _ = try DefaultModelFile.url()
        let fixture = try JSONValue.parse(Data(contentsOf: fixtures.appendingPathComponent("models/smollm2_logprobs.json")))
        let cases = try XCTUnwrap(fixture["cases"]?.array)
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let input = folder.appendingPathComponent("in.jsonl")
        let encoder = JSONEncoder()
        let inputLines = try cases.map { c -> String in
            if let text = c["text"] { return String(decoding: try encoder.encode(["text": text]), as: UTF8.self) }
            return String(decoding: try encoder.encode(["messages": c["messages"]!]), as: UTF8.self)
        }
        try write(inputLines.joined(separator: "\n"), to: input)
        let result = try LatheProcess.run(["logprobs", "--input", input.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let outputs = result.stdout.split(separator: "\n").compactMap { try? JSONValue.parse(Data($0.utf8)) }
        XCTAssertEqual(outputs.count, cases.count)
        for (n, (output, expected)) in zip(outputs, cases).enumerated() {
            XCTAssertEqual(output["ids"], expected["ids"], "case \(n): token ids differ from transformers'")
            let got = output["logprobs"]?.array ?? [], want = expected["logprobs"]?.array ?? []
            var worst = 0.0
            for (g, w) in zip(got, want).dropFirst() { worst = max(worst, abs((g.double ?? .nan) - (w.double ?? .nan))) }
            XCTAssertLessThanOrEqual(worst, 1e-3, "case \(n): largest log-probability difference \(worst)")
        }
    }
}

final class ChatCommandTests: XCTestCase {
    /// `lathe chat` reads turns from standard input, keeps the conversation, and answers each turn.
    func testChatAnswersEachTurnAndResets() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: model))
        let process = Process()
        process.executableURL = LatheProcess.binary
        process.arguments = ["chat", "--model", model, "--max-tokens", "5"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(Data("the tea\n/reset\nan inn\n/exit\n".utf8))
        try input.fileHandleForWriting.close()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        let lm = try LanguageModel.load(model)
        // After /reset, the second answer is the answer to "an inn" alone.
        let second = try lm.generate(try lm.chatTokens([.init(role: "user", content: "an inn")], addGenerationPrompt: true),
                                     sampling: SamplingOptions(seed: 2), maxTokens: 5)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(lines.count, 3, text.debugDescription)
        XCTAssertEqual(lines[1], second)
    }
}
