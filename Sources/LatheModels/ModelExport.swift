import Foundation
import LatheFormats

/// Writes a model's current weights (after full fine-tuning or merging adapters) in the format it came from:
/// a GGUF file beside its original metadata (Q/K rows permuted back into ggml's RoPE layout), or a Hugging Face
/// folder with `model.safetensors` and the original configuration and tokenizer files.
public enum ModelExport {
    /// Writes a new model as a Hugging Face folder: config.json, model.safetensors and the tokenizer files of
    /// `tokenizerFolder` (tokenizer.json, tokenizer_config.json), so that Lathe and transformers can load it.
    public static func writeNewModel(_ model: LlamaModel, tokenizerFolder: URL, bosTokenID: Int?, eosTokenID: Int?,
                                     to folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try AtomicFileWriter.write(try model.config.huggingFaceJSON(bosTokenID: bosTokenID, eosTokenID: eosTokenID),
                                   to: folder.appendingPathComponent("config.json"))
        let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json"].map { tokenizerFolder.appendingPathComponent($0) }
        try writeSafetensorsFolder(model, to: folder,
                                   copying: tokenizerFiles.filter { FileManager.default.fileExists(atPath: $0.path) })
    }

    /// model.safetensors (float32, Hugging Face names) plus copies of `files` (configuration, tokenizer), skipping a
    /// file that is already the destination (writing over the folder the model came from).
    @discardableResult
    static func writeSafetensorsFolder(_ model: LlamaModel, to folder: URL, copying files: [URL]) throws -> URL {
        model.expandWeights()
        var writer = SafetensorsWriter(metadata: ["format": "pt"])
        for p in model.parameters {
            try writer.addTensor(name: p.name, dimensions: p.shape, values: p.tensor.array, dtype: .f32)
        }
        let url = folder.appendingPathComponent("model.safetensors")
        try writer.write(to: url)
        for file in files {
            let destination = folder.appendingPathComponent(file.lastPathComponent)
            if destination.standardizedFileURL == file.standardizedFileURL { continue }
            try? FileManager.default.removeItem(at: destination)
            try FileManager.default.copyItem(at: file, to: destination)
        }
        return url
    }

    /// Storage types for exported GGUF weights (norms always stay F32).
    public static let ggufTypes: [String: GGMLType] = ["f32": .f32, "f16": .f16, "bf16": .bf16, "q8_0": .q8_0]

    /// Writes into `folder` and returns the path of the model file.
    @discardableResult
    public static func write(_ lm: LanguageModel, to folder: URL, ggufType: GGMLType = .f32) throws -> URL {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        switch lm.files {
        case .gguf(let source):
            let url = folder.appendingPathComponent("model.gguf")
            try writeGGUF(lm.model, metadataFrom: source, to: url, type: ggufType)
            return url
        case .huggingFace(let source):
            return try writeSafetensorsFolder(lm.model, to: folder, copying: [source.configURL, source.tokenizerURL,
                                              source.tokenizerConfigURL, source.generationConfigURL].compactMap { $0 })
        }
    }

    static func writeGGUF(_ model: LlamaModel, metadataFrom source: GGUFFile, to url: URL, type: GGMLType) throws {
        model.expandWeights()
        var writer = try GGUFWriter(alignment: source.alignment)
        for key in source.metadataKeys where key != "general.alignment" {
            if let value = source.metadata[key] { try writer.setValue(value, forKey: key) }
        }
        let architecture = try source.requiredString("general.architecture")
        let permuted = architecture == "llama" || architecture == "mistral"
        let ggufName = Dictionary(uniqueKeysWithValues: source.tensors.compactMap { t in
            GGUFWeightSource.huggingFaceName(ofGGUF: t.name).map { ($0, t.name) } })
        for p in model.parameters {
            let name = ggufName[p.name] ?? GGUFWeightSource.ggufName(ofHuggingFace: p.name)
            var values = p.tensor.array
            if permuted, p.name.contains("self_attn.q_proj") || p.name.contains("self_attn.k_proj") {
                let heads = p.name.contains("q_proj") ? model.config.headCount : model.config.kvHeadCount
                values.withUnsafeMutableBufferPointer { GGUFWeightSource.permuteRows($0, rows: p.shape[0], heads: heads, toGGML: true) }
            }
            let storage: GGMLType = p.shape.count == 1 || p.shape[1] % type.blockSize != 0 ? .f32 : type
            try writer.addTensor(name: name, dimensions: Array(p.shape.reversed()), values: values, type: storage)
        }
        if let factors = model.config.ropeFrequencyFactors {
            try writer.addTensor(name: "rope_freqs.weight", dimensions: [factors.count], values: factors, type: .f32)
        }
        try writer.write(to: url)
    }
}
