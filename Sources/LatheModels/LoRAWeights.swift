import Foundation
import LatheFormats
import LatheTensors

/// One linear's low-rank update in PEFT's (PyTorch's) layout: ΔW = scale · B·A, A [rank, in] and B [out, rank],
/// row-major.
public struct LoRAPair: Sendable, Equatable {
    public var a: [Float]
    public var b: [Float]
    public let rank: Int
    public let inFeatures: Int
    public let outFeatures: Int

    public init(a: [Float], b: [Float], rank: Int, inFeatures: Int, outFeatures: Int) {
        self.a = a; self.b = b; self.rank = rank; self.inFeatures = inFeatures; self.outFeatures = outFeatures
    }

    /// A pair that changes nothing (B = 0): what a module without an update is, so that every layer has one.
    static func zero(rank: Int, inFeatures: Int, outFeatures: Int) -> LoRAPair {
        LoRAPair(a: [Float](repeating: 0, count: rank * inFeatures), b: [Float](repeating: 0, count: outFeatures * rank),
                 rank: rank, inFeatures: inFeatures, outFeatures: outFeatures)
    }

    /// scale · B·A, [out, in] row-major.
    public func delta(scale: Float) -> [Float] {
        var result = [Float](repeating: 0, count: outFeatures * inFeatures)
        b.withUnsafeBufferPointer { b in
            a.withUnsafeBufferPointer { a in
                result.withUnsafeMutableBufferPointer { r in
                    MatMul.multiply(b.baseAddress!, a.baseAddress!, into: r.baseAddress!, m: outFeatures, n: inFeatures,
                                    k: rank, alpha: scale)
                }
            }
        }
        return result
    }
}

/// A LoRA adapter as plain values, apart from any model: one pair per adapted linear, keyed by the linear's
/// Hugging Face name (`model.layers.3.self_attn.q_proj`), in Hugging Face's layout (Q/K rows un-permuted), with one
/// configuration (rank, alpha, rsLoRA) for all of them. The adapter converters and merges read, write and combine it.
public struct LoRAWeights: Sendable {
    public var config: LoRAConfiguration
    public var pairs: [String: LoRAPair]
    /// `base_model_name_or_path`: the model the adapter was trained on, as its trainer recorded it.
    public var baseModel: String
    /// adapter_config.json keys Lathe adds (`lathe_training`), carried through conversions.
    public var extra: [String: JSONValue]

    public init(config: LoRAConfiguration, pairs: [String: LoRAPair], baseModel: String, extra: [String: JSONValue] = [:]) {
        self.config = config; self.pairs = pairs; self.baseModel = baseModel; self.extra = extra
    }

    /// The linears in model order: by layer, then q, k, v, o, gate, up, down.
    public var moduleNames: [String] {
        pairs.keys.sorted { (Self.layer(of: $0) ?? -1, Self.order(of: $0)) < (Self.layer(of: $1) ?? -1, Self.order(of: $1)) }
    }

    /// The update of `module`: scale · B·A, [out, in].
    public func delta(of module: String) -> [Float]? { pairs[module]?.delta(scale: config.scale) }

    /// `model.layers.3.self_attn.q_proj` → 3.
    static func layer(of module: String) -> Int? {
        let parts = module.split(separator: ".")
        guard parts.count >= 4, parts[0] == "model", parts[1] == "layers" else { return nil }
        return Int(parts[2])
    }

    /// `model.layers.3.self_attn.q_proj` → `q_proj`.
    static func shortName(of module: String) -> String { String(module.split(separator: ".").last ?? "") }

    private static func order(of module: String) -> Int { ModelFamilies.linearNames.firstIndex(of: shortName(of: module)) ?? 99 }

    /// The short names of the linears `pairs` adapt, in model order (PEFT's `target_modules`).
    static func targets(of pairs: [String: LoRAPair]) -> [String] {
        ModelFamilies.linearNames.filter { short in pairs.keys.contains { shortName(of: $0) == short } }
    }

    /// The keys of an adapter_config.json that Lathe carries through conversions (`lathe_training`).
    static func carriedKeys(of object: [String: JSONValue]) -> [String: JSONValue] {
        object["lathe_training"].map { ["lathe_training": $0] } ?? [:]
    }

    /// `q_proj` → `self_attn.q_proj`, `gate_up_proj` → `mlp.gate_up_proj`: where a decoder block keeps each linear.
    static func blockPath(of shortName: String) -> String {
        ["q_proj", "k_proj", "v_proj", "qkv_proj", "o_proj"].contains(shortName) ? "self_attn." + shortName : "mlp." + shortName
    }

    /// Checks that every pair has the configuration's rank and the name of a linear in a layer.
    func validate(source: String) throws {
        for (module, pair) in pairs {
            guard Self.layer(of: module) != nil, ModelFamilies.linearNames.contains(Self.shortName(of: module)) else {
                throw ModelError.invalidConfiguration(file: source, message:
                    "'\(module)' is not a linear of a decoder block (\(ModelFamilies.linearNames.joined(separator: ", ")))")
            }
            guard pair.rank == config.rank else {
                throw ModelError.invalidConfiguration(file: source, message:
                    "'\(module)' has rank \(pair.rank), the adapter's rank is \(config.rank); one rank for every module is supported")
            }
        }
        guard !pairs.isEmpty else { throw ModelError.invalidConfiguration(file: source, message: "the adapter holds no LoRA pairs") }
    }

