import Foundation

extension Tokenizer {
    private static let jsonFile = "tokenizer.json"
    private static let configFile = "tokenizer_config.json"

    /// Builds the tokenizer of a Hugging Face model folder: its `tokenizer.json` and, when present,
    /// `tokenizer_config.json`. Errors about either file name the file.
    public init(huggingFaceFolder folder: URL) throws {
        func read(_ name: String) throws -> Data {
            let url = folder.appendingPathComponent(name)
            do {
                return try Data(contentsOf: url)
            } catch {
                throw TokenizerError.unreadableFile(path: url.path, detail: error.localizedDescription)
            }
        }
        let configPath = folder.appendingPathComponent(Self.configFile).path
        let config = FileManager.default.fileExists(atPath: configPath) ? try read(Self.configFile) : nil
        try self.init(tokenizerJSON: try read(Self.jsonFile), tokenizerConfigJSON: config)
    }

    /// Builds the tokenizer a Hugging Face `tokenizer.json` (model type BPE) describes; `tokenizer_config.json`,
    /// when given, supplies `bos_token`/`eos_token` and may override `add_bos_token`/`add_eos_token`.
    public init(tokenizerJSON: Data, tokenizerConfigJSON: Data?) throws {
        let root = try JSONObject(data: tokenizerJSON, file: Self.jsonFile)
        let config = try tokenizerConfigJSON.map { try JSONObject(data: $0, file: Self.configFile) }

        let model = try root.object("model")
        let modelType = try model.optionalString("type") ?? "BPE"
        guard modelType == "BPE" || modelType == "Unigram" else {
            throw TokenizerError.unsupported(file: Self.jsonFile, field: "model.type", value: modelType)
        }
        for field in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let value = try model.optionalString(field), !value.isEmpty {
                throw TokenizerError.unsupported(file: Self.jsonFile, field: "model.\(field)", value: value)
            }
        }
        if let dropout = model.values["dropout"] as? Double, dropout > 0 {
            throw TokenizerError.unsupported(file: Self.jsonFile, field: "model.dropout", value: "\(dropout)")
        }

