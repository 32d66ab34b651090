import ArgumentParser
import Foundation
import XCTest
@testable import LatheCLI
import LatheModels
import LatheTemplates
import LatheTokenizers

/// `lathe tokenizer train`: flags, corpus files, and a run of the built binary.
final class TokenizerCommandTests: XCTestCase {
    func testFlagsParseAndBadValuesAreRejectedBeforeRunning() throws {
        let command = try LatheCommand.parseAsRoot(["tokenizer", "train", "--input", "c.txt", "--vocab-size", "512",
                                                    "--output", "out", "--special-tokens", "<s>", "</s>"])
        let train = try XCTUnwrap(command as? TokenizerTrainCommand)
        XCTAssertEqual(train.specialTokens, ["<s>", "</s>"])
        XCTAssertEqual(train.minimumFrequency, 2)
        XCTAssertEqual(train.configOptions.eosToken, "<s>")
        XCTAssertNil(train.configOptions.chatTemplate)
        let chat = try XCTUnwrap(LatheCommand.parseAsRoot(["tokenizer", "train", "--input", "c", "--vocab-size", "300",
                                                           "--output", "o", "--chat-template", "chatml"])
                                 as? TokenizerTrainCommand)
        XCTAssertEqual(chat.configOptions.eosToken, "<|im_end|>")
        XCTAssertEqual(chat.configOptions.chatTemplate, TokenizerConfigOptions.chatMLTemplate)

        let base = ["tokenizer", "train", "--input", "c.txt", "--output", "o"]
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(base))  // --vocab-size is required
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(base + ["--vocab-size", "258"])) { error in
            XCTAssertTrue(LatheCommand.message(for: error).contains("at least 259"), LatheCommand.message(for: error))
        }
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(base + ["--vocab-size", "300", "--min-frequency", "-1"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(base + ["--vocab-size", "300", "--pre-tokenizer", "bert"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(base + ["--vocab-size", "300", "--chat-template", "chatml",
                                                                  "--special-tokens", "<s>"])) { error in
            XCTAssertTrue(LatheCommand.message(for: error).contains("<|im_start|>"), LatheCommand.message(for: error))
        }
    }

    func testCorpusFilesGiveDocumentsAndBadLinesNameFileAndLine() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let jsonl = folder.appendingPathComponent("corpus.jsonl")
        try write("{\"text\": \"first\"}\n\n{\"text\": \"second\\nline\"}\n", to: jsonl)
        XCTAssertEqual(try TrainingCorpus.documents(at: jsonl), ["first", "second\nline"])
        let text = folder.appendingPathComponent("corpus.txt")
        try write("one\ntwo\n", to: text)
        XCTAssertEqual(try TrainingCorpus.documents(at: text), ["one\ntwo\n"])

        try write("{\"text\": \"fine\"}\n{\"body\": \"no text\"}\n", to: jsonl)
        XCTAssertThrowsError(try TrainingCorpus.documents(at: jsonl)) { error in
            XCTAssertTrue("\(error)".hasSuffix("corpus.jsonl:2: expected an object with a \"text\" field"), "\(error)")
        }
        try write("{\"text\": \"fine\"}\n{\"text\": \"cut\n", to: jsonl)
        XCTAssertThrowsError(try TrainingCorpus.documents(at: jsonl)) { error in
            XCTAssertTrue("\(error)".contains("corpus.jsonl:2: invalid JSON"), "\(error)")
        }
        XCTAssertThrowsError(try TrainingCorpus.documents(at: folder.appendingPathComponent("absent.txt"))) { error in
            XCTAssertTrue("\(error)".contains("absent.txt: cannot read the file"), "\(error)")
        }
    }

    func testTrainsWithTheBinaryAndTheFolderLoadsAsAModelTokenizer() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let corpus = folder.appendingPathComponent("corpus.jsonl")
        let lines = (0..<40).map { "{\"text\": \"the theory of thin things number \($0) is thought through\"}" }
        try write(lines.joined(separator: "\n"), to: corpus)
        let output = folder.appendingPathComponent("tok")
        let result = try LatheProcess.run(["tokenizer", "train", "--input", corpus.path, "--vocab-size", "280",
                                           "--output", output.path, "--chat-template", "chatml"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("vocabulary 280 tokens"), result.stdout)
        XCTAssertTrue(result.stderr.contains("read 40 documents"), result.stderr)
        let tokenizer = try Tokenizer(huggingFaceFolder: output)
        XCTAssertEqual(tokenizer.vocabularySize, 280)
        XCTAssertEqual(tokenizer.eosTokenID, 2)
        let text = "the theory of 17 things"
        XCTAssertEqual(tokenizer.decode(tokenizer.encode(text)), text)
        // The written template renders as transformers renders it from the committed ChatML folder.
        let reference = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/toktrain/heldout_ids.json")))
        let messages = try XCTUnwrap(reference["chat"]?.array).map { message in
            ChatMessage(role: message["role"]?.string ?? "", content: message["content"]?.string ?? "")
        }
        let config = try JSONValue.parse(Data(contentsOf: output.appendingPathComponent("tokenizer_config.json")))
        let template = try ChatTemplate(source: try XCTUnwrap(config["chat_template"]?.string))
        let rendered = try template.render(messages: messages, addGenerationPrompt: true, bosToken: "<|endoftext|>",
                                           eosToken: "<|im_end|>")
        XCTAssertEqual(rendered, reference["chat_rendered"]?.string)
        XCTAssertEqual(tokenizer.encode(rendered).filter { $0 < 3 }, [1, 2, 1, 2, 1])

        try write("", to: corpus)
        let empty = try LatheProcess.run(["tokenizer", "train", "--input", corpus.path, "--vocab-size", "300",
                                          "--output", output.path])
        XCTAssertEqual(empty.status, 1)
        XCTAssertTrue(empty.stderr.contains("no words to learn from"), empty.stderr)
    }
}
