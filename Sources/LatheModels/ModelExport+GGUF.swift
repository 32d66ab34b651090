import Foundation
import LatheFormats
import LatheTokenizers

extension ModelExport {
    /// The model as a GGUF file that llama.cpp runs: metadata as `ggufMetadata` builds it, tensors in the types
    /// `GGUFQuantizationMix` gives `fileType` (Q/K rows in ggml's RoPE layout for llama).
    static func writeGGUF(_ lm: LanguageModel, fileType: LlamaFileType, to url: URL) throws {
        let model = lm.model
        model.expandWeights()
        var source: GGUFFile?
        if case .gguf(let file) = lm.files { source = file }
        var writer = try GGUFWriter(alignment: source?.alignment ?? GGUFFile.defaultAlignment)
        for (key, value) in try ggufMetadata(lm, fileType: fileType) { try writer.setValue(value, forKey: key) }
        let ggufName = Dictionary(uniqueKeysWithValues: (source?.tensors ?? []).compactMap { t in
            GGUFWeightSource.huggingFaceName(ofGGUF: t.name, family: model.config.family).map { ($0, t.name) } })
        let mix = GGUFQuantizationMix(fileType: fileType, layerCount: model.config.layerCount,
                                      tiedEmbeddings: model.config.tieWordEmbeddings)
        for p in model.parameters {
            let name = ggufName[p.name] ?? GGUFWeightSource.ggufName(ofHuggingFace: p.name, family: model.config.family)
            var values = p.tensor.array
            if let heads = model.config.family.permutedHeads(of: p.name, config: model.config) {
                values.withUnsafeMutableBufferPointer { GGUFWeightSource.permuteRows($0, rows: p.shape[0], heads: heads, toGGML: true) }
            }
            let offset = model.config.family.ggufStoredOffset(of: p.name)
            if offset != 0 { values = values.map { $0 + offset } }
            let dimensions = Array(p.shape.reversed())
            try writer.addTensor(name: name, dimensions: dimensions, values: values,
                                 type: mix.type(ofTensor: name, dimensions: dimensions))
        }
        if let factors = model.config.ropeFrequencyFactors {
            try writer.addTensor(name: "rope_freqs.weight", dimensions: [factors.count], values: factors, type: .f32)
        }
        try writer.write(to: url)
    }

    /// The GGUF metadata of the exported file, in order: a GGUF source's own keys, or for a Hugging Face folder
    /// the keys llama.cpp's converter writes from config.json and the tokenizer; then `general.file_type` (llama.h's
    /// LLAMA_FTYPE), `general.quantization_version` and, where the chat template ends a turn with another token
    /// than EOS, `tokenizer.ggml.eot_token_id`, so that llama.cpp stops there.
    static func ggufMetadata(_ lm: LanguageModel, fileType: LlamaFileType) throws -> [(String, GGUFValue)] {
        var entries: [(String, GGUFValue)]
        switch lm.files {
        case .gguf(let source):
            entries = source.metadataKeys.filter { $0 != "general.alignment" }.compactMap { key in
                source.metadata[key].map { (key, $0) }
            }
        case .huggingFace(let folder):
            entries = try huggingFaceMetadata(lm, name: folder.url.lastPathComponent)
        }
        func set(_ key: String, _ value: GGUFValue) {
            if let index = entries.firstIndex(where: { $0.0 == key }) { entries[index].1 = value } else { entries.append((key, value)) }
        }
        set("general.file_type", .uint32(fileType.rawValue))
        set("general.quantization_version", .uint32(2))  // ggml's GGML_QNT_VERSION
        if let endOfTurn = endOfTurnTokenID(lm), endOfTurn != lm.tokenizer.eosTokenID,
           !entries.contains(where: { $0.0 == "tokenizer.ggml.eot_token_id" }) {
            set("tokenizer.ggml.eot_token_id", .uint32(UInt32(endOfTurn)))
        }
        return entries
    }

    /// What convert_hf_to_gguf.py writes for a Hugging Face folder: the architecture keys (the shared ones, then the
    /// family's) and the tokenizer (`Tokenizer.ggufMetadata`: gpt2 or llama, tokens padded to the embedding's rows,
    /// token types, scores, merges, BOS/EOS, chat template).
    static func huggingFaceMetadata(_ lm: LanguageModel, name: String) throws -> [(String, GGUFValue)] {
        let c = lm.model.config
        let source = lm.files.url.path
        guard c.ropeLlama3Scaling == nil else {
            throw ModelError.invalidConfiguration(file: source, message: "rope_scaling llama3 is not written to GGUF yet "
                                                  + "(its rope_freqs.weight); export this model with --format safetensors")
        }
        let a = c.family.ggufArchitecture(of: c) + "."
        func count(_ value: Int) -> GGUFValue { .uint32(UInt32(value)) }
        var entries: [(String, GGUFValue)] = [
            ("general.architecture", .string(String(a.dropLast()))), ("general.type", .string("model")),
            ("general.name", .string(name)),
            (a + "block_count", count(c.layerCount)), (a + "context_length", count(c.maxPositions)),
            (a + "embedding_length", count(c.hiddenSize)), (a + "feed_forward_length", count(c.intermediateSize)),
            (a + "attention.head_count", count(c.headCount)), (a + "attention.head_count_kv", count(c.kvHeadCount)),
            (a + "rope.freq_base", .float32(Float(c.ropeTheta))),
            (a + "attention.layer_norm_rms_epsilon", .float32(c.rmsNormEpsilon)),
            (a + "attention.key_length", count(c.headDim)), (a + "attention.value_length", count(c.headDim)),
            (a + "vocab_size", count(c.vocabularySize)), (a + "rope.dimension_count", count(c.headDim)),
        ] + c.family.ggufFields(of: c).map { (a + $0.0, $0.1) }
        do {
            var tokenizer = try lm.tokenizer.ggufMetadata(architecture: String(a.dropLast()))
            tokenizer.padVocabulary(to: c.vocabularySize)
            entries += tokenizer.ggufEntries
        } catch let error as TokenizerError {
            throw ModelError.invalidConfiguration(file: source, message: "its tokenizer cannot be written to GGUF: "
                                                  + "\(error); export this model with --format safetensors")
        }
        if let template = lm.chatTemplate { entries.append(("tokenizer.chat_template", .string(template.source))) }
        return entries
    }
}
