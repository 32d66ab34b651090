import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import LatheModels
import LatheRemote

/// One completion to be rewarded: the prompt it answers, its text, and the dataset row it came from (a reward reads
/// `reference` or any other field of the row, as TRL passes the dataset's columns to reward functions).
public struct RewardInput: Sendable {
    public var prompt: String
    public var completion: String
    /// The completion's tokens (its stop token excluded).
    public var completionTokenCount: Int
    public var row: [String: JSONValue]
    /// Prompt and completion as one sequence, as a reward model reads it.
    public var sequence: [Int]

    public init(prompt: String, completion: String, completionTokenCount: Int, row: [String: JSONValue], sequence: [Int]) {
        self.prompt = prompt; self.completion = completion; self.completionTokenCount = completionTokenCount
        self.row = row; self.sequence = sequence
    }
}

/// A reward: one number per completion, or nil where it cannot score one (TRL's None: left out of the sums).
public protocol RewardFunction {
    /// The name its metrics go by (`rewards/<label>/mean`).
    var label: String { get }
    func rewards(_ inputs: [RewardInput]) throws -> [Double?]
}

/// A reward as a run configuration names it (`grpo.rewards`, or `--reward NAME[=WEIGHT]`), with its settings.
public struct RewardSpec: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case exactMatch = "exact_match", jsonMatch = "json_match", jsonValid = "json_valid", jsonKeys = "json_keys"
        case regex, length, rewardModel = "reward_model", command, http
    }

    public var name: Kind
    public var weight = 1.0
    /// Metrics name; the kind's name by default (two rewards of one kind need their own labels).
    public var label: String?
    /// exact_match, json_match, json_keys: the row's field holding the reference answer.
    public var field = "reference"
    /// regex: the pattern (Swift Regex syntax) and whether it must match the whole completion (`full`) or any part (`search`).
    public var pattern: String?
    public var mode = TextPattern.Mode.fullMatch
    /// json_keys: the keys the completion's object must have (default: the reference object's keys).
    public var keys: [String]?
    /// length: the target length in tokens.
    public var target: Int?
    /// reward_model: the reward model adapter folder (`lathe reward`'s output).
    public var adapter: String?
    /// command: the program and its arguments; http: the URL. Both get JSON and give numbers (see `ExternalReward`).
    public var command: [String]?
    public var url: String?
    /// command, http: seconds before the call is abandoned (an error: a run must not train on missing rewards).
    public var timeout = 60.0

    public init(name: Kind, weight: Double = 1) { self.name = name; self.weight = weight }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, weight, label, field, pattern, mode, keys, target, adapter, command, url, timeout
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let text = try c.decode(String.self, forKey: .name)
        guard let kind = Kind(rawValue: text) else {
            throw DecodingError.dataCorruptedError(forKey: .name, in: c, debugDescription:
                "unknown reward '\(text)'; one of " + Kind.allCases.map(\.rawValue).joined(separator: ", "))
        }
        name = kind
        weight = try c.decodeIfPresent(Double.self, forKey: .weight) ?? 1
        label = try c.decodeIfPresent(String.self, forKey: .label)
        field = try c.decodeIfPresent(String.self, forKey: .field) ?? "reference"
        pattern = try c.decodeIfPresent(String.self, forKey: .pattern)
        if let mode = try c.decodeIfPresent(String.self, forKey: .mode) {
            guard let value = TextPattern.Mode(rawValue: mode) else {
                throw DecodingError.dataCorruptedError(forKey: .mode, in: c, debugDescription: "mode must be full or search, got '\(mode)'")
            }
            self.mode = value
        }
        keys = try c.decodeIfPresent([String].self, forKey: .keys)
        target = try c.decodeIfPresent(Int.self, forKey: .target)
        adapter = try c.decodeIfPresent(String.self, forKey: .adapter)
        command = try c.decodeIfPresent([String].self, forKey: .command)
        url = try c.decodeIfPresent(String.self, forKey: .url)
        timeout = try c.decodeIfPresent(Double.self, forKey: .timeout) ?? 60
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name.rawValue, forKey: .name)
        try c.encode(weight, forKey: .weight)
        try c.encodeIfPresent(label, forKey: .label)
        try c.encode(field, forKey: .field)
        try c.encodeIfPresent(pattern, forKey: .pattern)
        try c.encode(mode.rawValue, forKey: .mode)
        try c.encodeIfPresent(keys, forKey: .keys)
        try c.encodeIfPresent(target, forKey: .target)
        try c.encodeIfPresent(adapter, forKey: .adapter)
        try c.encodeIfPresent(command, forKey: .command)
        try c.encodeIfPresent(url, forKey: .url)
        try c.encode(timeout, forKey: .timeout)
    }

    public var metricsLabel: String { label ?? name.rawValue }

    /// The reward function, its settings checked (naming the reward). A reward model comes from `rewardModel`,
    /// which loads the adapter onto the model being trained.
    public func make(rewardModel: (String) throws -> any RewardFunction) throws -> any RewardFunction {
        let label = metricsLabel
        func require<T>(_ value: T?, _ key: String) throws -> T {
            guard let value else { throw EvalError.invalidInput("reward \(label): `\(key)` is required for \(name.rawValue)") }
            return value
        }
        guard timeout > 0 else { throw EvalError.invalidInput("reward \(label): timeout must be positive, got \(timeout)") }
        switch name {
        case .exactMatch, .jsonMatch, .jsonValid, .jsonKeys:
            return RuleReward(label: label, kind: name, field: field, keys: keys)
        case .regex:
            return PatternReward(label: label, pattern: try TextPattern(try require(pattern, "pattern"), mode: mode))
        case .length:
            let target = try require(target, "target")
            guard target > 0 else { throw EvalError.invalidInput("reward \(label): target must be positive, got \(target)") }
            return LengthReward(label: label, target: target)
        case .rewardModel:
            return try rewardModel(try require(adapter, "adapter"))
        case .command:
            let argv = try require(command, "command")
            guard !argv.isEmpty else { throw EvalError.invalidInput("reward \(label): command is empty") }
            return ExternalReward(label: label, endpoint: .command(argv), timeout: timeout)
        case .http:
            guard let url = URL(string: try require(self.url, "url")), url.scheme == "http" || url.scheme == "https" else {
                throw EvalError.invalidInput("reward \(label): url must be an http(s) URL, got '\(self.url ?? "")'")
            }
            return ExternalReward(label: label, endpoint: .http(url), timeout: timeout)
        }
    }
}

