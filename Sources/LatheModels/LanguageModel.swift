import Foundation
import LatheFormats
import LatheTensors
import LatheTemplates
import LatheTokenizers

/// A model ready to use: weights, tokenizer, chat template and stop tokens, loaded from one file or folder.
public final class LanguageModel: @unchecked Sendable {
    public let name: String
    public let files: ModelFiles
    public let model: DecoderModel
    public let tokenizer: Tokenizer
    public let chatTemplate: ChatTemplate?
    public let bosToken: String
    public let eosToken: String
    /// Tokens that end an answer (EOS, and the end-of-turn tokens a generation config lists).
    public let stopTokenIDs: Set<Int>

    init(name: String, files: ModelFiles, model: DecoderModel, tokenizer: Tokenizer, chatTemplate: ChatTemplate?,
         stopTokenIDs: Set<Int>) {
        self.name = name; self.files = files; self.model = model; self.tokenizer = tokenizer
        self.chatTemplate = chatTemplate; self.stopTokenIDs = stopTokenIDs
        bosToken = tokenizer.bosTokenID.flatMap(tokenizer.tokenText) ?? ""
        eosToken = tokenizer.eosTokenID.flatMap(tokenizer.tokenText) ?? ""
    }

    /// Loads a model by path or known name (see `ModelLocator`), the blocks' linear weights in `weightFormat`.
    public static func load(_ reference: String, weightFormat: WeightFormat = .float32) throws -> LanguageModel {
        let url = try ModelLocator.resolve(reference)
        let files = try ModelFiles.open(url)
        let model = try files.loadModel(weightFormat: weightFormat)
        var (tokenizer, template, stops) = try loadTokenizer(files)
        let family = model.config.family
        if template == nil, let source = family.defaultChatTemplate { template = try ChatTemplate(source: source) }
        stops.formUnion(family.endOfTurnTokens.compactMap { tokenizer.id(of: $0) })
        guard tokenizer.vocabularySize <= model.config.vocabularySize else {
            throw ModelError.invalidConfiguration(file: url.path, message:
                "the tokenizer has \(tokenizer.vocabularySize) tokens but the model only \(model.config.vocabularySize)")
        }
        return LanguageModel(name: url.lastPathComponent, files: files, model: model, tokenizer: tokenizer,
                             chatTemplate: template, stopTokenIDs: stops)
    }

