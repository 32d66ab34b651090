import XCTest
@testable import LatheFormats
import LatheTestSupport

/// The real SmolLM2-135M-Instruct Q4_1 file, when installed (fixture smollm2.json holds gguf-py's values).
final class SmolLM2Tests: XCTestCase {
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

    func testMetadataAndTensorValuesMatchGGUFPy() throws {
        let gguf = try GGUFFile(url: try DefaultModelFile.url())
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
}
