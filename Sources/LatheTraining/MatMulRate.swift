import Foundation
import LatheModels
import LatheTensors

/// This CPU's matrix product rate on one product shape: the figure `lathe bench` sets beside a step's achieved
/// GFLOP/s, and `lathe advise`'s time divisor.
public enum MatMulRate {
    /// FLOP/s of `[rows, inner]·[outer, inner]ᵀ`, the best of five runs: float32 through the backend, or a bf16
    /// weight's own product (oneDNN's bf16 matmul where that is the path) for `.bfloat16`.
    public static func measure(rows: Int, inner: Int, outer: Int, format: WeightFormat = .float32) throws -> Double {
        let a = Tensor(zeros: [rows, inner]), b = Tensor(zeros: [outer, inner])
        let out = Tensor(zeros: [rows, outer])
        let bf16 = format == .bfloat16
            ? try BF16Weight(rows: outer, columns: inner, values: UnsafeBufferPointer(b.buffer)) : nil
        var best = 0.0
        for _ in 0..<5 {
            let start = DispatchTime.now().uptimeNanoseconds
            if let bf16 {
                bf16.multiplyTransposed(a.pointer, rows: rows, into: out.pointer, accumulate: false)
            } else {
                MatMul.multiply(a.pointer, b.pointer, into: out.pointer, m: rows, n: outer, k: inner, transposeB: true)
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            best = max(best, 2 * Double(rows * outer * inner) / seconds)
        }
        return best
    }

    /// The rate on a model's MLP up-projection over `rows` tokens.
    public static func measure(rows: Int, _ config: DecoderConfiguration, format: WeightFormat = .float32) throws -> Double {
        try measure(rows: rows, inner: config.hiddenSize, outer: config.intermediateSize, format: format)
    }
}
