import Foundation
import LatheFormats

/// llama.cpp's LoRA adapter file, as its convert_lora_to_gguf.py writes it and src/llama-adapter.cpp reads it:
/// `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, the base's `general.architecture`, and per
/// linear `blk.N.attn_q.weight.lora_a` (ggml dimensions [in, r]: PEFT's A as it is) and `.lora_b` ([r, out]: PEFT's
/// B, its rows permuted for ggml's RoPE in Q and K of llama models as the base's own weights are). llama.cpp scales by
/// alpha / r with r = lora_b's first dimension (alpha 0: scale 1); it has no rsLoRA, so alpha / √r is written as
/// alpha·√r.
extension LoRAWeights {
    public init(ggufLoRA url: URL, base: AdapterBaseModel) throws {
        let file = try GGUFFile(url: url)
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: url.path, message: message) }
        guard file.metadata["general.type"]?.string == "adapter", file.metadata["adapter.type"]?.string == "lora" else {
            throw fail("not a llama.cpp LoRA adapter: 'general.type' must be adapter and 'adapter.type' lora")
        }
        let architecture = try file.requiredString("general.architecture")
        guard architecture == base.architecture else {
            throw fail("'general.architecture' is \(architecture), the base \(base.source) is \(base.architecture); is --model the adapter's base?")
        }
        var pairs: [String: LoRAPair] = [:]
        var rank: Int?
        for tensor in file.tensors where tensor.name.hasSuffix(".lora_a") {
            let weightName = String(tensor.name.dropLast(".lora_a".count))
            guard let hfName = GGUFWeightSource.huggingFaceName(ofGGUF: weightName, family: base.config.family), hfName.hasSuffix(".weight"),
                  LoRAWeights.layer(of: hfName) != nil else {
                throw fail("tensor '\(tensor.name)' is not the LoRA of a block's linear")
            }
            guard let tensorB = file.tensor(named: weightName + ".lora_b") else {
                throw ModelError.missingWeight(file: url.path, name: weightName + ".lora_b")
            }
            // ggml lists dimensions fastest first: lora_a [in, r] is PEFT's [r, in], lora_b [r, out] its [out, r].
            guard tensor.dimensions.count == 2, tensorB.dimensions.count == 2, tensor.dimensions[1] == tensorB.dimensions[0] else {
                throw fail("'\(tensor.name)' \(tensor.dimensions) and its lora_b \(tensorB.dimensions) do not make a pair ([in, r] and [r, out])")
            }
            let module = String(hfName.dropLast(".weight".count))
            let (inFeatures, r, outFeatures) = (tensor.dimensions[0], tensor.dimensions[1], tensorB.dimensions[1])
            guard rank == nil || rank == r else { throw fail("'\(tensor.name)' has rank \(r), others \(rank!); one rank for every module is supported") }
            rank = r
            var b = try file.floats(of: tensorB)
            if let heads = base.permutedHeads(of: module) {
                b.withUnsafeMutableBufferPointer { GGUFWeightSource.permuteRows($0, rows: outFeatures, heads: heads, toGGML: false) }
            }
            pairs[module] = LoRAPair(a: try file.floats(of: tensor), b: b, rank: r, inFeatures: inFeatures, outFeatures: outFeatures)
        }
        if let stray = file.tensors.first(where: { t in
            t.name.hasSuffix(".lora_b") && file.tensor(named: String(t.name.dropLast(".lora_b".count)) + ".lora_a") == nil
        }) {
            throw ModelError.missingWeight(file: url.path, name: String(stray.name.dropLast(".lora_b".count)) + ".lora_a")
        }
        if let other = file.tensors.first(where: { !$0.name.hasSuffix(".lora_a") && !$0.name.hasSuffix(".lora_b") }) {
            throw fail("tensor '\(other.name)' is not a lora_a or lora_b tensor (norm or embedding updates are not supported)")
        }
        guard let rank else { throw fail("the file holds no lora_a / lora_b tensors") }
        let alpha = Float(file.metadata["adapter.lora.alpha"]?.double ?? 0)
        let targets = Self.targets(of: pairs)
        // llama.cpp: alpha 0 (or none) means scale 1, which PEFT writes as alpha = r.
        let config = LoRAConfiguration(rank: rank, alpha: alpha == 0 ? Float(rank) : alpha, targets: targets)
        // The base the adapter was trained on, as written below; else the base it was read against.
        self.init(config: config, pairs: pairs, baseModel: file.metadata["general.base_model.0.name"]?.string ?? base.source)
        try validate(source: url.path)
        try base.check(self, source: url.path)
    }

    /// Writes the adapter as llama.cpp's LoRA GGUF for `base` (float32 tensors, like the converter's default); the
    /// caller has checked the adapter against the base (`AdapterBaseModel.check`).
    public func writeGGUFLoRA(to url: URL, base: AdapterBaseModel) throws {
        var writer = try GGUFWriter()
        try writer.setValue(.string(base.architecture), forKey: "general.architecture")
        try writer.setValue(.string("adapter"), forKey: "general.type")
        try writer.setValue(.string(url.deletingPathExtension().lastPathComponent), forKey: "general.name")
        // llama.cpp's metadata for the model a file derives from: here the base the adapter records.
        if !baseModel.isEmpty {
            try writer.setValue(.uint32(1), forKey: "general.base_model.count")
            try writer.setValue(.string(baseModel), forKey: "general.base_model.0.name")
        }
        try writer.setValue(.string("lora"), forKey: "adapter.type")
        try writer.setValue(.float32(llamaCppAlpha), forKey: "adapter.lora.alpha")
        for module in moduleNames {
            let pair = pairs[module]!
            var b = pair.b
            if let heads = base.permutedHeads(of: module) {
                b.withUnsafeMutableBufferPointer { GGUFWeightSource.permuteRows($0, rows: pair.outFeatures, heads: heads, toGGML: true) }
            }
            let name = GGUFWeightSource.ggufName(ofHuggingFace: module + ".weight", family: base.config.family)
            try writer.addTensor(name: name + ".lora_a", dimensions: [pair.inFeatures, pair.rank], values: pair.a, type: .f32)
            try writer.addTensor(name: name + ".lora_b", dimensions: [pair.rank, pair.outFeatures], values: b, type: .f32)
        }
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try writer.write(to: url)
    }

    /// The alpha llama.cpp needs for this adapter's scale: alpha itself, or alpha·√r for rsLoRA (alpha / √r = alpha·√r / r).
    var llamaCppAlpha: Float { config.rsLoRA ? config.alpha * Float(config.rank).squareRoot() : config.alpha }
}
