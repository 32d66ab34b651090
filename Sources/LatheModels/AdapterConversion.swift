import Foundation
import LatheFormats

/// The adapter formats Lathe reads and writes: Hugging Face PEFT's folder, MLX-LM's folder, llama.cpp's GGUF LoRA.
public enum AdapterFormat: String, CaseIterable, Sendable {
    case peft, mlx, gguf

    /// The format of the adapter at `url`: a folder with adapter_model.safetensors (PEFT) or adapters.safetensors
    /// (MLX-LM), or a file that starts with GGUF's magic.
    public static func detect(_ url: URL) throws -> AdapterFormat {
        let manager = FileManager.default
        var isFolder: ObjCBool = false
        guard manager.fileExists(atPath: url.path, isDirectory: &isFolder) else {
            throw ModelError.invalidInput("\(url.path): no such adapter file or folder")
        }
        if isFolder.boolValue {
            if manager.fileExists(atPath: url.appendingPathComponent("adapter_model.safetensors").path) { return .peft }
            if manager.fileExists(atPath: url.appendingPathComponent(LoRAWeights.mlxWeightsFile).path) { return .mlx }
        } else if let handle = FileHandle(forReadingAtPath: url.path), let magic = try? handle.read(upToCount: 4),
                  magic == Data("GGUF".utf8) {
            return .gguf
        }
        throw ModelError.invalidInput("\(url.path): not an adapter Lathe knows: expected a PEFT folder (adapter_config.json + "
            + "adapter_model.safetensors), an MLX-LM folder (adapter_config.json + adapters.safetensors) or a llama.cpp LoRA .gguf")
    }
}

/// One adapter read from a file or folder, with the format it was in.
public struct AdapterFile: Sendable {
    public let url: URL
    public let format: AdapterFormat
    public let weights: LoRAWeights

    /// Reads the adapter at `url` in its own format (detected); `base` is needed for a GGUF LoRA, and when given, the
    /// adapter is checked against it.
    public init(reading url: URL, base: AdapterBaseModel?) throws {
        self.url = url
        format = try AdapterFormat.detect(url)
        switch format {
        case .peft: weights = try LoRAWeights(peftFolder: url)
        case .mlx: weights = try LoRAWeights(mlxFolder: url)
        case .gguf: weights = try LoRAWeights(ggufLoRA: url, base: try Self.required(base, for: url))
        }
        try base?.check(weights, source: url.path)
    }

    /// Writes `weights` to `url` in `format` (`base` needed for GGUF).
    public static func write(_ weights: LoRAWeights, as format: AdapterFormat, to url: URL, base: AdapterBaseModel?) throws {
        switch format {
        case .peft: try weights.writePEFT(to: url)
        case .mlx: try weights.writeMLX(to: url)
        case .gguf: try weights.writeGGUFLoRA(to: url, base: try required(base, for: url))
        }
    }

    static func required(_ base: AdapterBaseModel?, for url: URL) throws -> AdapterBaseModel {
        guard let base else {
            throw ModelError.invalidInput("\(url.path): a llama.cpp GGUF LoRA needs its base model's architecture and head "
                + "counts: give --model (the base's .gguf, Hugging Face folder or name)")
        }
        return base
    }
}

/// `lathe adapter convert`: an adapter from one format into another, checked by reading the result back.
public enum AdapterConversion {
    /// What a conversion wrote and how closely the written adapter's updates match the input's.
    public struct Report: Sendable {
        public let from: AdapterFormat
        public let to: AdapterFormat
        public let modules: Int
        /// The base model's file or folder, when the conversion used one.
        public let base: String?
        /// The largest |ΔW_written − ΔW_input| over all linears, relative to that linear's largest |ΔW_input|.
        public let largestRelativeDifference: Float
    }

    /// Relative tolerance of the read-back check: float32 rounding of the scale (alpha·√r, scale·r) is ~1e-7; a
    /// transposed or misplaced factor is off by O(1).
    public static let tolerance: Float = 1e-5

    /// Converts the adapter at `input` into `format` at `output`. The base is `model` when given, else, for a GGUF
    /// result, the adapter's own `base_model_name_or_path` if Lathe can find it (a path or a known model's name).
    public static func convert(input: URL, to format: AdapterFormat, output: URL, model: String?) throws -> Report {
        var base = try model.map(AdapterBaseModel.init(model:))
        let source = try AdapterFile(reading: input, base: base)
        if base == nil, format == .gguf, !source.weights.baseModel.isEmpty {
            base = try? AdapterBaseModel(model: source.weights.baseModel)
            try base?.check(source.weights, source: input.path)
        }
        try AdapterFile.write(source.weights, as: format, to: output, base: base)
        let written = try AdapterFile(reading: output, base: base)
        let difference = try largestDifference(written.weights, source.weights, writtenTo: output)
        return Report(from: source.format, to: format, modules: source.weights.pairs.count, base: base?.source,
                      largestRelativeDifference: difference)
    }

    /// Compares every linear's ΔW (a linear only one side adapts must have ΔW = 0 on the other) and throws, naming the
    /// linear, when they differ by more than `tolerance`.
    static func largestDifference(_ written: LoRAWeights, _ input: LoRAWeights, writtenTo url: URL) throws -> Float {
        var largest: Float = 0
        for module in Set(written.pairs.keys).union(input.pairs.keys).sorted() {
            let got = written.delta(of: module), expected = input.delta(of: module)
            guard let values = got ?? expected else { continue }
            let reference = expected ?? [Float](repeating: 0, count: values.count)
            let actual = got ?? [Float](repeating: 0, count: values.count)
            guard actual.count == reference.count else {
                throw ModelError.invalidConfiguration(file: url.path, message: "'\(module)': the written update has \(actual.count) "
                    + "values, the input's \(reference.count); the conversion is wrong (please report it)")
            }
            let scale = reference.reduce(Float(0)) { max($0, abs($1)) }
            let worst = zip(actual, reference).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
            let relative = scale > 0 ? worst / scale : worst
            guard relative <= tolerance else {
                throw ModelError.invalidConfiguration(file: url.path, message: "'\(module)': the written adapter's update B·A·scale "
                    + "differs from the input's by \(relative) of its largest value (tolerance \(tolerance)); the conversion is "
                    + "wrong (a transposed or permuted factor?), please report it")
            }
            largest = max(largest, relative)
        }
        return largest
    }
}
