/// The tensor types llama-quantize gives a dense llama-family model for one file type (src/llama-quant.cpp,
/// llama_tensor_get_type, of the llama.cpp that llama-cpp-python 0.3.36 vendors): norms and other 1-D tensors
/// F32; the output head (or a tied embedding) Q6_K, or Q8_0 when its rows are not whole blocks of the file's type;
/// for Q4_K_M and Q5_K_M, attn_v and ffn_down Q6_K in the layers `usesMoreBits` picks; then each tensor whose rows
/// are not whole blocks of its type falls back (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, else F16). Its rules for
/// 70B models, experts and Falcon are left out: Lathe has none of them.
public struct GGUFQuantizationMix: Sendable, Equatable {
    public let fileType: LlamaFileType
    public let layerCount: Int
    /// Whether the file has no output.weight, so that token_embd is also the head (and quantized as one).
    public let tiedEmbeddings: Bool

    public init(fileType: LlamaFileType, layerCount: Int, tiedEmbeddings: Bool) {
        self.fileType = fileType
        self.layerCount = layerCount
        self.tiedEmbeddings = tiedEmbeddings
    }

    /// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third one between.
    public static func usesMoreBits(layer: Int, of layers: Int) -> Bool {
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
    }

    /// The type of the tensor `name` with ggml dimensions `dimensions` (rows of `dimensions[0]` values).
    public func type(ofTensor name: String, dimensions: [Int]) -> GGMLType {
        guard dimensions.count >= 2, name.hasSuffix("weight"), !name.contains("_norm.weight") else { return .f32 }
        let defaultType = fileType.defaultType
        guard defaultType.blockSize > 1 else { return defaultType }  // F32, F16, BF16: no mixture
        let rowLength = dimensions[0]
        var type = defaultType
        if name == "output.weight" || (tiedEmbeddings && name == "token_embd.weight") {
            if rowLength % defaultType.blockSize != 0 { type = .q8_0 } else if defaultType != .q8_0 { type = .q6_K }
        } else if let layer = Self.layer(of: name), fileType == .q4_K_M || fileType == .q5_K_M,
                  name.contains("attn_v.weight") || name.contains("ffn_down"),
                  Self.usesMoreBits(layer: layer, of: layerCount) {
            type = .q6_K
        }
        return Self.fallback(type, rowLength: rowLength)
    }

    /// llama.cpp's `tensor_type_fallback` for rows that are not whole blocks of `type`.
    static func fallback(_ type: GGMLType, rowLength: Int) -> GGMLType {
        guard rowLength % type.blockSize != 0 else { return type }
        let smaller: GGMLType
        switch type {
        case .q4_K: smaller = .q5_0
        case .q5_K: smaller = .q5_1
        case .q6_K: smaller = .q8_0
        default: smaller = type
        }
        return rowLength % smaller.blockSize == 0 ? smaller : .f16
    }

    /// N of `blk.N.…`.
    static func layer(of name: String) -> Int? {
        guard name.hasPrefix("blk.") else { return nil }
        return Int(name.dropFirst(4).prefix { $0 != "." })
    }
}
