import XCTest
@testable import LatheFormats

/// The mixture rule and the file types against llama.cpp (llama.h's LLAMA_FTYPE values; llama-quant.cpp's rules).
final class GGUFQuantizationMixTests: XCTestCase {
    func testFileTypesHaveLlamaCppsNumbersAndNames() {
        XCTAssertEqual(LlamaFileType.allCases.map(\.rawValue), [0, 1, 2, 3, 7, 8, 15, 17, 18, 32])
        XCTAssertEqual(LlamaFileType(name: "q4_k_m"), .q4_K_M)
        XCTAssertEqual(LlamaFileType(name: "BF16"), .bf16)
        XCTAssertNil(LlamaFileType(name: "q4_k"))
        XCTAssertEqual(LlamaFileType.q5_K_M.defaultType, .q5_K)
    }

    func testUseMoreBitsPicksLlamaCppsLayers() {
        // 30 layers (SmolLM2): the first 3, the last 4 (26...29) and every third from layer 5.
        let picked = (0..<30).filter { GGUFQuantizationMix.usesMoreBits(layer: $0, of: 30) }
        XCTAssertEqual(picked, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29])
    }

    func testRowsThatAreNotWholeBlocksFallBackAsLlamaCpp() {
        let mix = GGUFQuantizationMix(fileType: .q4_K_M, layerCount: 30, tiedEmbeddings: true)
        XCTAssertEqual(mix.type(ofTensor: "blk.4.attn_q.weight", dimensions: [576, 576]), .q5_0)
        XCTAssertEqual(mix.type(ofTensor: "blk.4.attn_q.weight", dimensions: [512, 576]), .q4_K)
        XCTAssertEqual(mix.type(ofTensor: "blk.0.attn_v.weight", dimensions: [576, 192]), .q8_0)  // Q6_K → Q8_0
        XCTAssertEqual(mix.type(ofTensor: "blk.4.attn_v.weight", dimensions: [576, 192]), .q5_0)
        XCTAssertEqual(mix.type(ofTensor: "blk.4.ffn_down.weight", dimensions: [1536, 576]), .q4_K)
        XCTAssertEqual(mix.type(ofTensor: "blk.5.ffn_down.weight", dimensions: [1536, 576]), .q6_K)
        XCTAssertEqual(mix.type(ofTensor: "token_embd.weight", dimensions: [576, 49152]), .q8_0)
        XCTAssertEqual(mix.type(ofTensor: "token_embd.weight", dimensions: [512, 49152]), .q6_K)
        XCTAssertEqual(mix.type(ofTensor: "blk.4.attn_q.weight", dimensions: [48, 48]), .f16)  // not even 32-blocks
        XCTAssertEqual(mix.type(ofTensor: "blk.4.attn_norm.weight", dimensions: [576]), .f32)
        let q5 = GGUFQuantizationMix(fileType: .q5_K_M, layerCount: 30, tiedEmbeddings: false)
        XCTAssertEqual(q5.type(ofTensor: "blk.4.ffn_up.weight", dimensions: [576, 1536]), .q5_1)  // Q5_K → Q5_1
        XCTAssertEqual(q5.type(ofTensor: "token_embd.weight", dimensions: [512, 49152]), .q5_K)   // untied: not the head
        XCTAssertEqual(q5.type(ofTensor: "output.weight", dimensions: [512, 49152]), .q6_K)
        let q8 = GGUFQuantizationMix(fileType: .q8_0, layerCount: 30, tiedEmbeddings: true)
        XCTAssertEqual(q8.type(ofTensor: "token_embd.weight", dimensions: [576, 49152]), .q8_0)
        let f16 = GGUFQuantizationMix(fileType: .f16, layerCount: 30, tiedEmbeddings: true)
        XCTAssertEqual(f16.type(ofTensor: "blk.0.attn_v.weight", dimensions: [48, 48]), .f16)
    }
}

/// Every tensor type of llama-quantize's own files of SmolLM2-135M (fixture llama_quantize_smollm2.json from
/// scripts/reference/llama_quantize_mix.py) is the one the mixture gives.
final class LlamaQuantizeMixTests: XCTestCase {
    struct Reference: Decodable {
        struct Tensor: Decodable { let dimensions: [Int]; let type: String }
        let source: String
        let types: [String: [String: Tensor]]
    }

    func testSmolLM2TypesAreLlamaQuantizes() throws {
        let reference = try Fixtures.decode(Reference.self, from: "llama_quantize_smollm2.json")
        XCTAssertEqual(Set(reference.types.keys), ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q4_K_M", "Q5_K_M", "Q6_K", "F16", "BF16"])
        for (name, tensors) in reference.types {
            let fileType = try XCTUnwrap(LlamaFileType(name: name))
            let mix = GGUFQuantizationMix(fileType: fileType, layerCount: 30, tiedEmbeddings: tensors["output.weight"] == nil)
            XCTAssertEqual(tensors.count, 272)
            for (tensor, info) in tensors {
                XCTAssertEqual("\(mix.type(ofTensor: tensor, dimensions: info.dimensions))", info.type, "\(name) \(tensor)")
            }
        }
    }
}
