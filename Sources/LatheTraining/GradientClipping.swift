import LatheModels
import LatheTensors

/// Scales the gradients of the trainable parameters so that their joint L2 norm is at most `maxNorm`, as
/// `torch.nn.utils.clip_grad_norm_` does, and returns the norm before clipping.
///
/// The norm is accumulated in Double (squares summed in Float within blocks of 256 elements, then in Double), so it
/// stays accurate over hundreds of millions of elements. Gradients are multiplied by maxNorm / (norm + 1e-6), in
/// Float as torch computes it, only when that factor is below 1. When the norm is not finite (an overflow or a NaN
/// in some gradient) the gradients are left as they are and the non-finite norm is returned: the caller should
/// skip that step (torch would multiply every gradient by 0 or NaN).
@discardableResult
public func clipGradientNorm(_ parameters: [Parameter], maxNorm: Float) -> Float {
    let gradients = parameters.compactMap { $0.trainable ? $0.gradient : nil }
    var sumOfSquares: Double = 0
    for gradient in gradients { sumOfSquares += squaredNorm(gradient.pointer, count: gradient.count) }
    let norm = Float(sumOfSquares.squareRoot())
    guard norm.isFinite else { return norm }
    let factor = maxNorm / (norm + 1e-6)
    if factor < 1 {
        for gradient in gradients { scale(gradient.pointer, count: gradient.count, by: factor) }
    }
    return norm
}

/// Σ xᵢ² with Float SIMD partial sums over blocks of 256 elements (at most 16 terms per lane) added in Double.
func squaredNorm(_ pointer: UnsafePointer<Float>, count: Int) -> Double {
    let blockSize = 256
    var total: Double = 0
    var blockStart = 0
    while blockStart < count {
        let blockEnd = min(blockStart + blockSize, count)
        var partial = OptimizerVector(repeating: 0)
        var index = blockStart
        while index < blockEnd {
            let lanes = min(OptimizerVector.scalarCount, blockEnd - index)
            let values = loadLanes(pointer + index, lanes)
            partial = partial.addingProduct(values, values)
            index += lanes
        }
        for lane in 0..<OptimizerVector.scalarCount { total += Double(partial[lane]) }
        blockStart = blockEnd
    }
    return total
}

private func scale(_ pointer: UnsafeMutablePointer<Float>, count: Int, by factor: Float) {
    var index = 0
    while index < count {
        let lanes = min(OptimizerVector.scalarCount, count - index)
        storeLanes(loadLanes(pointer + index, lanes) * factor, pointer + index, lanes)
        index += lanes
    }
}