/// exact_match, json_match, json_valid and json_keys: 1 or 0 per completion (json_keys: the fraction of keys present).
struct RuleReward: RewardFunction {
    let label: String
    let kind: RewardSpec.Kind
    let field: String
    let keys: [String]?

    func rewards(_ inputs: [RewardInput]) throws -> [Double?] {
        try inputs.map { input in
            let completion = input.completion.trimmingCharacters(in: .whitespacesAndNewlines)
            switch kind {
            case .jsonValid: return StructuredOutput.jsonValidity(completion)
            case .exactMatch:
                return completion == (try referenceText(input)).trimmingCharacters(in: .whitespacesAndNewlines) ? 1 : 0
            case .jsonMatch:
                guard let parsed = StructuredOutput.parseJSON(completion) else { return 0 }
                return parsed == (try referenceJSON(input)) ? 1 : 0
            default:
                let wanted = try keys ?? {
                    guard let object = try referenceJSON(input).object else {
                        throw EvalError.invalidInput("reward \(label): the row's `\(field)` is not a JSON object; give `keys`")
                    }
                    return object.keys.sorted()
                }()
                guard !wanted.isEmpty else { return 1 }
                guard let object = StructuredOutput.parseJSON(completion)?.object else { return 0 }
                return Double(wanted.filter { object[$0] != nil }.count) / Double(wanted.count)
            }
        }
    }

    func reference(_ input: RewardInput) throws -> JSONValue {
        guard let value = input.row[field] else { throw EvalError.invalidInput("reward \(label): the row has no `\(field)` field") }
        return value
    }

    func referenceText(_ input: RewardInput) throws -> String {
        let value = try reference(input)
        if let text = value.string { return text }
        return String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    }

    /// The reference parsed: a string holding JSON is parsed, any other JSON value is the reference itself.
    func referenceJSON(_ input: RewardInput) throws -> JSONValue {
        let value = try reference(input)
        guard let text = value.string else { return value }
        guard let parsed = StructuredOutput.parseJSON(text) else {
            throw EvalError.invalidInput("reward \(label): the row's `\(field)` is a string that is not JSON: \(text.prefix(60))")
        }
        return parsed
    }
}

/// reward_model: a reward model adapter (`lathe reward`'s) on the model being trained, switched on only while it
/// scores: its score of each prompt + completion.
public struct RewardModelReward: RewardFunction {
    public let label: String
    let rewardModel: RewardModel
    let padTokenID: Int?

    public init(label: String, rewardModel: RewardModel, padTokenID: Int?) {
        self.label = label; self.rewardModel = rewardModel; self.padTokenID = padTokenID
    }

    public func rewards(_ inputs: [RewardInput]) throws -> [Double?] {
        try rewardModel.scores(inputs.map(\.sequence), padTokenID: padTokenID).map { Double($0) }
    }
}

