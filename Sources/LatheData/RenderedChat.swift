import Foundation
import LatheModels
import LatheTemplates

/// A row that cannot be rendered for training (SFT or preference), naming it as "file:line".
public struct RowRenderError: Error, CustomStringConvertible, Equatable {
    public let source: String
    public let message: String
    public var description: String { "\(source): \(message)" }
}

/// A conversation rendered through a chat template: the template's text and its token ids.
struct RenderedChat {
    let text: String
    let ids: [Int]

    /// As `LanguageModel.chatTokens` and transformers' `apply_chat_template(tokenize=True)`: the template writes any
    /// BOS itself, special tokens in the text are parsed.
    init(_ messages: [ChatMessage], template: ChatTemplate?, model: LanguageModel, addGenerationPrompt: Bool,
         source: String) throws {
        guard let template else {
            throw RowRenderError(source: source, message:
                "\(model.name) has no chat template for this conversation; give the row as plain text instead of messages")
        }
        do {
            text = try template.render(messages: messages, addGenerationPrompt: addGenerationPrompt,
                                       bosToken: model.bosToken, eosToken: model.eosToken)
        } catch {
            throw RowRenderError(source: source, message: "the chat template failed on this conversation: \(error)")
        }
        ids = model.tokenizer.encode(text, addSpecialTokens: false)
    }
}

/// The number of leading ids `a` and `b` have in common.
func commonPrefixCount(_ a: [Int], _ b: [Int]) -> Int {
    zip(a, b).prefix { $0.0 == $0.1 }.count
}
