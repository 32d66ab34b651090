import Foundation
import LatheFormats
import LatheTokenizers
import LatheTemplates

/// What `lathe export` writes: a GGUF file (llama.cpp), a Hugging Face folder (transformers), or an Ollama folder.
public enum ExportFormat: String, CaseIterable, Sendable {
    case gguf, safetensors, ollama
}

/// Writes a model's current weights (after full fine-tuning or merging adapters): as a GGUF file (Q/K rows
/// permuted back into ggml's RoPE layout, tensors in a llama-quantize mixture), as a Hugging Face folder with
/// `model.safetensors`, or as an Ollama folder, from either kind of source.
public enum ModelExport {
    /// Writes a new model as a Hugging Face folder: config.json, model.safetensors and the tokenizer files of
    /// `tokenizerFolder` (tokenizer.json, tokenizer_config.json), so that Lathe and transformers can load it.
    public static func writeNewModel(_ model: DecoderModel, tokenizerFolder: URL, bosTokenID: Int?, eosTokenID: Int?,
                                     to folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try AtomicFileWriter.write(try model.config.huggingFaceJSON(bosTokenID: bosTokenID, eosTokenID: eosTokenID),
                                   to: folder.appendingPathComponent("config.json"))
        let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json"].map { tokenizerFolder.appendingPathComponent($0) }
        try writeSafetensorsFolder(model, to: folder, dtype: .f32,
                                   copying: tokenizerFiles.filter { FileManager.default.fileExists(atPath: $0.path) })
    }

    /// Writes into `folder` in the format the model came from (GGUF tensors in `fileType`'s mixture) and returns
    /// the path of the model file.
    @discardableResult
    public static func write(_ lm: LanguageModel, to folder: URL, fileType: LlamaFileType = .f32) throws -> URL {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        switch lm.files {
        case .gguf:
            let url = folder.appendingPathComponent("model.gguf")
            try writeGGUF(lm, fileType: fileType, to: url)
            return url
        case .huggingFace:
            return try writeHuggingFaceFolder(lm, dtype: .f32, to: folder)
        }
    }

    /// `lathe export`: `lm` (its adapters merged already) as `format`: a GGUF file at `output`, or a folder at
    /// `output` (Hugging Face: `fileType` F32, F16 or BF16; Ollama: model.gguf and a Modelfile). Returns the files
    /// written, the model file first.
    public static func export(_ lm: LanguageModel, as format: ExportFormat, fileType: LlamaFileType,
                              to output: URL) throws -> [URL] {
        switch format {
        case .gguf:
            try FileManager.default.createDirectory(at: output.deletingLastPathComponent(), withIntermediateDirectories: true)
            try writeGGUF(lm, fileType: fileType, to: output)
            return [output]
        case .safetensors:
            guard let dtype = safetensorsDType(fileType) else {
                throw ModelError.invalidInput("--quantize \(fileType) cannot be stored in safetensors for transformers: "
                                              + "give F32, F16 or BF16 (or --format gguf for quantized types)")
            }
            try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
            let model = try writeHuggingFaceFolder(lm, dtype: dtype, to: output)
            let files = try FileManager.default.contentsOfDirectory(at: output, includingPropertiesForKeys: nil)
            return [model] + files.filter { $0.lastPathComponent != model.lastPathComponent }.sorted { $0.path < $1.path }
        case .ollama:
            try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
            let model = output.appendingPathComponent("model.gguf")
            try writeGGUF(lm, fileType: fileType, to: model)
            let modelfile = output.appendingPathComponent("Modelfile")
            try AtomicFileWriter.write(Data(try OllamaModelfile(lm, modelPath: "./model.gguf").text.utf8), to: modelfile)
            return [model, modelfile]
        }
    }

    static func safetensorsDType(_ fileType: LlamaFileType) -> SafetensorsDType? {
        switch fileType {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        default: return nil
        }
    }

    /// model.safetensors (Hugging Face names) plus copies of `files` (configuration, tokenizer), skipping a file
    /// that is already the destination (writing over the folder the model came from).
    @discardableResult
    static func writeSafetensorsFolder(_ model: DecoderModel, to folder: URL, dtype: SafetensorsDType,
                                       copying files: [URL]) throws -> URL {
        model.expandWeights()
        var writer = SafetensorsWriter(metadata: ["format": "pt"])
        for p in model.parameters {
            try writer.addTensor(name: p.name, dimensions: p.shape, values: p.tensor.array, dtype: dtype)
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

    /// The special token the chat template writes right after an assistant's answer (ChatML's `<|im_end|>`), if
    /// the model has a template and it writes one.
    static func endOfTurnTokenID(_ lm: LanguageModel) -> Int? {
        let answer = "\u{1F}lathe-answer\u{1F}"
        guard let rendered = try? lm.renderChat([ChatMessage(role: "user", content: "hi"),
                                                 ChatMessage(role: "assistant", content: answer)], addGenerationPrompt: false),
              let end = rendered.range(of: answer)?.upperBound else { return nil }
        let after = rendered[end...]
        return lm.tokenizer.addedTokens.filter { $0.isSpecial && after.hasPrefix($0.content) }
            .max { $0.content.count < $1.content.count }?.id
    }
}
