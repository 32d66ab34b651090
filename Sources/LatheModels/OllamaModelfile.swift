import Foundation
import LatheTemplates

/// An Ollama Modelfile for an exported GGUF: FROM, the chat template in Ollama's Go-template syntax, the default
/// system prompt, a stop for each end-of-generation token, and sampling parameters a Hugging Face source's
/// generation_config.json sets. Only ChatML templates are translated: the model's own Jinja template is rendered
/// on probe conversations and must give exactly what the Go template gives.
public struct OllamaModelfile: Sendable, Equatable {
    public let text: String

    /// ChatML in Go-template syntax: Ollama puts the Modelfile's SYSTEM first when a conversation has no system turn.
    static let chatMLTemplate = """
        {{- range .Messages }}<|im_start|>{{ .Role }}
        {{ .Content }}<|im_end|>
        {{ end }}<|im_start|>assistant

        """

    public init(_ lm: LanguageModel, modelPath: String) throws {
        let system = try Self.chatMLDefaultSystemPrompt(lm)
        var lines = ["FROM \(modelPath)", "TEMPLATE \"\"\"\(Self.chatMLTemplate)\"\"\""]
        if let system { lines.append("SYSTEM \"\"\"\(system)\"\"\"") }
        let stops = lm.stopTokenIDs.union(ModelExport.endOfTurnTokenID(lm).map { [$0] } ?? []).sorted()
        for text in stops.compactMap(lm.tokenizer.tokenText) { lines.append("PARAMETER stop \(Self.quoted(text))") }
        for (key, value) in try Self.samplingParameters(lm) { lines.append("PARAMETER \(key) \(value)") }
        text = lines.joined(separator: "\n") + "\n"
    }

    /// ChatML as the Go template renders it, with `system` put first when the conversation has no system turn.
    static func chatML(_ messages: [ChatMessage], system: String?) -> String {
        var turns = messages
        if let system, messages.first?.role != "system" { turns.insert(ChatMessage(role: "system", content: system), at: 0) }
        return turns.map { "<|im_start|>\($0.role)\n\($0.content)<|im_end|>\n" }.joined() + "<|im_start|>assistant\n"
    }

    /// The system prompt the Jinja template adds when a conversation has none (nil if it adds none), after checking
    /// that the template is ChatML on probe conversations.
    static func chatMLDefaultSystemPrompt(_ lm: LanguageModel) throws -> String? {
        func notChatML(_ detail: String) -> ModelError {
            .invalidConfiguration(file: lm.files.url.path, message: "Lathe writes Ollama templates for ChatML chat templates "
                + "only, and this model's \(detail); export with --format gguf and write the Modelfile's TEMPLATE by hand")
        }
        guard lm.chatTemplate != nil else { throw notChatML("has no chat template") }
        let userOnly = [ChatMessage(role: "user", content: "Name a colour.")]
        let rendered = try lm.renderChat(userOnly, addGenerationPrompt: true)
        var system: String?
        let header = "<|im_start|>system\n"
        if rendered.hasPrefix(header), let end = rendered.range(of: "<|im_end|>") {
            system = String(rendered[rendered.index(rendered.startIndex, offsetBy: header.count)..<end.lowerBound])
        }
        let probes = [userOnly, [ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "Hi"),
                                 ChatMessage(role: "assistant", content: "Hello."), ChatMessage(role: "user", content: "Bye")]]
        for probe in probes where try lm.renderChat(probe, addGenerationPrompt: true) != chatML(probe, system: system) {
            throw notChatML("template renders a conversation differently from ChatML")
        }
        if let system, system.contains("\"\"\"") { throw notChatML("default system prompt contains \"\"\"") }
        return system
    }

    /// temperature, top_p and top_k of a Hugging Face source's generation_config.json, when it samples.
    static func samplingParameters(_ lm: LanguageModel) throws -> [(String, String)] {
        guard case .huggingFace(let folder) = lm.files, let url = folder.generationConfigURL,
              let config = try? JSONValue.parse(Data(contentsOf: url)), config["do_sample"]?.bool == true else { return [] }
        return ["temperature", "top_p", "top_k"].compactMap { key in
            guard case .number(let value)? = config[key] else { return nil }
            return (key, value == value.rounded() && key == "top_k" ? String(Int(value)) : String(value))
        }
    }

    /// A Modelfile string in double quotes.
    static func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
