import Foundation

extension LanguageModel {
    /// The token batches are padded with and a sequence-classification head skips: the tokenizer's pad token
    /// (`tokenizer.ggml.padding_token_id`, or `pad_token` of tokenizer_config.json), else EOS, as TRL's
    /// RewardTrainer chooses it (`processing_class.pad_token or processing_class.eos_token`).
    public var padTokenID: Int? {
        switch files {
        case .gguf(let file):
            if let id = file.metadata["tokenizer.ggml.padding_token_id"]?.int { return id }
        case .huggingFace(let folder):
            if let url = folder.tokenizerConfigURL, let config = try? JSONValue.parse(Data(contentsOf: url)),
               let token = config["pad_token"]?.string ?? config["pad_token"]?["content"]?.string,
               let id = tokenizer.id(of: token) {
                return id
            }
        }
        return tokenizer.eosTokenID
    }
}
