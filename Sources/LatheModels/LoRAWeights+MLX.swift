import Foundation
import LatheFormats

/// MLX-LM's adapter folder, as mlx_lm/lora.py saves it and mlx_lm/tuner/utils.py `load_adapters` reads it:
/// `adapters.safetensors` with `model.layers.N.self_attn.q_proj.lora_a` [in, r] and `.lora_b` [r, out] (PEFT's A and
/// B transposed: mlx_lm/tuner/lora.py computes x·lora_a·lora_b), and `adapter_config.json` with `fine_tune_type:
/// "lora"`, `num_layers` (the last N blocks are adapted; -1 all) and `lora_parameters: {rank, scale, dropout, keys}`,
/// where `scale` multiplies the update as it is (PEFT's alpha / r, or alpha / √r for rsLoRA).
extension LoRAWeights {
    static let mlxWeightsFile = "adapters.safetensors"

    public init(mlxFolder folder: URL) throws {
        let configURL = folder.appendingPathComponent("adapter_config.json")
        guard let data = try? Data(contentsOf: configURL), let object = (try? JSONValue.parse(data))?.object else {
            throw ModelError.invalidConfiguration(file: configURL.path, message: "missing or not a JSON object; is this an MLX-LM adapter folder?")
        }
        let fields = JSONFields(object: object, source: configURL.path)
        let kind = try fields.optionalString("fine_tune_type") ?? "lora"
        guard kind == "lora" else {
            throw ModelError.invalidConfiguration(file: configURL.path, message: "field 'fine_tune_type' is \(kind); only lora adapters convert")
        }
        guard let parameters = object["lora_parameters"]?.object else {
            throw ModelError.invalidConfiguration(file: configURL.path, message: "missing field 'lora_parameters' ({rank, scale, dropout, keys})")
        }
        let lora = JSONFields(object: parameters, source: configURL.path, prefix: "lora_parameters.")
        let rank = try lora.int("rank"), scale = try lora.double("scale")

        let weightsURL = folder.appendingPathComponent(Self.mlxWeightsFile)
        let file = try SafetensorsFile(url: weightsURL)
        var pairs: [String: LoRAPair] = [:]
        for tensor in file.tensors {
            guard tensor.name.hasSuffix(".lora_a") || tensor.name.hasSuffix(".lora_b") else {
                throw ModelError.invalidConfiguration(file: weightsURL.path, message:
                    "tensor '\(tensor.name)' is not a lora_a or lora_b weight (DoRA magnitudes and full fine-tuning do not convert)")
            }
            guard tensor.name.hasSuffix(".lora_a") else { continue }
            let module = String(tensor.name.dropLast(".lora_a".count))
            guard let tensorB = file.tensor(named: module + ".lora_b") else {
                throw ModelError.missingWeight(file: weightsURL.path, name: module + ".lora_b")
            }
            guard tensor.dimensions.count == 2, tensorB.dimensions.count == 2, tensor.dimensions[1] == tensorB.dimensions[0] else {
                throw ModelError.invalidConfiguration(file: weightsURL.path, message: "'\(module)': lora_a \(tensor.dimensions) and "
                    + "lora_b \(tensorB.dimensions) do not make a pair ([in, r] and [r, out])")
            }
            let (inFeatures, r, outFeatures) = (tensor.dimensions[0], tensor.dimensions[1], tensorB.dimensions[1])
            pairs[module] = LoRAPair(a: Self.transposed(try file.floats(of: tensor), rows: inFeatures, columns: r),
                                     b: Self.transposed(try file.floats(of: tensorB), rows: r, columns: outFeatures),
                                     rank: r, inFeatures: inFeatures, outFeatures: outFeatures)
        }
        if let stray = file.tensors.first(where: { $0.name.hasSuffix(".lora_b") && pairs[String($0.name.dropLast(".lora_b".count))] == nil }) {
            throw ModelError.missingWeight(file: weightsURL.path, name: String(stray.name.dropLast(".lora_b".count)) + ".lora_a")
        }
        let targets = Self.targets(of: pairs)
        // scale multiplies as it is: alpha = scale·r gives PEFT's alpha / r.
        let config = LoRAConfiguration(rank: rank, alpha: Float(scale * Double(rank)),
                                       dropout: Float(try lora.optionalDouble("dropout") ?? 0), targets: targets)
        self.init(config: config, pairs: pairs, baseModel: object["model"]?.string ?? "", extra: Self.carriedKeys(of: object))
        try validate(source: weightsURL.path)
    }

    /// Writes the adapter as an MLX-LM folder that `mlx_lm.generate --adapter-path` reads. `num_layers` is -1 (every
    /// block gets a LoRA layer): mlx_lm starts B at zero, so a block the file has no pair for stays unchanged, where a
    /// count would adapt the last N blocks, whichever the file's pairs are for.
    public func writeMLX(to folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var writer = SafetensorsWriter(metadata: ["format": "mlx"])
        for module in moduleNames {
            let pair = pairs[module]!
            try writer.addTensor(name: module + ".lora_a", dimensions: [pair.inFeatures, pair.rank],
                                 values: Self.transposed(pair.a, rows: pair.rank, columns: pair.inFeatures), dtype: .f32)
            try writer.addTensor(name: module + ".lora_b", dimensions: [pair.rank, pair.outFeatures],
                                 values: Self.transposed(pair.b, rows: pair.outFeatures, columns: pair.rank), dtype: .f32)
        }
        let keys = Self.targets(of: pairs)
            .map { JSONValue.string(Self.blockPath(of: $0)) }
        var object: [String: JSONValue] = [
            "fine_tune_type": .string("lora"), "model": .string(baseModel),
            "num_layers": .number(-1),
            "lora_parameters": .object(["rank": .number(Double(config.rank)), "scale": .number(Double(config.scale)),
                                        "dropout": .number(Double(config.dropout)), "keys": .array(keys)]),
        ]
        for (key, value) in extra { object[key] = value }
        try AtomicFileWriter.write(try JSONValue.object(object).formatted(), to: folder.appendingPathComponent("adapter_config.json"))
        try writer.write(to: folder.appendingPathComponent(Self.mlxWeightsFile))
    }

    /// A [rows, columns] row-major matrix as [columns, rows].
    static func transposed(_ values: [Float], rows: Int, columns: Int) -> [Float] {
        var result = [Float](repeating: 0, count: values.count)
        for r in 0..<rows { for c in 0..<columns { result[c * rows + r] = values[r * columns + c] } }
        return result
    }
}
