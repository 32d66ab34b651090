import Foundation
import LatheFormats
import LatheTensors

/// Which linears get LoRA adapters and how they are scaled: PEFT's `LoraConfig` for causal LMs.
public struct LoRAConfiguration: Codable, Sendable, Equatable {
    public var rank: Int = 8
    public var alpha: Float = 16
    public var dropout: Float = 0
    /// Module names (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`; Phi-3's `qkv_proj`,
    /// `gate_up_proj`) or `all-linear`. The default stands for the family's own attention targets.
    public var targets: [String] = LoRAConfiguration.defaultTargets
    /// rsLoRA: scale alpha/√rank instead of alpha/rank.
    public var rsLoRA = false

    public init(rank: Int = 8, alpha: Float = 16, dropout: Float = 0, targets: [String] = LoRAConfiguration.defaultTargets,
                rsLoRA: Bool = false) {
        self.rank = rank; self.alpha = alpha; self.dropout = dropout; self.targets = targets; self.rsLoRA = rsLoRA
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case rank, alpha, dropout, targets, rsLoRA = "rslora" }

    /// Every key is optional in a configuration file; missing ones keep their defaults; unknown ones are errors.
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = LoRAConfiguration()
        rank = try c.decodeIfPresent(Int.self, forKey: .rank) ?? defaults.rank
        alpha = try c.decodeIfPresent(Float.self, forKey: .alpha) ?? defaults.alpha
        dropout = try c.decodeIfPresent(Float.self, forKey: .dropout) ?? defaults.dropout
        targets = try c.decodeIfPresent([String].self, forKey: .targets) ?? defaults.targets
        rsLoRA = try c.decodeIfPresent(Bool.self, forKey: .rsLoRA) ?? defaults.rsLoRA
    }

    /// The module names the targets stand for.
    /// The targets when none are given: the attention's linears (each family's `defaultLoRATargets`).
    public static let defaultTargets = ["q_proj", "k_proj", "v_proj", "o_proj"]

    /// The module names the targets stand for in a model of `family`: its linears for `all-linear`, its attention's for
    /// the default targets (Phi-3's `qkv_proj`, `o_proj`), otherwise the targets as given.
    public func targetModules(in family: any ModelFamily) -> [String] {
        if targets.contains("all-linear") { return family.linearNames }
        return targets == Self.defaultTargets ? family.defaultLoRATargets : targets
    }

    /// Checks that every target is a linear of `family` (the message names the file or option `source`).
    func check(in family: any ModelFamily) throws {
        if let unknown = targetModules(in: family).first(where: { !family.linearNames.contains($0) }) {
            throw ModelError.invalidInput("lora target '\(unknown)' is not a linear of \(family.name) models (use "
                + "\(family.linearNames.joined(separator: ", ")) or all-linear)")
        }
    }

    public var scale: Float { rsLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }

    public func validate() throws {
        guard rank > 0 else { throw ModelError.invalidInput("lora rank must be positive, got \(rank)") }
        guard alpha > 0 else { throw ModelError.invalidInput("lora alpha must be positive, got \(alpha)") }
        guard dropout >= 0 && dropout < 1 else { throw ModelError.invalidInput("lora dropout must be in [0, 1), got \(dropout)") }
        if let unknown = targets.first(where: { $0 != "all-linear" && !ModelFamilies.linearNames.contains($0) }) {
            throw ModelError.invalidInput("lora target '\(unknown)' is not a linear of this model (use \(ModelFamilies.linearNames.joined(separator: ", ")) or all-linear)")
        }
    }
}

extension DecoderModel {
    /// Freezes the base and attaches a new adapter to every targeted linear; returns the adapters in model order.
    @discardableResult
    public func attachLoRA(_ config: LoRAConfiguration, name: String = "default", seed: UInt64) throws -> [LoRAAdapter] {
        try config.validate()
        try config.check(in: self.config.family)
        for p in parameters { p.trainable = false }
        var adapters: [LoRAAdapter] = []
        for (i, block) in blocks.enumerated() {
            for module in config.targetModules(in: self.config.family) {
                guard let linear = block.linear(named: module) else { continue }
                // Each adapter draws its initial A from its own stream, so the result does not depend on order.
                let adapter = LoRAAdapter(linear: linear, adapterName: name, rank: config.rank, scale: config.scale,
                                          dropout: config.dropout, seed: seed &+ UInt64(i * 16 + adapters.count))
                linear.attach(adapter)
                adapters.append(adapter)
            }
        }
        return adapters
    }

    /// Every adapter attached to the model's linears.
    public var adapters: [LoRAAdapter] { blocks.flatMap { $0.linears.flatMap(\.adapters) } }

    /// Switches the named adapter (all of them when nil) on or off, without touching the base.
    public func setAdapters(enabled: Bool, named name: String? = nil) {
        for adapter in adapters where name == nil || adapter.adapterName == name { adapter.enabled = enabled }
    }

