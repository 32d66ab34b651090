import Foundation
import XCTest
@testable import LatheCLI
import LatheFormats
import LatheTemplates
import LatheTensors
@testable import LatheModels
import LatheTestSupport

/// `lathe export` end to end on a tiny model built here (hidden 256, so that K-quant rows are whole blocks; 4
/// layers, so that llama.cpp's use_more_bits picks layers 2 and 3): every file type's tensors follow the mixture,
/// gguf-py reads each file and dequantizes every tensor to Lathe's values bit for bit (skipped without gguf-py),
/// `lathe logprobs` scores each file, and the safetensors and Ollama folders load back.
final class ExportCommandTests: XCTestCase {
    var folder: URL!
    var model: String!
    let text = #"{"text": "the theory of the tea and the thin ant on the thorn"}"#

    override func setUpWithError() throws {
        folder = try temporaryFolder()
        model = folder.appendingPathComponent("tiny.gguf").path
        try TinyModel.write(to: URL(fileURLWithPath: model), hidden: 256, layers: 4, heads: 4, kvHeads: 2, intermediate: 512)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func lathe(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let result = try LatheProcess.run(arguments)
        XCTAssertEqual(result.status, 0, "lathe \(arguments.joined(separator: " ")): \(result.stderr)", file: file, line: line)
        return result.stdout
    }

    /// `lathe logprobs` of `text` on `model`.
    func logprobs(_ model: String) throws -> [Double] {
        let input = folder.appendingPathComponent("text.jsonl")
        try write(text, to: input)
        let line = try JSONValue.parse(Data(try lathe(["logprobs", "--model", model, "--input", input.path]).utf8))
        return try XCTUnwrap(line["logprobs"]?.array).dropFirst().map { try XCTUnwrap($0.double) }
    }

    /// The types llama-quantize gives the tiny model's tensors, spelled out for a few of them per file type.
    static let expectedTypes: [LlamaFileType: [String: GGMLType]] = [
        .f32: ["token_embd.weight": .f32, "blk.0.attn_v.weight": .f32],
        .f16: ["token_embd.weight": .f16, "blk.3.ffn_down.weight": .f16, "blk.0.attn_norm.weight": .f32],
        .bf16: ["token_embd.weight": .bf16, "blk.1.attn_q.weight": .bf16],
        .q8_0: ["token_embd.weight": .q8_0, "blk.2.attn_v.weight": .q8_0],
        .q4_0: ["token_embd.weight": .q6_K, "blk.2.attn_v.weight": .q4_0, "blk.0.ffn_down.weight": .q4_0],
        .q4_1: ["token_embd.weight": .q6_K, "blk.3.ffn_up.weight": .q4_1],
        .q5_0: ["token_embd.weight": .q6_K, "blk.3.attn_k.weight": .q5_0],
        .q4_K_M: ["token_embd.weight": .q6_K, "blk.0.attn_v.weight": .q4_K, "blk.1.ffn_down.weight": .q4_K,
                  "blk.2.attn_v.weight": .q6_K, "blk.3.ffn_down.weight": .q6_K, "blk.3.attn_q.weight": .q4_K,
                  "output_norm.weight": .f32],
        .q5_K_M: ["token_embd.weight": .q6_K, "blk.1.attn_v.weight": .q5_K, "blk.2.ffn_down.weight": .q6_K,
                  "blk.3.attn_v.weight": .q6_K, "blk.0.ffn_gate.weight": .q5_K],
        .q6_K: ["token_embd.weight": .q6_K, "blk.0.attn_output.weight": .q6_K, "blk.1.ffn_norm.weight": .f32],
    ]

    func testEveryGGUFTypeFollowsTheMixtureReadsBackInGGUFPyAndScores() throws {
        let reference = try logprobs(model)
        let source = try GGUFFile(url: URL(fileURLWithPath: model))
        let mixes = LlamaFileType.allCases.map { GGUFQuantizationMix(fileType: $0, layerCount: 4, tiedEmbeddings: true) }
        for (fileType, mix) in zip(LlamaFileType.allCases, mixes) {
            let out = folder.appendingPathComponent("tiny-\(fileType).gguf")
            XCTAssertEqual(try lathe(["export", "--model", model, "--format", "gguf", "--quantize", "\(fileType)".lowercased(),
                                      "--output", out.path]), out.path + "\n")
            let file = try GGUFFile(url: out)
            XCTAssertEqual(file.metadata["general.file_type"], .uint32(fileType.rawValue), "\(fileType)")
            XCTAssertEqual(file.metadata["tokenizer.chat_template"]?.string, TinyModel.chatTemplate)
            XCTAssertEqual(file.tensors.count, 2 + 4 * 9)
            for tensor in file.tensors {
                XCTAssertEqual(tensor.type, mix.type(ofTensor: tensor.name, dimensions: tensor.dimensions), "\(fileType) \(tensor.name)")
            }
            for (name, type) in try XCTUnwrap(Self.expectedTypes[fileType]) {
                XCTAssertEqual(file.tensor(named: name)?.type, type, "\(fileType) \(name)")
            }
            try GGUFPy.assertDequantizesAsLathe(out)

            // Each tensor is its source within its type's rounding (relative RMS error); the random tiny model is too
            // chaotic for its log-probabilities to say much, so `lathe logprobs` must score each file, and the F32 one
            // exactly as its source.
            for tensor in file.tensors {
                let exported = try file.floats(of: tensor)
                let original = try source.floats(of: XCTUnwrap(source.tensor(named: tensor.name)))
                let error = zip(exported, original).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
                let energy = original.reduce(0) { $0 + Double($1 * $1) }
                let bound = try XCTUnwrap(Self.relativeErrorBound[tensor.type], "\(tensor.type)")
                XCTAssertLessThanOrEqual((error / energy).squareRoot(), bound, "\(fileType) \(tensor.name) (\(tensor.type))")
            }
            let scored = try logprobs(out.path)
            XCTAssertEqual(scored.count, reference.count)
            XCTAssertTrue(scored.allSatisfy { $0.isFinite && $0 <= 0 }, "\(fileType)")
            if fileType == .f32 { XCTAssertEqual(scored, reference) }
        }
    }

    /// Relative RMS rounding error of uniform values per type (4-bit levels ≈ 0.067, each further bit halves it).
    static let relativeErrorBound: [GGMLType: Double] = [
        .f32: 0, .f16: 5e-4, .bf16: 4e-3, .q8_0: 6e-3, .q6_K: 0.025, .q5_0: 0.045, .q5_K: 0.045, .q4_0: 0.09,
        .q4_1: 0.09, .q4_K: 0.09,
    ]

    func testAnAdapterIsMergedAsLatheMergeMergesIt() throws {
        let lm = try LanguageModel.load(model)
        let config = LoRAConfiguration(rank: 4, alpha: 8, targets: ["all-linear"])
        var random = SeededGenerator(seed: 5)
        for adapter in try lm.model.attachLoRA(config, seed: 2) {
            for i in 0..<adapter.b.tensor.count { adapter.b.tensor[i] = (random.nextUnitFloat() - 0.5) * 0.2 }
        }
        let adapter = folder.appendingPathComponent("adapter")
        try PEFTAdapter.save(lm.model, config: config, baseModel: model, to: adapter)
        let merged = folder.appendingPathComponent("merged")
        _ = try lathe(["merge", "--model", model, "--adapter", adapter.path, "--type", "f32", "--output", merged.path])
        let exported = folder.appendingPathComponent("exported.gguf")
        _ = try lathe(["export", "--model", model, "--adapter", adapter.path, "--format", "gguf", "--quantize", "F32",
                       "--output", exported.path])
        let a = try GGUFFile(url: merged.appendingPathComponent("model.gguf")), b = try GGUFFile(url: exported)
        XCTAssertEqual(a.tensors.map(\.name), b.tensors.map(\.name))
        for (x, y) in zip(a.tensors, b.tensors) { XCTAssertEqual(try a.floats(of: x), try b.floats(of: y), x.name) }
        let base = try GGUFFile(url: URL(fileURLWithPath: model))
        let query = try XCTUnwrap(base.tensor(named: "blk.0.attn_q.weight"))
        XCTAssertNotEqual(try base.floats(of: query), try b.floats(of: XCTUnwrap(b.tensor(named: "blk.0.attn_q.weight"))),
                          "the adapter changed nothing")
    }

    func testSafetensorsFolderFromAGGUFLoadsBackAndExportsToTheSameGGUF() throws {
        let hf = folder.appendingPathComponent("hf")
        _ = try lathe(["export", "--model", model, "--format", "safetensors", "--output", hf.path])
        for name in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: hf.appendingPathComponent(name).path), name)
        }
        let source = try LanguageModel.load(model), loaded = try LanguageModel.load(hf.path)
        guard case .huggingFace = loaded.files else { return XCTFail("the folder did not load as a Hugging Face folder") }
        XCTAssertEqual(loaded.chatTemplate?.source, TinyModel.chatTemplate)
        XCTAssertEqual(loaded.stopTokenIDs, source.stopTokenIDs)
        let chat = [ChatMessage(role: "user", content: "the answer? 42")]
        XCTAssertEqual(try loaded.chatTokens(chat, addGenerationPrompt: true), try source.chatTokens(chat, addGenerationPrompt: true))
        XCTAssertEqual(try logprobs(hf.path), try logprobs(model))

        // Back to GGUF from the folder: the metadata built from config.json and tokenizer.json is the source's.
        let back = folder.appendingPathComponent("back.gguf")
        _ = try lathe(["export", "--model", hf.path, "--format", "gguf", "--quantize", "f32", "--output", back.path])
        let original = try GGUFFile(url: URL(fileURLWithPath: model)), rebuilt = try GGUFFile(url: back)
        for key in ["tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id",
                    "tokenizer.ggml.eos_token_id", "tokenizer.ggml.pre", "tokenizer.chat_template", "llama.block_count",
                    "llama.embedding_length", "llama.attention.head_count_kv"] {
            XCTAssertEqual(rebuilt.metadata[key], original.metadata[key], key)
        }
        XCTAssertEqual(try logprobs(back.path), try logprobs(model))
        try GGUFPy.assertDequantizesAsLathe(back)
    }

    func testOllamaFolderHasTheModelAndAChatMLModelfile() throws {
        let out = folder.appendingPathComponent("ollama")
        _ = try lathe(["export", "--model", model, "--format", "ollama", "--quantize", "q8_0", "--output", out.path])
        let modelfile = try String(contentsOf: out.appendingPathComponent("Modelfile"), encoding: .utf8)
        XCTAssertEqual(modelfile, """
            FROM ./model.gguf
            TEMPLATE \"\"\"{{- range .Messages }}<|im_start|>{{ .Role }}
            {{ .Content }}<|im_end|>
            {{ end }}<|im_start|>assistant
            \"\"\"
            PARAMETER stop "<|im_end|>"

            """)
        XCTAssertEqual(try GGUFFile(url: out.appendingPathComponent("model.gguf")).metadata["general.file_type"],
                       .uint32(LlamaFileType.q8_0.rawValue))
        XCTAssertEqual(try logprobs(out.appendingPathComponent("model.gguf").path).count, try logprobs(model).count)

        // A template that is not ChatML is refused rather than written wrong.
        let hf = folder.appendingPathComponent("hf")
        _ = try lathe(["export", "--model", model, "--format", "safetensors", "--output", hf.path])
        let configURL = hf.appendingPathComponent("tokenizer_config.json")
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        config["chat_template"] = "{% for message in messages %}### {{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        let refused = try LatheProcess.run(["export", "--model", hf.path, "--format", "ollama", "--output",
                                            folder.appendingPathComponent("refused").path])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("ChatML"), refused.stderr)
    }

    func testBadFlagsAreRejectedBeforeRunning() throws {
        XCTAssertThrowsError(try ExportCommand.parse(["--format", "gguf", "--quantize", "q3_k_s", "--output", "x.gguf"]))
        XCTAssertThrowsError(try ExportCommand.parse(["--format", "safetensors", "--quantize", "q4_k_m", "--output", "x"]))
        XCTAssertThrowsError(try ExportCommand.parse(["--format", "onnx", "--output", "x"]))
        XCTAssertEqual(try ExportCommand.parse(["--format", "gguf", "--quantize", "Q4_K_M", "--output", "x"]).fileType, .q4_K_M)
        XCTAssertEqual(try ExportCommand.parse(["--format", "safetensors", "--output", "x"]).fileType, .f32)
    }
}

