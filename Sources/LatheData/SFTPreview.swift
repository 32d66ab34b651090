import Foundation
import LatheModels

/// What training will see of one example: its ids in the trainer's batch, which tokens carry loss, and whether
/// every supervised answer ends with an end-of-sequence token (so that the tuned model learns to stop).
public struct SFTPreview: Encodable, Sendable {
    public let source: String
    public let ids: [Int]
    public let tokens: [String]
    /// Per token: does the loss include predicting it.
    public let supervised: [Bool]
    public let truncated: Bool
    /// Each supervised span ends with a stop token (EOS or an end-of-turn token).
    public let answersEndWithEOS: Bool

    enum CodingKeys: String, CodingKey {
        case source, ids, tokens, supervised, truncated, answersEndWithEOS = "answers_end_with_eos"
    }

    /// Renders `rows` with the trainer's own renderer and batch builder (one example per batch), so the ids
    /// shown are the ids trained on.
    public static func make(rows: [DatasetRow], renderer: SFTRenderer) throws -> [SFTPreview] {
        let builder = try BatchBuilder(batchSize: 1, layout: .padded(length: nil))
        let lm = renderer.model
        return try rows.map { row in
            let example = try renderer.render(row)
            let batch = try builder.batch([[example]])
            // The batch's inputs are the example's ids; its targets say which next tokens carry loss.
            let ids = batch.inputs
            let supervised = [false] + batch.targets.dropLast().map { $0 >= 0 }
            return SFTPreview(source: example.source, ids: ids,
                              tokens: ids.map { lm.tokenizer.decode([$0]) }, supervised: supervised,
                              truncated: example.truncated,
                              answersEndWithEOS: answersEndWithStopToken(ids: ids, supervised: supervised, model: lm))
        }
    }

    /// Each supervised span ends with a stop token, up to trailing whitespace (ChatML supervises the newline after
    /// <|im_end|>, as TRL does).
    public static func answersEndWithStopToken(ids: [Int], supervised: [Bool], model lm: LanguageModel) -> Bool {
        var t = 0
        while t < ids.count {
            guard supervised[t] else { t += 1; continue }
            var end = t
            while end + 1 < ids.count && supervised[end + 1] { end += 1 }
            var last = end
            while last >= t && !lm.stopTokenIDs.contains(ids[last])
                    && lm.tokenizer.decode([ids[last]]).allSatisfy(\.isWhitespace) { last -= 1 }
            if last < t || !lm.stopTokenIDs.contains(ids[last]) { return false }
            t = end + 1
        }
        return true
    }

    /// The text with supervised tokens in brackets, or coloured on a terminal.
    public func rendered(colour: Bool) -> String {
        var text = "", open = false
        for (token, isSupervised) in zip(tokens, supervised) {
            if isSupervised != open {
                text += colour ? (isSupervised ? "\u{1B}[32m" : "\u{1B}[0m") : (isSupervised ? "[[" : "]]")
                open = isSupervised
            }
            text += token
        }
        if open { text += colour ? "\u{1B}[0m" : "]]" }
        return text
    }
}