    /// The name of the adapter switched on now (nil: none, the base): what decoding "the model as it is set" asks the
    /// batch decoder for, which applies one adapter per row.
    public func switchedOnAdapter() throws -> String? {
        let names = Set(adapters.filter(\.enabled).map(\.adapterName)).sorted()
        guard names.count <= 1 else {
            throw ModelError.invalidInput("adapters \(names.joined(separator: ", ")) are all switched on; decoding applies one "
                + "adapter per row, so switch all but one off (setAdapters(enabled:named:))")
        }
        return names.first
    }

    /// Runs `body` with exactly the adapters `enabled` picks switched on (none: the base), then restores every switch.
    public func withAdapters<T>(where enabled: (LoRAAdapter) -> Bool, _ body: () throws -> T) rethrows -> T {
        let all = adapters
        let states = all.map(\.enabled)
        defer { for (adapter, state) in zip(all, states) { adapter.enabled = state } }
        for adapter in all { adapter.enabled = enabled(adapter) }
        return try body()
    }

    /// Runs `body` with every adapter's dropout off (evaluation, sampling), then restores each adapter's switch.
    public func withoutDropout<T>(_ body: () throws -> T) rethrows -> T {
        let all = adapters
        let states = all.map(\.training)
        defer { for (adapter, state) in zip(all, states) { adapter.training = state } }
        for adapter in all { adapter.training = false }
        return try body()
    }

    /// Takes the named adapter off every linear (a server unloading it); the base and other adapters stay.
    public func detachAdapters(named name: String) {
        for block in blocks { for linear in block.linears { linear.detachAdapters(named: name) } }
    }

    /// Folds the enabled adapters into the base weights (W += scale·B·A) and detaches them.
    public func mergeAdapters() {
        expandWeights()
        for block in blocks {
            for linear in block.linears {
                for adapter in linear.adapters where adapter.enabled {
                    MatMul.multiply(adapter.b.tensor.pointer, adapter.a.tensor.pointer, into: linear.weight.tensor.pointer,
                                    m: linear.outFeatures, n: linear.inFeatures, k: adapter.rank, accumulate: true,
                                    alpha: adapter.scale)
                    linear.detachAdapters(named: adapter.adapterName)
                }
            }
        }
    }
}

/// LoRA adapters in Hugging Face PEFT's format: `adapter_model.safetensors` with keys
/// `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` ([r, in]) and `…lora_B.weight` ([out, r]),
/// and `adapter_config.json`. Weights are in Hugging Face's layout (Q/K un-permuted) whatever file the base came from.
/// With heads (a reward model's `score.weight`), it is PEFT's SEQ_CLS adapter: each head under
/// `base_model.model.<name>` (where PEFT 0.21 writes a `modules_to_save` module) and named in `modules_to_save`.
public enum PEFTAdapter {
    static let prefix = "base_model.model."

