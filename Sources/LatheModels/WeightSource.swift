/// Where a model's weights come from, in Hugging Face naming (`model.layers.0.self_attn.q_proj.weight`),
/// whatever the file's own naming and layout.
public protocol WeightSource: CustomStringConvertible {
    /// Every tensor the source holds, in Hugging Face naming.
    var tensorNames: [String] { get }
    /// Writes the named tensor as float32 into `destination`, after checking it has exactly `shape`.
    func read(_ name: String, shape: [Int], into destination: UnsafeMutableBufferPointer<Float>) throws
    /// The named [rows, columns] weight in the file's own quantized blocks, in Hugging Face's row order; nil when the
    /// file stores it as plain floats (F32, F16, BF16), which `read` gives.
    func storedWeight(_ name: String, shape: [Int]) throws -> (any CompactWeight)?
}

extension WeightSource {
    public func storedWeight(_ name: String, shape: [Int]) throws -> (any CompactWeight)? { nil }
}

import LatheFormats
import LatheTensors

/// The weights of a Hugging Face folder (single or sharded safetensors), already in Hugging Face naming.
public struct SafetensorsWeightSource: WeightSource {
    public let folder: HFModelFolder
    public init(folder: HFModelFolder) { self.folder = folder }

    public var description: String { folder.url.path }
    public var tensorNames: [String] { folder.tensorNames }

    public func read(_ name: String, shape: [Int], into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard let (file, info) = folder.tensor(named: name) else {
            throw ModelError.missingWeight(file: folder.url.path, name: name)
        }
        guard info.dimensions == shape else {
            throw ModelError.wrongShape(file: file.url.path, name: name, expected: shape, found: info.dimensions)
        }
        let values = try file.floats(of: info)
        _ = destination.update(from: values)
    }
}

/// The weights of a GGUF file, seen in Hugging Face naming and layout: llama.cpp's converter renames every
/// tensor (the family's `ggufLayerNames`) and, for llama and mistral, permutes the rows of the Q and K projections
/// for ggml's RoPE (the family's `permutedHeads`), which this source undoes so that the model computes the same
/// function whichever file it came from.
public struct GGUFWeightSource: WeightSource {
    public let file: GGUFFile
    let config: DecoderConfiguration
    let ggufNameForHF: [String: String]

    public init(file: GGUFFile, config: DecoderConfiguration) {
        self.file = file
        self.config = config
        var map: [String: String] = [:]
        for tensor in file.tensors {
            if let hf = Self.huggingFaceName(ofGGUF: tensor.name, family: config.family) { map[hf] = tensor.name }
        }
        ggufNameForHF = map
    }

    public var description: String { file.url.path }
    public var tensorNames: [String] {
        // rope_freqs.weight is read into the configuration, not the weights.
        file.tensors.filter { $0.name != "rope_freqs.weight" }.map {
            Self.huggingFaceName(ofGGUF: $0.name, family: config.family) ?? "gguf:" + $0.name
        }
    }

    static let globalNames = ["token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                              "output.weight": "lm_head.weight"]

    /// `blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight`; nil for tensors with no HF counterpart.
    static func huggingFaceName(ofGGUF name: String, family: any ModelFamily) -> String? {
        if let global = globalNames[name] { return global }
        let parts = name.split(separator: ".")
        guard parts.count == 4, parts[0] == "blk", let layer = Int(parts[1]),
              let hf = family.ggufLayerNames[String(parts[2])] else { return nil }
        guard parts[3] == "weight" || parts[3] == "bias" else { return nil }
        return "model.layers.\(layer).\(hf).\(parts[3])"
    }

    /// `model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight`: the inverse of `huggingFaceName(ofGGUF:)`.
    static func ggufName(ofHuggingFace name: String, family: any ModelFamily) -> String {
        if let global = globalNames.first(where: { $0.value == name })?.key { return global }
        let parts = name.split(separator: ".")
        guard parts.count >= 4, parts[0] == "model", parts[1] == "layers" else { return name }
        let module = parts[3..<(parts.count - 1)].joined(separator: ".")
        let gguf = family.ggufLayerNames.first { $0.value == module }?.key ?? module
        return "blk.\(parts[2]).\(gguf).\(parts.last!)"
    }

    /// The named tensor, checked to have `shape` (in PyTorch's order).
    private func tensor(_ name: String, shape: [Int]) throws -> GGUFTensorInfo {
        guard let ggufName = ggufNameForHF[name], let tensor = file.tensor(named: ggufName) else {
            throw ModelError.missingWeight(file: file.url.path, name: name)
        }
        // ggml lists dimensions fastest first: [in, out] for a weight that PyTorch stores [out, in].
        let found = Array(tensor.dimensions.reversed())
        guard found == shape else { throw ModelError.wrongShape(file: file.url.path, name: name, expected: shape, found: found) }
        return tensor
    }

    private func permutedHeads(_ name: String) -> Int? { config.family.permutedHeads(of: name, config: config) }

    public func read(_ name: String, shape: [Int], into destination: UnsafeMutableBufferPointer<Float>) throws {
        try file.dequantize(try tensor(name, shape: shape), into: destination)
        if let heads = permutedHeads(name) { Self.permuteRows(destination, rows: shape[0], heads: heads, toGGML: false) }
        let offset = config.family.ggufStoredOffset(of: name)
        if offset != 0 { for i in destination.indices { destination[i] -= offset } }
    }

    public func storedWeight(_ name: String, shape: [Int]) throws -> (any CompactWeight)? {
        let tensor = try tensor(name, shape: shape)
        guard GGMLBlockWeight.holds(tensor) else { return nil }
        do {
            return try GGMLBlockWeight(type: tensor.type, rows: shape[0], columns: shape[1], bytes: file.rawBytes(of: tensor),
                                       rowOrder: permutedHeads(name).map { Self.ggmlRows(rows: shape[0], heads: $0) })
        } catch let error as FormatError {
            throw FormatError(path: file.url.path, problem: "tensor \(tensor.name): \(error.problem)", fix: error.fix)
        }
    }

    /// llama.cpp's converter permutes Q/K rows for ggml's RoPE: within each head of d rows, HF row j·d/2 + i is
    /// stored as row 2i + j. Element r of the result is the GGUF row that holds HF row r.
    static func ggmlRows(rows: Int, heads: Int) -> [Int] {
        let headRows = rows / heads, half = headRows / 2
        var order = Array(0..<rows)
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 { order[h * headRows + j * half + i] = h * headRows + 2 * i + j }
            }
        }
        return order
    }

    /// Moves whole rows of `values` into ggml's order (`toGGML`) or back to Hugging Face's (see `ggmlRows`).
    static func permuteRows(_ values: UnsafeMutableBufferPointer<Float>, rows: Int, heads: Int, toGGML: Bool) {
        let width = values.count / rows
        let copy = Array(values)
        for (hf, ggml) in ggmlRows(rows: rows, heads: heads).enumerated() {
            let (from, to) = toGGML ? (hf * width, ggml * width) : (ggml * width, hf * width)
            for c in 0..<width { values[to + c] = copy[from + c] }
        }
    }
}