        // Vocabulary: token -> id (BPE) or [token, score] in id order (Unigram), with added tokens possibly beyond.
        var tokenForID: [Int: String] = [:]
        var unigramScores: [Double] = []
        var exactBPE = ExactJSON.BPEModel()
        if modelType == "Unigram" {
            for (id, entry) in try model.array("vocab").enumerated() {
                guard let pair = entry as? [Any], pair.count == 2, let token = pair[0] as? String,
                      let score = (pair[1] as? NSNumber)?.doubleValue else {
                    throw TokenizerError.wrongFieldType(file: Self.jsonFile, field: "model.vocab[\(id)]",
                                                        expected: "[token, score]")
                }
                tokenForID[id] = token
                unigramScores.append(score)
            }
        } else {
            // Foundation's values name wrong types; the tokens themselves come from `ExactJSON` (see there).
            for (token, value) in try model.object("vocab").values {
                guard let id = value as? Int, id >= 0 else {
                    throw TokenizerError.wrongFieldType(file: Self.jsonFile,
                                                        field: "model.vocab[\(token.debugDescription)]",
                                                        expected: "a non-negative integer id")
                }
            }
            for (index, entry) in try model.optionalArray("merges").enumerated() {
                let isPair = (entry as? [Any]).map { $0.count == 2 && $0.allSatisfy { $0 is String } } ?? false
                guard entry is String || isPair else { throw TokenizerError.wrongFieldType(file: Self.jsonFile, field: "model.merges[\(index)]",
                                                    expected: "\"left right\" or [\"left\", \"right\"]")
                }
            }
            exactBPE = try ExactJSON.bpeModel(in: tokenizerJSON, file: Self.jsonFile)
            for (token, id) in exactBPE.vocabulary { tokenForID[id] = token }
        }
        var added: [AddedToken] = []
        for (index, entry) in try root.optionalArray("added_tokens").enumerated() {
            let field = "added_tokens[\(index)]"
            guard let values = entry as? [String: Any] else {
                throw TokenizerError.wrongFieldType(file: Self.jsonFile, field: field, expected: "an object")
            }
            let object = JSONObject(values: values, file: Self.jsonFile, path: field)
            let token = AddedToken(content: try object.string("content"), id: try object.int("id"),
                                   isSpecial: try object.bool("special", default: false),
                                   stripsLeft: try object.bool("lstrip", default: false),
                                   stripsRight: try object.bool("rstrip", default: false),
                                   isSingleWord: try object.bool("single_word", default: false),
                                   isNormalized: try object.bool("normalized", default: false))
            guard token.id >= 0 else {
                throw TokenizerError.wrongFieldType(file: Self.jsonFile, field: "\(field).id", expected: "a non-negative id")
            }
            added.append(token)
        }
        let normalizer = try Self.parseNormalizer(root.values["normalizer"], path: "normalizer")
        // An added token keeps a vocabulary entry's spelling for merges; Hugging Face decodes a normalized one
        // as its normalized content.
        var decodedTextOverrides: [Int: String] = [:]
        for token in added {
            var text = token.content
            if token.isNormalized { for step in normalizer { text = step.apply(text) } }
            if tokenForID[token.id] == nil { tokenForID[token.id] = token.content }
            if tokenForID[token.id] != text { decodedTextOverrides[token.id] = text }
        }
        // Check for gaps before allocating, so that a stray huge id is an error rather than a huge array.
        let size = (tokenForID.keys.max() ?? -1) + 1
        let gaps = size - tokenForID.count
        if gaps > 0 {
            throw TokenizerError.wrongFieldType(file: Self.jsonFile, field: "model.vocab and added_tokens",
                                                expected: "ids 0..<\(size) without gaps (\(gaps) ids missing)")
        }
        var vocabulary = [String](repeating: "", count: size)
        for (id, token) in tokenForID { vocabulary[id] = token }

        var idForToken = Dictionary(vocabulary.enumerated().map { ($1, $0) }, uniquingKeysWith: { _, last in last })
        for token in added where idForToken[token.content] == nil { idForToken[token.content] = token.id }
        var unknownID: Int?
        if modelType == "Unigram", model.values["unk_id"] != nil, !(model.values["unk_id"] is NSNull) {
            unknownID = try model.int("unk_id")
        } else if let unknown = try model.optionalString("unk_token") {
            guard let id = idForToken[unknown] else {
                throw TokenizerError.unknownToken(field: "\(Self.jsonFile): model.unk_token", token: unknown)
            }
            unknownID = id
        }

        let preTokenizer = PreTokenizer(steps: try Self.parsePreTokenizer(root.values["pre_tokenizer"],
                                                                          path: "pre_tokenizer"))
        let decoder = try Self.parseDecoder(root.values["decoder"], path: "decoder")
        var (prefix, suffix) = try Self.parsePostProcessor(root.values["post_processor"], path: "post_processor",
                                                           idForToken: idForToken)

        func configToken(_ field: String) throws -> Int? {
            guard let config, let value = config.values[field], !(value is NSNull) else { return nil }
            let content: String
            if let text = value as? String {
                content = text
            } else if let object = value as? [String: Any], let text = object["content"] as? String {
                content = text
            } else {
                throw TokenizerError.wrongFieldType(file: Self.configFile, field: field,
                                                    expected: "a token string or an object with \"content\"")
            }
            guard let id = idForToken[content] else {
                throw TokenizerError.unknownToken(field: "\(Self.configFile): \(field)", token: content)
            }
            return id
        }
        let bos = try configToken("bos_token") ?? prefix.first
        let eos = try configToken("eos_token")
        if let config {
            if let addBOS = config.values["add_bos_token"] as? Bool, let bos {
                if addBOS && !prefix.contains(bos) { prefix.insert(bos, at: 0) }
                if !addBOS { prefix.removeAll { $0 == bos } }
            }
            if let addEOS = config.values["add_eos_token"] as? Bool, let eos {
                if addEOS && !suffix.contains(eos) { suffix.append(eos) }
                if !addEOS { suffix.removeAll { $0 == eos } }
            }
        }

