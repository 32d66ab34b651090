import Foundation
import LatheRemote

/// The judge's prompts, in the style of MT-Bench (Zheng et al., 2023): single-answer grading ends with
/// `Rating: [[N]]`, pairwise comparison with `[[A]]`, `[[B]]` or `[[C]]` (tie).
public enum JudgePrompts {
    public static let defaultRubric = """
        Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, \
        and level of detail of the response.
        """

    static let system = "You are a helpful assistant."

    /// Messages asking for a 1–10 rating of one answer.
    public static func grading(prompt: String, answer: String, rubric: String) -> [ChatCompletionMessage] {
        let user = """
            [Instruction]
            Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant \
            to the user question displayed below. \(rubric) Begin your evaluation by providing a short explanation. \
            Be as objective as possible. After providing your explanation, you must rate the response on a scale of \
            1 to 10 by strictly following this format on the last line: "Rating: [[rating]]", for example: "Rating: [[5]]".

            [Question]
            \(prompt)

            [The Start of Assistant's Answer]
            \(answer)
            [The End of Assistant's Answer]
            """
        return [ChatCompletionMessage(role: "system", content: system), ChatCompletionMessage(role: "user", content: user)]
    }

    /// Messages asking which of two answers, shown as A and B, is better.
    public static func pairwise(prompt: String, answerA: String, answerB: String, rubric: String) -> [ChatCompletionMessage] {
        let instruction = """
            Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants \
            to the user question displayed below. You should choose the assistant that follows the user's instructions \
            and answers the user's question better. \(rubric) Begin your evaluation by comparing the two responses and \
            provide a short explanation. Avoid any position biases and ensure that the order in which the responses \
            were presented does not influence your decision. Do not allow the length of the responses to influence \
            your evaluation. Do not favor certain names of the assistants. Be as objective as possible. After providing \
            your explanation, output your final verdict by strictly following this format on the last line: "[[A]]" if \
            assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.
            """
        let user = """
            [User Question]
            \(prompt)

            [The Start of Assistant A's Answer]
            \(answerA)
            [The End of Assistant A's Answer]

            [The Start of Assistant B's Answer]
            \(answerB)
            [The End of Assistant B's Answer]
            """
        return [ChatCompletionMessage(role: "system", content: instruction), ChatCompletionMessage(role: "user", content: user)]
    }
}

/// A pairwise verdict as the judge wrote it: the answer shown first, the one shown second, or a tie.
public enum JudgeVerdict: String, Sendable, Equatable, Codable {
    case first = "A", second = "B", tie = "C"
}

/// Reads ratings and verdicts out of the judge's free text.
public enum JudgeReplyParser {
    /// The rating of a grading reply: the last `[[N]]` (N may have decimals, as MT-Bench allows), else the
    /// last `Rating: N`. Nil when there is none or it lies outside 1–10.
    public static func rating(_ reply: String) -> Double? {
        let value = bracketed(reply).compactMap { Double($0) }.last ?? ratingLine(reply)
        guard let value, value >= 1, value <= 10 else { return nil }
        return value
    }

    /// The verdict of a pairwise reply: the last of `[[A]]`, `[[B]]`, `[[C]]` (the final line comes last when the
    /// explanation quotes the format). Nil when there is none.
    public static func verdict(_ reply: String) -> JudgeVerdict? {
        bracketed(reply).compactMap { JudgeVerdict(rawValue: $0.uppercased()) }.last
    }

    /// Everything between `[[` and `]]`, trimmed, in order.
    static func bracketed(_ text: String) -> [String] {
        var found: [String] = []
        var rest = text[...]
        while let open = rest.range(of: "[["), let close = rest[open.upperBound...].range(of: "]]") {
            found.append(rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces))
            rest = rest[close.upperBound...]
        }
        return found
    }

    /// The number after the last `Rating:` (case-insensitive), allowing `[N]`, `N/10` and trailing text.
    static func ratingLine(_ text: String) -> Double? {
        guard let label = text.range(of: "rating:", options: [.caseInsensitive, .backwards]) else { return nil }
        let after = text[label.upperBound...].drop { $0 == " " || $0 == "[" }
        let number = after.prefix { $0.isNumber || $0 == "." }
        return Double(number)
    }
}
