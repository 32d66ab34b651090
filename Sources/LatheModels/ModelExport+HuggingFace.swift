import Foundation
import LatheFormats
import LatheTokenizers

extension ModelExport {
    /// A Hugging Face folder that transformers loads: model.safetensors in `dtype`, config.json, tokenizer.json,
    /// tokenizer_config.json (with the chat template) and generation_config.json — copied from a Hugging Face
    /// source, built from the GGUF metadata for a GGUF source. Returns the path of model.safetensors.
    static func writeHuggingFaceFolder(_ lm: LanguageModel, dtype: SafetensorsDType, to folder: URL) throws -> URL {
        let config = lm.model.config
        let generationConfig = folder.appendingPathComponent("generation_config.json")
        switch lm.files {
        case .huggingFace(let source):
            let jinja = source.url.appendingPathComponent("chat_template.jinja")
            let files = [source.configURL, source.tokenizerURL, source.tokenizerConfigURL, source.generationConfigURL,
                         FileManager.default.fileExists(atPath: jinja.path) ? jinja : nil].compactMap { $0 }
            let url = try writeSafetensorsFolder(lm.model, to: folder, dtype: dtype, copying: files)
            if source.generationConfigURL == nil { try AtomicFileWriter.write(try generationConfigJSON(lm), to: generationConfig) }
            return url
        case .gguf(let source):
            let tokenizer = lm.tokenizer
            func text(_ id: Int?) -> String? { id.flatMap(tokenizer.tokenText) }
            do {
                try tokenizer.save(to: folder, config: TokenizerConfigOptions(
                    bosToken: text(tokenizer.bosTokenID), eosToken: text(tokenizer.eosTokenID),
                    modelMaxLength: config.maxPositions, chatTemplate: lm.chatTemplate?.source))
            } catch let error as TokenizerError {
                throw ModelError.invalidConfiguration(file: source.url.path, message: "its tokenizer (tokenizer.ggml.*) "
                                                      + "cannot be written as tokenizer.json: \(error)")
            }
            try AtomicFileWriter.write(try config.huggingFaceJSON(bosTokenID: tokenizer.bosTokenID, eosTokenID: tokenizer.eosTokenID),
                                       to: folder.appendingPathComponent("config.json"))
            try AtomicFileWriter.write(try generationConfigJSON(lm), to: generationConfig)
            return try writeSafetensorsFolder(lm.model, to: folder, dtype: dtype, copying: [])
        }
    }

    /// generation_config.json: BOS and every token that ends an answer (EOS, the template's end of turn), which
    /// transformers' `generate` stops at.
    static func generationConfigJSON(_ lm: LanguageModel) throws -> Data {
        let stops = lm.stopTokenIDs.union(endOfTurnTokenID(lm).map { [$0] } ?? []).sorted()
        var object: [String: JSONValue] = ["_from_model_config": .bool(false)]
        if let bos = lm.tokenizer.bosTokenID { object["bos_token_id"] = .number(Double(bos)) }
        if !stops.isEmpty {
            object["eos_token_id"] = stops.count == 1 ? .number(Double(stops[0])) : .array(stops.map { .number(Double($0)) })
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(JSONValue.object(object))
    }
}