        let description: ModelDescription = modelType == "Unigram"
            ? .unigram(scores: unigramScores)
            : .bpe(merges: exactBPE.merges, source: "\(Self.jsonFile): model.merges",
                   ignoresMerges: try model.bool("ignore_merges", default: false))
        try self.init(vocabulary: vocabulary, model: description,
                      addedTokens: added, preTokenizer: preTokenizer, normalizer: normalizer, decoder: decoder,
                      byteFallback: try model.bool("byte_fallback", default: false), unknownTokenID: unknownID,
                      fusesUnknown: try model.bool("fuse_unk", default: false), prefixIDs: prefix,
                      suffixIDs: suffix, bosTokenID: bos, eosTokenID: eos, source: Self.jsonFile,
                      decodedTextOverrides: decodedTextOverrides)
    }

    /// The component's object, or nil for JSON null / absent.
    private static func component(_ value: Any?, path: String) throws -> JSONObject? {
        guard let value, !(value is NSNull) else { return nil }
        guard let values = value as? [String: Any] else {
            throw TokenizerError.wrongFieldType(file: jsonFile, field: path, expected: "an object or null")
        }
        return JSONObject(values: values, file: jsonFile, path: path)
    }

    private static func stringPattern(_ object: JSONObject, path: String) throws -> String {
        let pattern = try object.object("pattern")
        if let literal = try pattern.optionalString("String") { return literal }
        throw TokenizerError.unsupported(file: jsonFile, field: "\(path).pattern",
                                         value: "\(pattern.values) (only {\"String\": ...} is supported here)")
    }

    static func parseNormalizer(_ value: Any?, path: String) throws -> [NormalizerStep] {
        guard let object = try component(value, path: path) else { return [] }
        let type = try object.string("type")
        switch type {
        case "Sequence":
            var steps: [NormalizerStep] = []
            for (index, child) in try object.array("normalizers").enumerated() {
                steps += try parseNormalizer(child, path: "\(path).normalizers[\(index)]")
            }
            return steps
        case "Prepend": return [.prepend(try object.string("prepend"))]
        case "Replace": return [.replace(try stringPattern(object, path: path), try object.string("content"))]
        case "NFC": return [.nfc]
        case "NFD": return [.nfd]
        case "NFKC": return [.nfkc]
        case "NFKD": return [.nfkd]
        default: throw TokenizerError.unsupported(file: jsonFile, field: "\(path).type", value: type)
        }
    }

    static func parsePreTokenizer(_ value: Any?, path: String) throws -> [PreTokenizer.Step] {
        guard let object = try component(value, path: path) else { return [] }
        let type = try object.string("type")
        switch type {
        case "Sequence":
            var steps: [PreTokenizer.Step] = []
            for (index, child) in try object.array("pretokenizers").enumerated() {
                steps += try parsePreTokenizer(child, path: "\(path).pretokenizers[\(index)]")
            }
            return steps
        case "ByteLevel":
            return [.byteLevel(addPrefixSpace: try object.bool("add_prefix_space", default: true),
                               useRegex: try object.bool("use_regex", default: true))]
        case "Metaspace":
            let replacement = try object.string("replacement")
            guard replacement.unicodeScalars.count == 1, let scalar = replacement.unicodeScalars.first else {
                throw TokenizerError.wrongFieldType(file: jsonFile, field: "\(path).replacement",
                                                    expected: "one character")
            }
            return [.metaspace(replacement: scalar, prepend: try metaspacePrepend(object, path: path),
                               split: try object.bool("split", default: true))]
        case "Digits":
            return [.digits(individual: try object.bool("individual_digits", default: false))]
        case "Split":
            if try object.bool("invert", default: false) {
                throw TokenizerError.unsupported(file: jsonFile, field: "\(path).invert", value: "true")
            }
            let behaviorName = try object.string("behavior")
            guard let behavior = PreTokenizer.SplitBehavior(rawValue: behaviorName) else {
                throw TokenizerError.unsupported(file: jsonFile, field: "\(path).behavior", value: behaviorName)
            }
            let pattern = try object.object("pattern")
            if let regex = try pattern.optionalString("Regex") {
                guard let known = PreTokenizer.SplitPattern(regex: regex) else {
                    throw TokenizerError.unknownSplitPattern(field: "\(jsonFile): \(path).pattern.Regex", pattern: regex)
                }
                return [.split(known, behavior)]
            }
            return [.split(.literal(try pattern.string("String")), behavior)]
        default:
            throw TokenizerError.unsupported(file: jsonFile, field: "\(path).type", value: type)
        }
    }

    /// `prepend_scheme`, or the older `add_prefix_space` flag (true meaning "always").
    private static func metaspacePrepend(_ object: JSONObject, path: String) throws -> PreTokenizer.MetaspacePrepend {
        if let scheme = try object.optionalString("prepend_scheme") {
            guard let known = PreTokenizer.MetaspacePrepend(rawValue: scheme) else {
                throw TokenizerError.unsupported(file: jsonFile, field: "\(path).prepend_scheme", value: scheme)
            }
            return known
        }
        return try object.bool("add_prefix_space", default: true) ? .always : .never
    }

    static func parseDecoder(_ value: Any?, path: String) throws -> [DecoderStep]? {
        guard let object = try component(value, path: path) else { return nil }
        let type = try object.string("type")
        switch type {
        case "Sequence":
            var steps: [DecoderStep] = []
            for (index, child) in try object.array("decoders").enumerated() {
                steps += try parseDecoder(child, path: "\(path).decoders[\(index)]") ?? []
            }
            return steps
        case "ByteLevel": return [.byteLevel]
        case "ByteFallback": return [.byteFallback]
        case "Fuse": return [.fuse]
        case "Replace": return [.replace(try stringPattern(object, path: path), try object.string("content"))]
        case "Strip":
            let content = try object.string("content")
            guard content.count == 1, let character = content.first else {
                throw TokenizerError.wrongFieldType(file: jsonFile, field: "\(path).content", expected: "one character")
            }
            return [.strip(character, start: try object.int("start"), stop: try object.int("stop"))]
        case "Metaspace":
            return [.metaspace(replacement: try object.string("replacement"),
                               dropsFromFirstToken: try metaspacePrepend(object, path: path) != .never)]
        default:
            throw TokenizerError.unsupported(file: jsonFile, field: "\(path).type", value: type)
        }
    }

    /// The special ids put before and after a single sequence.
    static func parsePostProcessor(_ value: Any?, path: String,
                                   idForToken: [String: Int]) throws -> (prefix: [Int], suffix: [Int]) {
        guard let object = try component(value, path: path) else { return ([], []) }
        let type = try object.string("type")
        switch type {
        case "ByteLevel":
            return ([], [])
        case "Sequence":
            var prefix: [Int] = []
            var suffix: [Int] = []
            for (index, child) in try object.array("processors").enumerated() {
                let (childPrefix, childSuffix) = try parsePostProcessor(child, path: "\(path).processors[\(index)]",
                                                                        idForToken: idForToken)
                prefix += childPrefix
                suffix = childSuffix + suffix
            }
            return (prefix, suffix)
        case "TemplateProcessing":
            let specials = try object.object("special_tokens")
            var prefix: [Int] = []
            var suffix: [Int] = []
            var seenSequence = false
            for (index, piece) in try object.array("single").enumerated() {
                let piecePath = "\(path).single[\(index)]"
                guard let pieceObject = piece as? [String: Any] else {
                    throw TokenizerError.wrongFieldType(file: jsonFile, field: piecePath, expected: "an object")
                }
                if pieceObject["Sequence"] != nil { seenSequence = true; continue }
                guard let special = pieceObject["SpecialToken"] as? [String: Any], let name = special["id"] as? String else {
                    throw TokenizerError.wrongFieldType(file: jsonFile, field: piecePath,
                                                        expected: "{\"Sequence\": ...} or {\"SpecialToken\": {\"id\": ...}}")
                }
                let entry = try specials.object(name)
                let ids = try entry.array("ids").enumerated().map { index, id -> Int in
                    guard let id = id as? Int else {
                        throw TokenizerError.wrongFieldType(file: jsonFile,
                                                            field: "\(path).special_tokens.\(name).ids[\(index)]",
                                                            expected: "an integer")
                    }
                    return id
                }
                if seenSequence { suffix += ids } else { prefix += ids }
            }
            return (prefix, suffix)
        case "RobertaProcessing", "BertProcessing":
            func token(_ field: String) throws -> Int {
                guard let pair = object.values[field] as? [Any], pair.count == 2, let id = pair[1] as? Int else {
                    throw TokenizerError.wrongFieldType(file: jsonFile, field: "\(path).\(field)",
                                                        expected: "[token, id]")
                }
                return id
            }
            return ([try token("cls")], [try token("sep")])
        default:
            throw TokenizerError.unsupported(file: jsonFile, field: "\(path).type", value: type)
        }
    }
}

