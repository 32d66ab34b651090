import Foundation

/// One chat turn for `ChatTemplate.render(messages:...)`.
public struct ChatMessage: Equatable, Sendable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }

    /// The message as the template sees it: `{"role": ..., "content": ...}` in that order.
    public var templateValue: TemplateValue {
        .dictionary(TemplateDictionary([("role", .string(role)), ("content", .string(content))]))
    }
}

/// A chat template (the Jinja2 text in `tokenizer.chat_template` or tokenizer_config.json),
/// parsed once and rendered like transformers' `apply_chat_template`: jinja2 with trim_blocks,
/// lstrip_blocks and loop controls, plus `raise_exception`, `strftime_now` and transformers'
/// `tojson` (ensure_ascii=False).
public struct ChatTemplate {
    public let source: String
    private let nodes: [TemplateNode]

    /// Parses the template; throws a `TemplateError` with line and column for malformed text or
    /// constructs this interpreter does not implement (`include`, `extends`, unknown filters...).
    public init(source: String) throws {
        self.source = source
        var lexer = TemplateLexer(source)
        var parser = TemplateParser(segments: try lexer.segments())
        nodes = try parser.parseTemplate()
    }

    /// Renders with exactly the given variables. `now` is the time `strftime_now` reports
    /// (tests pass a fixed date).
    public func render(context: [String: TemplateValue], now: Date = Date()) throws -> String {
        try TemplateRenderer(context: context, now: now).render(nodes)
    }

    /// Renders a conversation with the variables transformers sets: `messages`,
    /// `add_generation_prompt`, `bos_token`, `eos_token`, `tools` and `documents` (None unless
    /// given in `extra`), plus `extra` (e.g. `tools`, `date_string`, `tools_in_user_message`).
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool, bosToken: String, eosToken: String,
                       extra: [String: TemplateValue] = [:], now: Date = Date()) throws -> String {
        try render(messages: messages.map(\.templateValue), addGenerationPrompt: addGenerationPrompt,
                   bosToken: bosToken, eosToken: eosToken, extra: extra, now: now)
    }

    /// As above, for messages that carry more than role and content (tool calls, tool results).
    public func render(messages: [TemplateValue], addGenerationPrompt: Bool, bosToken: String, eosToken: String,
                       extra: [String: TemplateValue] = [:], now: Date = Date()) throws -> String {
        var context: [String: TemplateValue] = [
            "messages": .array(messages),
            "add_generation_prompt": .bool(addGenerationPrompt),
            "bos_token": .string(bosToken),
            "eos_token": .string(eosToken),
            "tools": .none,
            "documents": .none,
        ]
        for (key, value) in extra { context[key] = value }
        return try render(context: context, now: now)
    }
}
