import ArgumentParser
import Foundation
import XCTest
@testable import LatheCLI
import LatheData
import LatheTestSupport

/// `lathe data` at the parse level and end to end on the built binary, in the exact forms external checks use.
final class DataCommandTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func testFlagsParseAndBadValuesAreRejectedBeforeRunning() throws {
        let split = try XCTUnwrap(LatheCommand.parseAsRoot(["data", "split", "--input", "F.jsonl", "--by", "user",
                                                            "--test-fraction", "0.2", "--seed", "5", "--output-dir", "D"])
                                  as? DataSplitCommand)
        XCTAssertEqual(split.by, "user")
        XCTAssertEqual(split.testFraction, 0.2)
        XCTAssertEqual(split.seed, 5)
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["data", "split", "--input", "F", "--output-dir", "D", "--test-fraction", "1.5"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["data", "split", "--input", "F", "--output-dir", "D", "--cutoff", "2024-01-01"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["data", "dedup", "--input", "F", "--output", "G", "--near", "1.2"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["data", "balance", "--input", "F", "--output", "G", "--by", "t"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["data", "convert", "--input", "F", "--output", "G", "--to", "sharegpt"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["data", "check"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["data", "dedup", "--input", "F", "--output", "G", "--bands", "4"]))
        XCTAssertThrowsError(try LatheCommand.parseAsRoot(["data", "dedup", "--input", "F", "--output", "G", "--near", "0.8",
                                                           "--bands", "20", "--rows", "7"]))  // 140 > 128 permutations
    }

    func testCheckPrintsFileLineMessageAndExitsOneOnErrors() throws {
        let good = folder.appendingPathComponent("good.jsonl"), bad = folder.appendingPathComponent("F.jsonl")
        try write("""
            {"prompt": "p", "completion": "c"}
            {"prompt": "", "completion": "c"}
            """, to: good)
        try write("""
            {"prompt": "p", "completion": "c"}
            {"prompt": "p"
            {"prompt": "p", "completion": 5}
            """, to: bad)
        let fine = try LatheProcess.run(["data", "check", good.path])
        XCTAssertEqual(fine.status, 0, fine.stderr)
        XCTAssertEqual(fine.stdout, "\(good.path):2: warning: field \"prompt\" is empty\n")
        XCTAssertEqual(try LatheProcess.run(["data", "check", "--strict", good.path]).status, 1)

        let process = Process()  // relative path, as `lathe data check F.jsonl` from the data's folder
        process.executableURL = LatheProcess.binary
        process.arguments = ["data", "check", "F.jsonl"]
        process.currentDirectoryURL = folder
        let out = Pipe()
        process.standardOutput = out
        process.standardError = Pipe()
        try process.run()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 1)
        XCTAssertEqual(stdout.split(separator: "\n"), [
            "F.jsonl:2: invalid JSON (The given data was not valid JSON.)",
            "F.jsonl:3: field \"completion\" must be a string, got 5",
        ])
    }

    func testDedupNearRemovesNearAndExactDuplicates() throws {
        let input = folder.appendingPathComponent("F.jsonl"), output = folder.appendingPathComponent("G.jsonl")
        let dropped = folder.appendingPathComponent("dropped.jsonl")
        let base = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty"
        let lines = [
            #"{"id": 1, "text": "\#(base)"}"#,
            #"{"id": 2, "text": "\#(base.uppercased())"}"#,                                           // exact after case
            #"{"id": 3, "text": "\#(base.replacingOccurrences(of: "twenty", with: "thirty"))"}"#,    // Jaccard 17/19
            #"{"id":4,"text":"something else entirely, not like the others at all"}"#,
        ]
        try write(lines.joined(separator: "\n") + "\n", to: input)
        let result = try LatheProcess.run(["data", "dedup", "--input", input.path, "--output", output.path, "--near", "0.8",
                                           "--dropped", dropped.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(try String(contentsOf: output, encoding: .utf8), lines[0] + "\n" + lines[3] + "\n")
        XCTAssertEqual(try String(contentsOf: dropped, encoding: .utf8), lines[1] + "\n" + lines[2] + "\n")
        XCTAssertTrue(result.stdout.hasPrefix("kept 2 of 4 rows: dropped 1 exact duplicates, 1 near-duplicates"), result.stdout)
        XCTAssertTrue(result.stdout.contains("kept \(input.path):1; dropped line 2 (exact), line 3 (0.89)"), result.stdout)
    }

    func testSplitByFieldWritesTrainAndTestWithoutLeakage() throws {
        let input = folder.appendingPathComponent("F.jsonl"), output = folder.appendingPathComponent("D")
        // Irregular spacing and key order: rows must come back byte for byte.
        let lines = (0..<60).map { i in i % 2 == 0 ? #"{"text":"row \#(i)",  "user": "u\#(i % 12)"}"# : #"{"user": "u\#(i % 12)", "text": "row \#(i)"}"# }
        try write(lines.joined(separator: "\n") + "\n", to: input)
        let result = try LatheProcess.run(["data", "split", "--input", input.path, "--by", "user", "--test-fraction", "0.2",
                                           "--seed", "7", "--output-dir", output.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let train = try String(contentsOf: output.appendingPathComponent("train.jsonl"), encoding: .utf8).split(separator: "\n").map(String.init)
        let test = try String(contentsOf: output.appendingPathComponent("test.jsonl"), encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual((train + test).sorted(), lines.sorted())
        XCTAssertEqual(test.count, 10)  // two of twelve users, five rows each
        func users(_ rows: [String]) throws -> Set<String> {
            Set(try rows.map { try XCTUnwrap(JSONValue.parse(Data($0.utf8))["user"]?.string) })
        }
        XCTAssertTrue(try users(train).isDisjoint(with: users(test)))
        XCTAssertTrue(result.stdout.contains("user: 10 keys in train, 2 in test, 0 on both sides."), result.stdout)
        let again = try LatheProcess.run(["data", "split", "--input", input.path, "--by", "user", "--test-fraction", "0.2",
                                          "--seed", "7", "--output-dir", output.path])
        XCTAssertEqual(again.stdout, result.stdout)
    }

    func testConvertToKTOUnpairsPairsAsTRLDoes() throws {
        let input = folder.appendingPathComponent("pairs.jsonl"), output = folder.appendingPathComponent("kto.jsonl")
        try write("""
            {"prompt": "The sky is", "chosen": " blue.", "rejected": " green.", "id": 1}
            {"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}], "id": 2}
            """, to: input)
        let result = try LatheProcess.run(["data", "convert", "--input", input.path, "--output", output.path, "--to", "kto",
                                           "--keep-fields"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("wrote 4 kto rows"), result.stderr)
        let rows = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").map { try JSONValue.parse(Data($0.utf8)) }
        func messages(_ pairs: [(String, String)]) -> JSONValue {
            .array(pairs.map { .object(["role": .string($0.0), "content": .string($0.1)]) })
        }
        XCTAssertEqual(rows, [
            .object(["prompt": .string("The sky is"), "completion": .string(" blue."), "label": .bool(true), "id": .number(1)]),
            .object(["prompt": .string("The sky is"), "completion": .string(" green."), "label": .bool(false), "id": .number(1)]),
            .object(["prompt": messages([("user", "Hi")]), "completion": messages([("assistant", "Hello!")]),
                     "label": .bool(true), "id": .number(2)]),
            .object(["prompt": messages([("user", "Hi")]), "completion": messages([("assistant", "Go away.")]),
                     "label": .bool(false), "id": .number(2)]),
        ])
        // The rows read back as KTO rows.
        XCTAssertEqual(try DatasetReader.read(output).map(\.format), [.kto, .kto, .kto, .kto])
        let refused = try LatheProcess.run(["data", "convert", "--input", output.path, "--output", input.path, "--to", "messages"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("\(output.path):1: cannot convert this kto row to messages"), refused.stderr)
    }

    func testStatsConvertAndBalanceRun() throws {
        let input = folder.appendingPathComponent("alpaca.jsonl"), output = folder.appendingPathComponent("messages.jsonl")
        try write("""
            {"instruction": "Add", "input": "2 and 2", "output": "4", "topic": "math"}
            {"instruction": "Name a colour", "output": "Blue", "topic": "art"}
            {"instruction": "Subtract", "input": "3 from 5", "output": "2", "topic": "math"}
            """, to: input)
        let converted = try LatheProcess.run(["data", "convert", "--input", input.path, "--output", output.path,
                                              "--to", "messages", "--keep-fields"])
        XCTAssertEqual(converted.status, 0, converted.stderr)
        let first = try JSONValue.parse(Data(try XCTUnwrap(String(contentsOf: output, encoding: .utf8).split(separator: "\n").first).utf8))
        XCTAssertEqual(first["topic"], .string("math"))
        XCTAssertEqual(first["messages"]?.array?.first?["content"], .string("Add\n\n2 and 2"))

        let stats = try LatheProcess.run(["data", "stats", output.path, "--label", "topic", "--json"])
        XCTAssertEqual(stats.status, 0, stats.stderr)
        let json = try JSONValue.parse(Data(stats.stdout.utf8))
        XCTAssertEqual(json["rows"], .number(3))
        XCTAssertEqual(json["format"], .string("messages"))
        XCTAssertEqual(json["labels"]?.array?.first?["label"], .string("math"))
        XCTAssertEqual(json["unit"], .string("characters"))

        let modelPath = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: modelPath))
        let tokens = try LatheProcess.run(["data", "stats", output.path, "--model", modelPath, "--max-length", "1", "--json"])
        XCTAssertEqual(tokens.status, 0, tokens.stderr)
        let tokenStats = try JSONValue.parse(Data(tokens.stdout.utf8))
        XCTAssertEqual(tokenStats["unit"], .string("tokens"))
        let lm = try LanguageModel.load(modelPath)
        let longest = try [("Add\n\n2 and 2", "4"), ("Name a colour", "Blue"), ("Subtract\n\n3 from 5", "2")].map { user, answer in
            try lm.chatTokens([ChatMessage(role: "user", content: user), ChatMessage(role: "assistant", content: answer)],
                              addGenerationPrompt: false).count
        }.max()
        XCTAssertEqual(tokenStats["total"]?["max"]?.int, longest)
        XCTAssertEqual(tokenStats["overMaxLength"], .number(3))

        let balanced = folder.appendingPathComponent("balanced.jsonl")
        let balance = try LatheProcess.run(["data", "balance", "--input", input.path, "--output", balanced.path,
                                            "--by", "topic", "--max-per-class", "1", "--seed", "1"])
        XCTAssertEqual(balance.status, 0, balance.stderr)
        XCTAssertTrue(balance.stdout.contains("math: 2 -> 1"), balance.stdout)
        XCTAssertEqual(try String(contentsOf: balanced, encoding: .utf8).split(separator: "\n").count, 2)
    }
}