/// A JSON object with typed accessors whose errors name the file and the field's path.
struct JSONObject {
    let values: [String: Any]
    let file: String
    let path: String

    init(values: [String: Any], file: String, path: String) {
        self.values = values
        self.file = file
        self.path = path
    }

    init(data: Data, file: String) throws {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data, options: [])
        } catch {
            throw TokenizerError.malformedJSON(file: file, detail: error.localizedDescription)
        }
        guard let values = parsed as? [String: Any] else {
            throw TokenizerError.malformedJSON(file: file, detail: "the top level is not an object")
        }
        self.init(values: values, file: file, path: "")
    }

    private func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    private func present(_ key: String) -> Any? {
        guard let value = values[key], !(value is NSNull) else { return nil }
        return value
    }

    func object(_ key: String) throws -> JSONObject {
        guard let value = present(key) else { throw TokenizerError.missingField(file: file, field: name(key)) }
        guard let object = value as? [String: Any] else {
            throw TokenizerError.wrongFieldType(file: file, field: name(key), expected: "an object")
        }
        return JSONObject(values: object, file: file, path: name(key))
    }

    func array(_ key: String) throws -> [Any] {
        guard let value = present(key) else { throw TokenizerError.missingField(file: file, field: name(key)) }
        guard let array = value as? [Any] else {
            throw TokenizerError.wrongFieldType(file: file, field: name(key), expected: "an array")
        }
        return array
    }

    func optionalArray(_ key: String) throws -> [Any] {
        present(key) == nil ? [] : try array(key)
    }

    func string(_ key: String) throws -> String {
        guard let value = try optionalString(key) else { throw TokenizerError.missingField(file: file, field: name(key)) }
        return value
    }

    func optionalString(_ key: String) throws -> String? {
        guard let value = present(key) else { return nil }
        guard let string = value as? String else {
            throw TokenizerError.wrongFieldType(file: file, field: name(key), expected: "a string")
        }
        return string
    }

    func int(_ key: String) throws -> Int {
        guard let value = present(key) else { throw TokenizerError.missingField(file: file, field: name(key)) }
        guard let number = value as? Int else {
            throw TokenizerError.wrongFieldType(file: file, field: name(key), expected: "an integer")
        }
        return number
    }

    func bool(_ key: String, default defaultValue: Bool) throws -> Bool {
        guard let value = present(key) else { return defaultValue }
        guard let flag = value as? Bool else {
            throw TokenizerError.wrongFieldType(file: file, field: name(key), expected: "true or false")
        }
        return flag
    }
}
