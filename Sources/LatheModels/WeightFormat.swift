import LatheTensors

/// How a model holds the frozen weights of its transformer blocks' linear layers.
public enum WeightFormat: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Plain float32: exact, and what parity tests and full fine-tuning use.
    case float32 = "f32"
    /// bf16 (half the memory); multiplied natively where the CPU has AMX or AVX512-BF16.
    case bfloat16 = "bf16"

    public var description: String { rawValue }

    /// bf16 where the CPU multiplies it natively, float32 elsewhere (emulated bf16 is slower than float32).
    public static var fastest: WeightFormat {
        BF16Weight.multipliesNatively ? .bfloat16 : .float32
    }

    /// The compact copy of a float32 [rows, columns] weight; nil for `.float32`.
    func compress(_ values: Tensor, rows: Int, columns: Int) throws -> (any CompactWeight)? {
        switch self {
        case .float32: return nil
        case .bfloat16: return try BF16Weight(rows: rows, columns: columns, values: UnsafeBufferPointer(values.buffer))
        }
    }
}