    static func loadTokenizer(_ files: ModelFiles) throws -> (Tokenizer, ChatTemplate?, Set<Int>) {
        switch files {
        case .gguf(let file):
            let tokenizer = try Tokenizer(gguf: file.tokenizerMetadata())
            func optionalInt(_ key: String) throws -> Int? { file.metadata[key] == nil ? nil : try file.requiredInt(key) }
            let template = try file.metadata["tokenizer.chat_template"]?.string.map { try ChatTemplate(source: $0) }
            var stops = Set<Int>()
            for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
                if let id = try optionalInt(key) { stops.insert(id) }
            }
            return (tokenizer, template, stops)
        case .huggingFace(let folder):
            guard let tokenizerURL = folder.tokenizerURL else {
                throw ModelError.invalidConfiguration(file: folder.url.path, message:
                    "there is no tokenizer.json in the folder; copy it from the model's repository")
            }
            let configData = try folder.tokenizerConfigURL.map { try Data(contentsOf: $0) }
            let tokenizer = try Tokenizer(tokenizerJSON: try Data(contentsOf: tokenizerURL), tokenizerConfigJSON: configData)
            var templateSource: String?
            let jinja = folder.url.appendingPathComponent("chat_template.jinja")
            if FileManager.default.fileExists(atPath: jinja.path) {
                templateSource = try String(contentsOf: jinja, encoding: .utf8)
            } else if let configData, let config = try? JSONValue.parse(configData) {
                templateSource = config["chat_template"]?.string
            }
            var stops = Set<Int>(tokenizer.eosTokenID.map { [$0] } ?? [])
            if let url = folder.generationConfigURL, let generation = try? JSONValue.parse(Data(contentsOf: url)) {
                switch generation["eos_token_id"] {
                case .number(let n)?: stops.insert(Int(n))
                case .array(let ids)?: stops.formUnion(ids.compactMap(\.int))
                default: break
                }
            }
            return (tokenizer, try templateSource.map { try ChatTemplate(source: $0) }, stops)
        }
    }

    // MARK: Prompts

    /// The token ids of a conversation rendered with the model's chat template (the template writes any BOS itself).
    public func chatTokens(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> [Int] {
        tokenizer.encode(try renderChat(messages, addGenerationPrompt: addGenerationPrompt), addSpecialTokens: false)
    }

    public func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        guard let chatTemplate else {
            throw ModelError.invalidInput("\(name) has no chat template; give plain text ({\"text\": ...}) instead of messages")
        }
        return try chatTemplate.render(messages: messages, addGenerationPrompt: addGenerationPrompt,
                                       bosToken: bosToken, eosToken: eosToken)
    }

    /// The prompt of one JSON line: `{"text": ...}` tokenized as is (with the tokenizer's own BOS, if it adds one),
    /// or `{"messages": [{"role", "content"}...]}` through the chat template with the generation prompt.
    public func promptTokens(_ line: JSONLine) throws -> [Int] {
        guard let object = line.value.object else { throw line.error("expected a JSON object, got \(line.value.summary)") }
        if let text = object["text"] {
            guard let string = text.string else { throw line.error("field \"text\" must be a string, got \(text.summary)") }
            return tokenizer.encode(string, addSpecialTokens: true)
        }
        guard let messages = object["messages"] else { throw line.error("expected a \"text\" or a \"messages\" field") }
        return try chatTokens(try Self.chatMessages(messages, line: line), addGenerationPrompt: true)
    }

    /// Validates a `messages` array, naming the first bad element and field.
    public static func chatMessages(_ value: JSONValue, line: JSONLine) throws -> [ChatMessage] {
        guard let array = value.array else { throw line.error("field \"messages\" must be an array, got \(value.summary)") }
        guard !array.isEmpty else { throw line.error("field \"messages\" is empty") }
        return try array.enumerated().map { index, message in
            guard let role = message["role"]?.string else {
                throw line.error("messages[\(index)].role must be a string, got \(message["role"]?.summary ?? "nothing")")
            }
            guard let content = message["content"]?.string else {
                throw line.error("messages[\(index)].content must be a string, got \(message["content"]?.summary ?? "nothing")")
            }
            return ChatMessage(role: role, content: content)
        }
    }

    // MARK: Scoring and generation

    /// log p(ids[i] | ids[..<i]) for every i ≥ 1; the first entry is nil (nothing precedes it).
    public func logProbabilities(of ids: [Int]) throws -> [Double?] {
        guard !ids.isEmpty else { return [] }
        let logits = try model.forward(tokens: ids)
        let vocabulary = model.config.vocabularySize
        return [nil] + (1..<ids.count).map { i in
            Softmax.logProbability(logits.pointer + (i - 1) * vocabulary, count: vocabulary, index: ids[i])
        }
    }

    /// Generates after `prompt` until a stop token, a stop string or `maxTokens`, with the adapter switched on now (if
    /// any); returns the text (special tokens and the stop string left out) and streams it piece by piece to `onText`.
    public func generate(_ prompt: [Int], sampling: SamplingOptions, maxTokens: Int, stopStrings: [String] = [],
                         onText: (String) -> Void = { _ in }) throws -> String {
        let request = DecodeRequest(prompt: prompt, maxTokens: maxTokens, sampling: sampling,
                                    adapter: try model.switchedOnAdapter(), stopStrings: stopStrings)
        var text = ""
        try BatchDecoder(model: self, slots: 1, contextPerSlot: prompt.count + maxTokens).decodeAll([request]) { _, event in
            guard case .token(let token) = event, !token.text.isEmpty else { return }
            text += token.text
            onText(token.text)
        }
        return text
    }

    /// Bytes of the weights as loaded: compact block weights plus everything else in float32.
    public var weightBytes: Int {
        let compact = model.compactWeightSummary
        return (model.config.parameterCount - (compact?.parameters ?? 0)) * 4 + (compact?.bytes ?? 0)
    }

    /// Which weights are held compactly and how, with bits per parameter (constants included).
    var compactWeightDescription: String {
        guard let compact = model.compactWeightSummary else { return "float32, 32 bits per parameter" }
        return String(format: "%@, %.3f bits per parameter (%.1fM parameters, %.1f MiB)", compact.format,
                      Double(compact.bytes * 8) / Double(compact.parameters), Double(compact.parameters) / 1e6,
                      Double(compact.bytes) / 1_048_576)
    }

    /// What `lathe inspect` shows.
    public var summary: [(String, String)] {
        let c = model.config
        var rows: [(String, String)] = [("model", name), ("path", files.url.path)]
        switch files {
        case .gguf(let file):
            var types: [String: Int] = [:]
            for tensor in file.tensors { types["\(tensor.type)", default: 0] += tensor.elementCount }
            rows.append(("format", "GGUF v\(file.version), \(file.tensors.count) tensors"))
            rows.append(("stored types", types.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))
        case .huggingFace(let folder):
            rows.append(("format", "Hugging Face folder, \(folder.weightFiles.count) safetensors file(s)"))
        }
        let fileBytes = (try? FileManager.default.attributesOfItem(atPath: files.url.path)[.size] as? Int) ?? nil
        rows += [
            ("architecture", "\(c.modelType): \(c.layerCount) layers, hidden \(c.hiddenSize), FFN \(c.intermediateSize)"),
            ("attention", "\(c.headCount) heads, \(c.kvHeadCount) KV heads, head dim \(c.headDim)\(c.attentionBias ? ", q/k/v bias" : "")"),
            ("rope", "theta \(c.ropeTheta)\(c.ropeLlama3Scaling != nil || c.ropeFrequencyFactors != nil ? ", llama3 scaling" : "")"),
            ("vocabulary", "\(c.vocabularySize) (tokenizer \(tokenizer.vocabularySize))"),
            ("lm head", c.tieWordEmbeddings ? "tied to the embedding" : "separate"),
            ("parameters", String(format: "%.1fM", Double(c.parameterCount) / 1e6)),
            ("compact weights", compactWeightDescription),
            ("memory (weights)", String(format: "%.0f MiB", Double(weightBytes) / 1_048_576)),
            ("context", "\(c.maxPositions) positions"),
            ("chat template", chatTemplate == nil ? "none" : "yes"),
        ]
        if let fileBytes { rows.insert(("file size", String(format: "%.1f MiB", Double(fileBytes) / 1_048_576)), at: 3) }
        return rows
    }
}
