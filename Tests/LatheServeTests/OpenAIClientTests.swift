import Foundation
import LatheModels
import LatheTemplates
import XCTest

/// The official `openai` Python client against the server (skipped when `pip install openai` has not been run).
final class OpenAIClientTests: XCTestCase {
    func testTheOpenAIClientListsCompletesAndStreamsWithUsage() throws {
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", "import openai"]
        try python.run(); python.waitUntilExit()
        guard python.terminationStatus == 0 else { throw XCTSkip("the openai Python package is not installed (pip install openai)") }

        let server = try ServerFixture()
        try server.start()
        defer { server.stop() }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/openai_client_check.py")
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        check.arguments = ["python3", script.path, "--base-url", "http://127.0.0.1:\(server.port)/v1", "--prompt", "the tin",
                           "--max-tokens", "12"]
        let output = Pipe()
        check.standardOutput = output
        try check.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        check.waitUntilExit()
        XCTAssertEqual(check.terminationStatus, 0)
        let result = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(result["models"] as? [String], ["tiny", "alpha", "beta"])
        XCTAssertEqual(result["unknown_model_error"] as? Int, 404)
        let answers = try XCTUnwrap(result["answers"] as? [String: [String: Any]])
        for model in ["tiny", "alpha", "beta"] {
            let lm = try LanguageModel.load(server.folder.modelPath)
            if model != "tiny" { try PEFTAdapter.load(server.adaptersDirectory.appendingPathComponent(model), into: lm.model) }
            let expected = try lm.generate(try lm.chatTokens([ChatMessage(role: "user", content: "the tin")], addGenerationPrompt: true),
                                           sampling: SamplingOptions(), maxTokens: 12)
            let answer = try XCTUnwrap(answers[model])
            XCTAssertEqual(answer["chat"] as? String, expected, model)
            XCTAssertEqual(answer["streamed"] as? String, expected, model)
            XCTAssertEqual(answer["streamed_finish"] as? String, answer["chat_finish"] as? String)
            XCTAssertEqual(answer["streamed_usage"] as? [String: Int], answer["chat_usage"] as? [String: Int])
            XCTAssertNotNil(answer["completion_tokens"] as? Int)
        }
    }
}