    /// Gives every layer from 0 to the last one present a pair for each adapted module (B = 0 where it had none), with
    /// the shapes the other layers have: PEFT's folder names its targets once for all layers, and MLX-LM adapts only
    /// its last `num_layers`.
    mutating func fillMissingLayers() {
        var shapes: [String: (rows: Int, columns: Int)] = [:]
        for (module, pair) in pairs { shapes[Self.shortName(of: module)] = (pair.outFeatures, pair.inFeatures) }
        let last = pairs.keys.compactMap(Self.layer(of:)).max() ?? -1
        for layer in 0...max(last, 0) {
            for (short, shape) in shapes {
                let module = "model.layers.\(layer).\(Self.blockPath(of: short))"
                if pairs[module] == nil {
                    pairs[module] = .zero(rank: config.rank, inFeatures: shape.columns, outFeatures: shape.rows)
                }
            }
        }
    }
}

// MARK: - PEFT folders

extension LoRAWeights {
    /// Reads a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors) without a model.
    public init(peftFolder folder: URL) throws {
        let (config, object) = try PEFTAdapter.configuration(in: folder)
        let weightsURL = folder.appendingPathComponent("adapter_model.safetensors")
        let file = try SafetensorsFile(url: weightsURL)
        if let patterns = object["rank_pattern"]?.object, !patterns.isEmpty {
            throw ModelError.invalidConfiguration(file: folder.appendingPathComponent("adapter_config.json").path, message:
                "field 'rank_pattern' gives some modules their own rank; one rank for every module is supported")
        }
        var a: [String: (SafetensorsTensorInfo)] = [:], b: [String: SafetensorsTensorInfo] = [:]
        for tensor in file.tensors {
            // PEFT writes `<module>.lora_A.weight`; some versions keep the adapter name, `.lora_A.default.weight`.
            let name = tensor.name.replacingOccurrences(of: ".default.weight", with: ".weight")
            guard name.hasPrefix(PEFTAdapter.prefix) else { throw ModelError.unusedWeight(file: weightsURL.path, name: tensor.name, count: 1) }
            let key = String(name.dropFirst(PEFTAdapter.prefix.count))
            if key.hasSuffix(".lora_A.weight") { a[String(key.dropLast(".lora_A.weight".count))] = tensor }
            else if key.hasSuffix(".lora_B.weight") { b[String(key.dropLast(".lora_B.weight".count))] = tensor }
            else {
                throw ModelError.invalidConfiguration(file: weightsURL.path, message: "tensor '\(tensor.name)' is not a lora_A or "
                    + "lora_B weight (a SEQ_CLS head or modules_to_save); only LoRA pairs convert and merge")
            }
        }
        var pairs: [String: LoRAPair] = [:]
        for (module, infoA) in a {
            guard let infoB = b[module] else {
                throw ModelError.missingWeight(file: weightsURL.path, name: PEFTAdapter.prefix + module + ".lora_B.weight")
            }
            guard infoA.dimensions.count == 2, infoB.dimensions.count == 2, infoA.dimensions[0] == infoB.dimensions[1] else {
                throw ModelError.invalidConfiguration(file: weightsURL.path, message: "'\(module)': lora_A \(infoA.dimensions) and "
                    + "lora_B \(infoB.dimensions) do not make a pair ([r, in] and [out, r])")
            }
            pairs[module] = LoRAPair(a: try file.floats(of: infoA), b: try file.floats(of: infoB), rank: infoA.dimensions[0],
                                     inFeatures: infoA.dimensions[1], outFeatures: infoB.dimensions[0])
        }
        if let module = b.keys.first(where: { a[$0] == nil }) {
            throw ModelError.missingWeight(file: weightsURL.path, name: PEFTAdapter.prefix + module + ".lora_A.weight")
        }
        self.init(config: config, pairs: pairs, baseModel: object["base_model_name_or_path"]?.string ?? "",
                  extra: Self.carriedKeys(of: object))
        try validate(source: weightsURL.path)
    }

    /// Writes a PEFT LoRA folder that PEFT's `PeftModel.from_pretrained` and Lathe's `--adapter` load.
    public func writePEFT(to folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var filled = self
        filled.fillMissingLayers()
        var writer = SafetensorsWriter(metadata: ["format": "pt"])
        for module in filled.moduleNames {
            let pair = filled.pairs[module]!
            let name = PEFTAdapter.prefix + module
            try writer.addTensor(name: name + ".lora_A.weight", dimensions: [pair.rank, pair.inFeatures], values: pair.a, dtype: .f32)
            try writer.addTensor(name: name + ".lora_B.weight", dimensions: [pair.outFeatures, pair.rank], values: pair.b, dtype: .f32)
        }
        var config = self.config
        config.targets = Self.targets(of: pairs)
        try PEFTAdapter.writeConfiguration(config, baseModel: baseModel, extra: extra, to: folder)
        try writer.write(to: folder.appendingPathComponent("adapter_model.safetensors"))
    }
}