    /// Writes the adapters named `name` (atomically, the weights file last renamed into place).
    public static func save(_ model: DecoderModel, adapterName name: String = "default", config: LoRAConfiguration,
                            heads: [Parameter] = [], baseModel: String, to folder: URL, extra: [String: JSONValue] = [:]) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var writer = SafetensorsWriter(metadata: ["format": "pt"])
        for adapter in model.adapters where adapter.adapterName == name {
            for p in adapter.parameters {
                try writer.addTensor(name: prefix + p.name, dimensions: p.shape, values: p.tensor.array, dtype: .f32)
            }
        }
        for head in heads {
            try writer.addTensor(name: prefix + head.name, dimensions: head.shape, values: head.tensor.array, dtype: .f32)
        }
        var written = config
        written.targets = config.targetModules(in: model.config.family)
        try writeConfiguration(written, modulesToSave: heads.map(moduleName(of:)), baseModel: baseModel, extra: extra, to: folder)
        try writer.write(to: folder.appendingPathComponent("adapter_model.safetensors"))
    }

    /// Writes adapter_config.json as PEFT 0.21 does for a LoRA adapter (SEQ_CLS when it saves heads), plus `extra` keys;
    /// `config.targets` are module names (resolved for the model: no `all-linear`).
    static func writeConfiguration(_ config: LoRAConfiguration, modulesToSave: [String] = [], baseModel: String,
                                   extra: [String: JSONValue] = [:], to folder: URL) throws {
        var object: [String: JSONValue] = [
            "peft_type": .string("LORA"), "task_type": .string(modulesToSave.isEmpty ? "CAUSAL_LM" : "SEQ_CLS"),
            "r": .number(Double(config.rank)), "lora_alpha": .number(Double(config.alpha)),
            "lora_dropout": .number(Double(config.dropout)),
            "target_modules": .array(config.targets.map { .string($0) }),
            "use_rslora": .bool(config.rsLoRA), "bias": .string("none"), "fan_in_fan_out": .bool(false),
            "inference_mode": .bool(true), "init_lora_weights": .bool(true),
            "base_model_name_or_path": .string(baseModel),
            "modules_to_save": modulesToSave.isEmpty ? .null : .array(modulesToSave.map { .string($0) }),
            "rank_pattern": .object([:]), "alpha_pattern": .object([:]),
        ]
        for (key, value) in extra { object[key] = value }
        try AtomicFileWriter.write(try JSONValue.object(object).formatted(), to: folder.appendingPathComponent("adapter_config.json"))
    }

    /// `score.weight` → `score`.
    static func moduleName(of head: Parameter) -> String {
        head.name.hasSuffix(".weight") ? String(head.name.dropLast(".weight".count)) : head.name
    }

    /// Reads and checks a PEFT LoRA adapter's adapter_config.json: its LoRA settings and the whole JSON object.
    static func configuration(in folder: URL) throws -> (config: LoRAConfiguration, object: [String: JSONValue]) {
        let configURL = folder.appendingPathComponent("adapter_config.json")
        let configPath = configURL.path
        guard let data = try? Data(contentsOf: configURL), let object = (try? JSONValue.parse(data))?.object else {
            throw ModelError.invalidConfiguration(file: configPath, message: "missing or not a JSON object; is this a PEFT adapter folder?")
        }
        let fields = JSONFields(object: object, source: configPath)
        guard try fields.optionalString("peft_type") ?? "LORA" == "LORA" else {
            throw ModelError.invalidConfiguration(file: configPath, message: "field 'peft_type' must be LORA")
        }
        let targets: [String]
        switch object["target_modules"] {
        case .array(let names)?: targets = names.compactMap(\.string)
        case .string(let name)?: targets = [name]
        default: throw ModelError.invalidConfiguration(file: configPath, message: "field 'target_modules' must be a list of module names")
        }
        let config = LoRAConfiguration(rank: try fields.int("r"), alpha: Float(try fields.double("lora_alpha")),
                                       dropout: Float(try fields.optionalDouble("lora_dropout") ?? 0), targets: targets,
                                       rsLoRA: try fields.optionalBool("use_rslora") ?? false)
        do { try config.validate() } catch { throw ModelError.invalidConfiguration(file: configPath, message: "\(error)") }
        return (config, object)
    }

    /// Reads a PEFT LoRA adapter folder and attaches it to the model under `name`, and fills `heads` (a SEQ_CLS
    /// adapter's `modules_to_save`, frozen); checks every tensor's key and shape.
    @discardableResult
    public static func load(_ folder: URL, into model: DecoderModel, adapterName name: String = "default",
                            heads: [Parameter] = []) throws -> LoRAConfiguration {
        let config = try configuration(in: folder).config
        do { try config.check(in: model.config.family) } catch {
            throw ModelError.invalidConfiguration(file: folder.appendingPathComponent("adapter_config.json").path, message: "\(error)")
        }
        let weightsURL = folder.appendingPathComponent("adapter_model.safetensors")
        let weights = try SafetensorsFile(url: weightsURL)
        var unused = Set(weights.tensors.map(\.name))
        // The heads first: a SEQ_CLS adapter without its head fails before any LoRA is attached.
        for head in heads {
            let key = prefix + head.name
            guard let info = weights.tensor(named: key) else {
                throw ModelError.missingWeight(file: weightsURL.path, name: key)
            }
            guard info.dimensions == head.shape else {
                throw ModelError.wrongShape(file: weightsURL.path, name: key, expected: head.shape, found: info.dimensions)
            }
            _ = head.tensor.buffer.update(from: try weights.floats(of: info))
            head.trainable = false
            unused.remove(key)
        }
        for block in model.blocks {
            for module in config.targetModules(in: model.config.family) {
                guard let linear = block.linear(named: module) else { continue }
                let adapter = LoRAAdapter(linear: linear, adapterName: name, rank: config.rank, scale: config.scale,
                                          dropout: config.dropout, seed: 0)
                for p in adapter.parameters {
                    // PEFT writes keys without the adapter name; some versions keep ".default".
                    let key = [prefix + p.name, prefix + p.name.replacingOccurrences(of: ".weight", with: ".default.weight")]
                        .first { weights.tensor(named: $0) != nil }
                    guard let key, let info = weights.tensor(named: key) else {
                        throw ModelError.missingWeight(file: weightsURL.path, name: prefix + p.name)
                    }
                    guard info.dimensions == p.shape else {
                        throw ModelError.wrongShape(file: weightsURL.path, name: key, expected: p.shape, found: info.dimensions)
                    }
                    _ = p.tensor.buffer.update(from: try weights.floats(of: info))
                    p.trainable = false
                    unused.remove(key)
                }
                linear.attach(adapter)
            }
        }
        if let extra = unused.sorted().first {
            throw ModelError.unusedWeight(file: weightsURL.path, name: extra, count: unused.count)
        }
        return config
    }
}
