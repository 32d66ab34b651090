import LatheTensors

/// How a model holds the weights its matrix products read: the frozen base (LoRA, QLoRA), or the copies full
/// fine-tuning multiplies by beside its float32 masters.
public enum WeightFormat: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Plain float32: exact, and what parity tests and full fine-tuning use.
    case float32 = "f32"
    /// bf16 (half the memory), the embedding and LM head included; multiplied in oneDNN's bf16 matmul where that
    /// beats float32 (`BF16Products`), widened to float32 products elsewhere.
    case bfloat16 = "bf16"
    /// QLoRA's 4-bit NormalFloat in blocks of 64, the block scales double-quantized (≈ 4.127 bits per weight).
    case nf4
    /// As the file stores them, for scoring and generating: a GGUF's quantized linears, embedding and LM head stay
    /// in their own blocks (`GGMLBlockWeight`: Q4_1 ≈ 5 bits per weight, Q8_0 8.5), multiplied without a float32
    /// copy; its F32, F16 and BF16 tensors, and every tensor of a safetensors folder, are float32.
    case stored

    public var description: String { rawValue }

    /// Bits a weight takes in this format, scaling constants included: NF4's 4-bit code, an 8-bit absmax per block
    /// of 64, and a float32 scale per group of 256 absmaxes (≈ 4.127). `stored` depends on the file: 32 here (its
    /// plain tensors); a loaded model's `compactWeightSummary` counts its blocks.
    public var bitsPerValue: Double {
        switch self {
        case .float32, .stored: return 32
        case .bfloat16: return 16
        case .nf4: return 4 + 8.0 / 64 + 32.0 / Double(64 * NF4Weight.absmaxBlockSize)
        }
    }

    /// What `--dtype auto` holds the weights in: as stored for scoring and generating (a quantized GGUF's own
    /// blocks, read ~4.5 bits per weight per token; log-probabilities equal transformers' on the same file), and
    /// for training float32 where bf16 products are not faster (bf16 there saves memory, not time), bf16 where they
    /// are (AMX, AMD's AVX512-BF16), as PyTorch users turn on bf16 autocast there.
    public static func auto(for use: WeightUse, products: BF16Products = .current) -> WeightFormat {
        if use == .inference { return .stored }
        return products.beatFloat32 ? .bfloat16 : .float32
    }

    /// The compact copy of a float32 [rows, columns] weight; nil for `.float32` and `.stored` (a weight the file
    /// stores as floats stays float32).
    func compress(_ values: Tensor, rows: Int, columns: Int) throws -> (any CompactWeight)? {
        switch self {
        case .float32, .stored: return nil
        case .bfloat16: return try BF16Weight(rows: rows, columns: columns, values: UnsafeBufferPointer(values.buffer))
        case .nf4: return try NF4Weight(rows: rows, columns: columns, values: UnsafeBufferPointer(values.buffer))
        }
    }
}

/// What a model's weights are loaded for: `--dtype auto` and `--quantize` mean different things for each.
public enum WeightUse: Sendable {
    /// Scoring and generation.
    case inference
    /// The frozen base adapters are trained on (LoRA, QLoRA).
    case frozenBase
    /// Full fine-tuning: float32 master weights (bf16 means compact copies of them for the products), never quantized.
    case masterWeights
}

extension WeightFormat {
    /// The format for a run's `dtype` (auto, f32, bf16) and `quantize` (none, or nf4 for QLoRA) settings, for `use`.
    /// Errors name the setting.
    public static func choose(dtype: String, quantize: String?, use: WeightUse,
                              products: BF16Products = .current) throws -> WeightFormat {
        if let quantize, quantize != "none" {
            guard let format = WeightFormat(rawValue: quantize), format.isQuantized else {
                let names = allCases.filter(\.isQuantized).map(\.rawValue).joined(separator: ", ")
                throw ModelError.invalidConfiguration(file: "quantize", message:
                    "'\(quantize)' is not a quantization Lathe has (choose none or \(names))")
            }
            guard use != .masterWeights else {
                throw ModelError.invalidConfiguration(file: "quantize", message:
                    "a quantized base is frozen: use it with LoRA (QLoRA), not full fine-tuning")
            }
            return format
        }
        switch dtype {
        case "auto": return auto(for: use, products: products)
        case WeightFormat.float32.rawValue: return .float32
        case WeightFormat.bfloat16.rawValue: return .bfloat16
        default:
            throw ModelError.invalidConfiguration(file: "dtype", message: "'\(dtype)' is not one of auto, f32, bf16")
        }
    }

    /// True for the formats `quantize` selects rather than `dtype`.
    public var isQuantized: Bool {
        switch self {
        case .float32, .bfloat16, .stored: return false
        case .nf4: return true
        }
    }
}
