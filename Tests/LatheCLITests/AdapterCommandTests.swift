import Foundation
import XCTest
import LatheModels

/// `lathe adapter convert` and `lathe adapter merge` on the built binary, called as the issue spells them.
final class AdapterCommandTests: XCTestCase {
    func testConvertAndMergeEndToEnd() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let peft = fixtures.appendingPathComponent("training/peft-tiny-llama").path
        let base = fixtures.appendingPathComponent("models/tiny-llama.gguf").path
        let gguf = folder.appendingPathComponent("lora.gguf").path, mlx = folder.appendingPathComponent("mlx").path
        let toGGUF = try LatheProcess.run(["adapter", "convert", "--input", peft, "--to", "gguf", "--output", gguf, "--model", base])
        XCTAssertEqual(toGGUF.status, 0, toGGUF.stderr)
        XCTAssertTrue(toGGUF.stdout.contains("peft → gguf: 6 linears"), toGGUF.stdout)
        let toMLX = try LatheProcess.run(["adapter", "convert", "--input", gguf, "--to", "mlx", "--output", mlx, "--model", base])
        XCTAssertEqual(toMLX.status, 0, toMLX.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: mlx + "/adapters.safetensors"))

        let merged = folder.appendingPathComponent("merged")
        let merge = try LatheProcess.run(["adapter", "merge", peft, mlx, "--weights", "0.5,-0.25", "--method", "svd", "--rank", "2",
                                          "--output", merged.path])
        XCTAssertEqual(merge.status, 0, merge.stderr)
        let result = try LoRAWeights(peftFolder: merged)
        XCTAssertEqual(result.config.rank, 2)
        XCTAssertEqual(result.pairs.count, 6)

        let noBase = try LatheProcess.run(["adapter", "convert", "--input", gguf, "--to", "peft", "--output", folder.appendingPathComponent("x").path])
        XCTAssertEqual(noBase.status, 1)
        XCTAssertTrue(noBase.stderr.contains("--model"), noBase.stderr)
        let badWeights = try LatheProcess.run(["adapter", "merge", peft, mlx, "--weights", "1", "--method", "cat", "--output", merged.path])
        XCTAssertNotEqual(badWeights.status, 0)
        XCTAssertTrue(badWeights.stderr.contains("one weight per adapter"), badWeights.stderr)
    }
}