/// gguf-py (`pip install gguf`) reading a GGUF Lathe wrote.
enum GGUFPy {
    /// Every tensor (or those whose names start with one of `tensors`) dequantized by gguf-py equals Lathe's own
    /// dequantization of the same bytes, bit for bit; skips the test when gguf-py is not installed.
    static func assertDequantizesAsLathe(_ url: URL, tensors prefixes: [String] = [""], file: StaticString = #filePath,
                                         line: UInt = #line) throws {
        let values = url.deletingPathExtension().appendingPathExtension("gguf-py.f32")
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", """
            import json, sys
            import numpy as np
            try:
                from gguf import GGUFReader
                from gguf.quants import dequantize
            except ImportError:
                sys.exit(3)
            reader = GGUFReader(sys.argv[1])
            prefixes = json.loads(sys.argv[3])
            names = []
            with open(sys.argv[2], "wb") as out:
                for t in reader.tensors:
                    if not any(t.name.startswith(p) for p in prefixes):
                        continue
                    out.write(np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32).tobytes())
                    names.append([t.name, t.tensor_type.name, int(t.n_elements)])
            print(json.dumps(names))
            """, url.path, values.path, String(decoding: try JSONSerialization.data(withJSONObject: prefixes), as: UTF8.self)]
        let output = Pipe()
        python.standardOutput = output
        try python.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        python.waitUntilExit()
        if python.terminationStatus == 3 { throw XCTSkip("gguf-py is not installed (pip install gguf)") }
        XCTAssertEqual(python.terminationStatus, 0, "gguf-py could not read \(url.path)", file: file, line: line)
        let tensors = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [[Any]], file: file, line: line)
        let ggufFile = try GGUFFile(url: url)
        let chosen = ggufFile.tensors.filter { tensor in prefixes.contains { tensor.name.hasPrefix($0) } }
        XCTAssertFalse(chosen.isEmpty, file: file, line: line)
        XCTAssertEqual(tensors.map { $0[0] as? String }, chosen.map(\.name), file: file, line: line)
        let pyValues = try Data(contentsOf: values)
        var offset = 0
        for (entry, tensor) in zip(tensors, chosen) {
            XCTAssertEqual(entry[1] as? String, "\(tensor.type)", tensor.name, file: file, line: line)
            let lathe = try ggufFile.floats(of: tensor)
            let theirs = pyValues.subdata(in: offset..<offset + 4 * lathe.count).withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }
            offset += 4 * lathe.count
            let differing = zip(lathe, theirs).filter { $0.0.bitPattern != $0.1 }.count
            XCTAssertEqual(differing, 0, "\(tensor.name) (\(tensor.type)): \(differing) values differ from gguf-py", file: file, line: line)
        }
        XCTAssertEqual(offset, pyValues.count, file: file, line: line)
    }
}

/// The real model: SmolLM2-135M (hidden 576, not a multiple of 256) exported as Q4_K_M gets llama.cpp's fallback
/// types, reads back in gguf-py, and scores the text about as its Q4_1 source does.
final class ExportSmolLM2Tests: XCTestCase {
    func testQ4_K_MExportFallsBackAsLlamaCppAndScores() throws {
        let source = try DefaultModelFile.url()
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("smollm2-q4_k_m.gguf")
        let export = try LatheProcess.run(["export", "--model", source.path, "--format", "gguf", "--quantize", "q4_k_m",
                                           "--output", out.path])
        XCTAssertEqual(export.status, 0, export.stderr)
        let file = try GGUFFile(url: out)
        var counts: [GGMLType: Int] = [:]
        for tensor in file.tensors { counts[tensor.type, default: 0] += 1 }
        // 576-wide rows: Q4_K → Q5_0, the Q6_K of attn_v and the tied head → Q8_0; ffn_down (1536 wide) keeps
        // Q4_K and Q6_K (use_more_bits: 14 of 30 layers).
        XCTAssertEqual(counts, [.f32: 61, .q5_0: 166, .q8_0: 15, .q6_K: 14, .q4_K: 16])
        XCTAssertEqual(file.tensor(named: "blk.0.ffn_down.weight")?.type, .q6_K)
        XCTAssertEqual(file.tensor(named: "blk.4.ffn_down.weight")?.type, .q4_K)
        XCTAssertEqual(file.metadata["tokenizer.ggml.eos_token_id"], .uint32(2))
        // gguf-py on the tensors of one layer and one Q4_K ffn_down (every type of the file is among them): on all
        // 135M weights it takes most of a minute.
        try GGUFPy.assertDequantizesAsLathe(out, tensors: ["blk.0.", "blk.4.ffn_down.weight"])

        let input = folder.appendingPathComponent("text.jsonl")
        try write(#"{"text": "The capital of France is Paris. It is known for the Eiffel Tower and its museums."}"#, to: input)
        func meanLogprob(_ model: String) throws -> Double {
            let result = try LatheProcess.run(["logprobs", "--model", model, "--input", input.path])
            XCTAssertEqual(result.status, 0, result.stderr)
            let values = try XCTUnwrap(JSONValue.parse(Data(result.stdout.utf8))["logprobs"]?.array).dropFirst().compactMap(\.double)
            return values.reduce(0, +) / Double(values.count)
        }
        let (before, after) = (try meanLogprob(source.path), try meanLogprob(out.path))
        XCTAssertEqual(after, before, accuracy: 0.1, "mean log-probability \(before) (Q4_1 source) against \(after) (Q4_K_M)")
    }
}
