/// A whole-file quantization as llama.cpp names it: `llama-quantize`'s TYPE argument, and as the raw value the
/// `general.file_type` it writes (llama.h's LLAMA_FTYPE_*). The types Lathe writes.
public enum LlamaFileType: UInt32, CaseIterable, Sendable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 7, q5_0 = 8, q4_K_M = 15, q5_K_M = 17, q6_K = 18, bf16 = 32

    /// llama-quantize's name, e.g. "Q4_K_M".
    public var description: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .q8_0: return "Q8_0"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q4_K_M: return "Q4_K_M"
        case .q5_K_M: return "Q5_K_M"
        case .q6_K: return "Q6_K"
        }
    }

    /// The type named `name`, in any letter case ("q4_k_m", "Q4_K_M").
    public init?(name: String) {
        guard let type = Self.allCases.first(where: { $0.description.lowercased() == name.lowercased() }) else { return nil }
        self = type
    }

    /// The names, for help texts and errors.
    public static var names: String { allCases.map(\.description).joined(separator: ", ") }

    /// The type of every quantizable tensor before the mixture's exceptions (llama_ftype_get_default_type).
    public var defaultType: GGMLType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .q8_0: return .q8_0
        case .q4_0: return .q4_0
        case .q4_1: return .q4_1
        case .q5_0: return .q5_0
        case .q4_K_M: return .q4_K
        case .q5_K_M: return .q5_K
        case .q6_K: return .q6_K
        }
    }
}