/// regex: 1 where the pattern matches the completion.
struct PatternReward: RewardFunction {
    let label: String
    let pattern: TextPattern
    func rewards(_ inputs: [RewardInput]) throws -> [Double?] { inputs.map { StructuredOutput.regexMatch($0.completion, pattern: pattern) } }
}

/// length: −|n − target| / target for a completion of n tokens (0 at the target, −1 at none or twice the target).
struct LengthReward: RewardFunction {
    let label: String
    let target: Int
    func rewards(_ inputs: [RewardInput]) throws -> [Double?] {
        inputs.map { -abs(Double($0.completionTokenCount - target)) / Double(target) }
    }
}

/// A reward computed elsewhere. A command gets one JSON object per line on standard input — the row's fields plus
/// `prompt` and `completion` — and prints one number (or `null`) per line; an HTTP endpoint gets a POST of
/// `{"inputs": [those objects]}` and answers `{"rewards": [numbers or null]}` or the bare list.
struct ExternalReward: RewardFunction {
    enum Endpoint { case command([String]), http(URL) }
    let label: String
    let endpoint: Endpoint
    let timeout: TimeInterval

    func rewards(_ inputs: [RewardInput]) throws -> [Double?] {
        let objects: [JSONValue] = inputs.map { input in
            var object = input.row
            object["prompt"] = .string(input.prompt)
            object["completion"] = .string(input.completion)
            return .object(object)
        }
        let values: [JSONValue]
        switch endpoint {
        case .command(let argv): values = try run(argv, lines: objects)
        case .http(let url): values = try post(url, objects: objects)
        }
        guard values.count == inputs.count else {
            throw EvalError.invalidInput("reward \(label): \(values.count) rewards for \(inputs.count) completions")
        }
        return try values.enumerated().map { index, value in
            if value == .null { return nil }
            guard let number = value.double, number.isFinite else {
                throw EvalError.invalidInput("reward \(label): reward \(index + 1) is \(value.summary), not a finite number")
            }
            return number
        }
    }

    private func run(_ argv: [String], lines: [JSONValue]) throws -> [JSONValue] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = argv
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input; process.standardOutput = output; process.standardError = errors
        do { try process.run() } catch { throw EvalError.invalidInput("reward \(label): cannot start \(argv[0]): \(error)") }
        // A command that exits without reading all its input must not kill this process with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        let payload = try lines.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }.joined(separator: "\n") + "\n"
        // Written from another thread so that a command answering line by line cannot block on a full pipe.
        DispatchQueue.global().async {
            try? input.fileHandleForWriting.write(contentsOf: Data(payload.utf8))
            try? input.fileHandleForWriting.close()
        }
        let timer = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
        // Standard error is drained beside standard output: a command filling one pipe must not stall on it.
        final class Drained: @unchecked Sendable { var data = Data() }
        let stderrDrained = Drained(), drained = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            stderrDrained.data = errors.fileHandleForReading.readDataToEndOfFile()
            drained.signal()
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        let stderr = stderrDrained.data
        process.waitUntilExit()
        timer.cancel()
        if process.terminationReason == .uncaughtSignal {
            throw EvalError.invalidInput("reward \(label): \(argv[0]) did not finish within \(timeout) s")
        }
        guard process.terminationStatus == 0 else {
            throw EvalError.invalidInput("reward \(label): \(argv[0]) exited with status \(process.terminationStatus): "
                                         + String(decoding: stderr.suffix(400), as: UTF8.self))
        }
        return try String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated().map { index, line in
            do { return try JSONValue.parse(Data(line.utf8)) } catch {
                throw EvalError.invalidInput("reward \(label): \(argv[0]) printed line \(index + 1) '\(line.prefix(60))', not a number")
            }
        }
    }

    private func post(_ url: URL, objects: [JSONValue]) throws -> [JSONValue] {
        var request = URLRequest(url: url, timeoutInterval: max(1, timeout.rounded(.up)))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = try JSONEncoder().encode(JSONValue.object(["inputs": .array(objects)]))
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = max(1, timeout.rounded(.up))
        switch HTTPExchange.send(request, session: URLSession(configuration: configuration)) {
        case .transport(let error):
            throw EvalError.invalidInput("reward \(label): POST \(url.absoluteString) failed: \(error.localizedDescription)")
        case .response(let status, _, let data):
            guard status == 200 else {
                throw EvalError.invalidInput("reward \(label): POST \(url.absoluteString) answered \(status): "
                                             + String(decoding: data.prefix(300), as: UTF8.self))
            }
            let value = try? JSONValue.parse(data)
            guard let list = value?.array ?? value?["rewards"]?.array else {
                throw EvalError.invalidInput("reward \(label): POST \(url.absoluteString) answered neither a list nor {\"rewards\": [...]}")
            }
            return list
        }
    }
}
