import Foundation

// Row-wise kernels of the transformer: each works on raw rows of `dim` floats, the backward pass beside its
// forward, the SIMD-tuned versions beside their plain references. Over many rows (or elements) they share the
// rows among the compute threads (`Parallel`); each row is computed by the same code whichever thread takes it,
// so results do not depend on the thread count.

/// Root-mean-square normalisation: out = x / sqrt(mean(x²) + eps) · (weight + weightOffset), row by row.
/// Llama-style models store the scale itself (offset 0); Gemma stores it minus one (offset 1, `y = x/rms · (1 + w)`).
public enum RMSNorm {
    public static func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                               rows: Int, dim: Int, eps: Float, weightOffset: Float = 0) {
        Parallel.forEach(count: rows, floatsPerItem: 2 * dim) { range in
            for r in range {
                let x = input + r * dim, y = out + r * dim
                let inverseRMS = 1 / (sumOfSquares(x, dim) / Float(dim) + eps).squareRoot()
                for i in 0..<dim { y[i] = x[i] * inverseRMS * (weight[i] + weightOffset) }
            }
        }
    }

    /// Adds the gradients of `forward` into `dInput` and (when given) `dWeight`, with s = weight + weightOffset:
    /// dx = r·(dy⊙s) − r³/dim · x · Σ(dy⊙s⊙x), dw += Σ_rows dy⊙x·r, with r = 1/√(mean(x²)+eps).
    ///
    /// dx is shared among the threads by rows; dw, a sum over rows, by columns: each column still adds its rows
    /// in row order, so dw is the same bits on any thread count.
    public static func backward(dInput: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>?,
                                dOut: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                rows: Int, dim: Int, eps: Float, weightOffset: Float = 0) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: dWeight == nil ? 0 : rows) { kept in
            // Each row's r, kept for dw's pass (a capacity of 0 may still give a base address).
            let inverseRMSOfRow = dWeight == nil ? nil : kept.baseAddress
            let offset = SIMD16<Float>(repeating: weightOffset)
            // Counted as three floats per element (x, dy, dx): at SmolLM2's 512 × 576 the two passes (~80 µs) were
            // 7% slower split (`lathe bench kernels`), so the split starts at about twice that.
            Parallel.forEach(count: rows, floatsPerItem: 3 * dim) { range in
                for r in range {
                    let x = input + r * dim, dy = dOut + r * dim, dx = dInput + r * dim
                    let inverseRMS = 1 / (sumOfSquares(x, dim) / Float(dim) + eps).squareRoot()
                    // Σ dy·s·x in 16 lanes (a scalar float reduction does not vectorise).
                    var lanes = SIMD16<Float>(repeating: 0)
                    var i = 0
                    while i + 16 <= dim { lanes += load16(dy + i) * (load16(weight + i) + offset) * load16(x + i); i += 16 }
                    var dot = lanes.sum()
                    while i < dim { dot += dy[i] * (weight[i] + weightOffset) * x[i]; i += 1 }
                    let k = inverseRMS * inverseRMS * inverseRMS / Float(dim) * dot
                    for i in 0..<dim { dx[i] += inverseRMS * dy[i] * (weight[i] + weightOffset) - k * x[i] }
                    inverseRMSOfRow?[r] = inverseRMS
                }
            }
            guard let dWeight, let inverseRMSOfRow else { return }
            Parallel.forEach(count: dim, floatsPerItem: 2 * rows, alignment: 16) { columns in
                for r in 0..<rows {
                    let x = input + r * dim, dy = dOut + r * dim, inverseRMS = inverseRMSOfRow[r]
                    for i in columns { dWeight[i] += dy[i] * x[i] * inverseRMS }
                }
            }
        }
    }

    /// Σ x², accumulated in 16 lanes (a scalar float reduction does not vectorise).
    @inline(__always)
    static func sumOfSquares(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var lanes = SIMD16<Float>(repeating: 0)
        var i = 0
        while i + 16 <= n {
            let v = load16(x + i)
            lanes += v * v
            i += 16
        }
        var sum = lanes.sum()
        while i < n { sum += x[i] * x[i]; i += 1 }
        return sum
    }
}

/// A gated linear unit whose activation is a sigmoid-weighted gate: out = g·σ(a(g)) · up. SwiGLU's SiLU has
/// a(g) = g; GeGLU's tanh approximation of GELU, 0.5·g·(1 + tanh(u)) with u = √(2/π)(g + 0.044715g³), is the same
/// form with a(g) = 2u, since 0.5·(1 + tanh(u)) = σ(2u). One kernel pair serves both.
public protocol SigmoidGatedUnit {
    /// a(g), for 16 lanes and for one value.
    static func sigmoidArgument(_ g: SIMD16<Float>) -> SIMD16<Float>
    static func sigmoidArgument(_ g: Float) -> Float
    /// a′(g), likewise.
    static func sigmoidArgumentSlope(_ g: SIMD16<Float>) -> SIMD16<Float>
    static func sigmoidArgumentSlope(_ g: Float) -> Float
}

extension SigmoidGatedUnit {
    public static func forward(out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        // Ranges on multiples of 16: the scalar tail stays the same elements.
        // Per element three floats and an exp (counted as three more).
        Parallel.forEach(count: count, floatsPerItem: 6, alignment: 16) { range in
            var i = range.lowerBound
            while i + 16 <= range.upperBound {
                let g = load16(gate + i)
                store16(g / (1 + exp16(-sigmoidArgument(g))) * load16(up + i), out + i)
                i += 16
            }
            referenceForward(out: out + i, gate: gate + i, up: up + i, count: range.upperBound - i)
        }
    }

    /// Writes the gradients of `forward`: dUp = dOut·g·σ(a), dGate = dOut·up·σ(a)·(1 + g·(1 − σ(a))·a′(g)).
    public static func backward(dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        Parallel.forEach(count: count, floatsPerItem: 8, alignment: 16) { range in
            var i = range.lowerBound
            while i + 16 <= range.upperBound {
                let g = load16(gate + i), d = load16(dOut + i)
                let sigmoid = 1 / (1 + exp16(-sigmoidArgument(g)))
                store16(d * g * sigmoid, dUp + i)
                store16(d * load16(up + i) * sigmoid * (1 + g * (1 - sigmoid) * sigmoidArgumentSlope(g)), dGate + i)
                i += 16
            }
            referenceBackward(dGate: dGate + i, dUp: dUp + i, dOut: dOut + i, gate: gate + i, up: up + i,
                              count: range.upperBound - i)
        }
    }

    /// The plain version of `forward`, its yardstick (and its tail).
    public static func referenceForward(out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { out[i] = gate[i] / (1 + exp(-sigmoidArgument(gate[i]))) * up[i] }
    }

    /// The plain version of `backward`, its yardstick (and its tail).
    public static func referenceBackward(dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                         gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        for i in 0..<count {
            let g = gate[i], sigmoid = 1 / (1 + exp(-sigmoidArgument(g)))
            dUp[i] = dOut[i] * g * sigmoid
            dGate[i] = dOut[i] * up[i] * sigmoid * (1 + g * (1 - sigmoid) * sigmoidArgumentSlope(g))
        }
    }
}

/// The SwiGLU gate: out = silu(gate) · up, with silu(x) = x / (1 + e^(−x)) (Llama, Qwen).
public enum SwiGLU: SigmoidGatedUnit {
    @inline(__always) public static func sigmoidArgument(_ g: SIMD16<Float>) -> SIMD16<Float> { g }
    @inline(__always) public static func sigmoidArgument(_ g: Float) -> Float { g }
    @inline(__always) public static func sigmoidArgumentSlope(_ g: SIMD16<Float>) -> SIMD16<Float> { .one }
    @inline(__always) public static func sigmoidArgumentSlope(_ g: Float) -> Float { 1 }
}

/// The GeGLU gate: out = gelu_tanh(gate) · up, GELU's tanh approximation (PyTorch's `gelu(approximate="tanh")`,
/// transformers' `gelu_pytorch_tanh`; Gemma).
public enum GeGLU: SigmoidGatedUnit {
    /// 2·√(2/π) and 2·√(2/π)·0.044715.
    static let linear: Float = 1.595_769_1, cubic: Float = 0.071_354_816

    @inline(__always) public static func sigmoidArgument(_ g: SIMD16<Float>) -> SIMD16<Float> { g * (linear + cubic * g * g) }
    @inline(__always) public static func sigmoidArgument(_ g: Float) -> Float { g * (linear + cubic * g * g) }
    @inline(__always) public static func sigmoidArgumentSlope(_ g: SIMD16<Float>) -> SIMD16<Float> { linear + 3 * cubic * g * g }
    @inline(__always) public static func sigmoidArgumentSlope(_ g: Float) -> Float { linear + 3 * cubic * g * g }
}

/// Numerically stable softmax of one row, in place.
public enum Softmax {
    public static func forwardInPlace(_ row: UnsafeMutablePointer<Float>, count: Int) {
        var maximum = -Float.infinity
        for i in 0..<count where row[i] > maximum { maximum = row[i] }
        if maximum == -.infinity { row.update(repeating: 0, count: count); return }
        var lanes = SIMD16<Float>(repeating: 0)
        var i = 0
        while i + 16 <= count {
            let e = exp16(load16(row + i) - maximum)
            store16(e, row + i)
            lanes += e
            i += 16
        }
        var sum = lanes.sum()
        while i < count {
            let e = exp(row[i] - maximum)
            row[i] = e
            sum += e
            i += 1
        }
        let inverse = 1 / sum
        for i in 0..<count { row[i] *= inverse }
    }

    /// The plain version, the yardstick of the vectorised one.
    public static func referenceForwardInPlace(_ row: UnsafeMutablePointer<Float>, count: Int) {
        var maximum = -Float.infinity
        for i in 0..<count where row[i] > maximum { maximum = row[i] }
        if maximum == -.infinity { row.update(repeating: 0, count: count); return }
        var sum = 0.0
        for i in 0..<count {
            row[i] = exp(row[i] - maximum)
            sum += Double(row[i])
        }
        for i in 0..<count { row[i] = Float(Double(row[i]) / sum) }
    }

    /// log(softmax(row))[index], computed in double precision (used for reported log-probabilities).
    public static func logProbability(_ row: UnsafePointer<Float>, count: Int, index: Int) -> Double {
        var maximum = -Float.infinity
        for i in 0..<count where row[i] > maximum { maximum = row[i] }
        var sum = 0.0
        for i in 0..<count { sum += Foundation.exp(Double(row[i] - maximum)) }
        return Double(row[index] - maximum) - Foundation.log(sum)
    }
}

/// Cross-entropy of next-token prediction with an ignore mask: a pure function from logits to the loss and its
/// gradient, so that every trainer shares it.
public enum CrossEntropy {
    /// For each row with `targets[row] ≥ 0`: adds −log softmax(logits[row])[target] to the returned sum and writes
    /// `scale`·(softmax − onehot) into `dLogits[row]`; ignored rows (target < 0) get zero gradient.
    /// - Returns: the summed loss (not averaged) and the number of rows that counted.
    /// Rows are shared among the threads; their losses are added in row order, the same sum on any thread count.
    public static func lossAndGradient(logits: UnsafePointer<Float>, targets: [Int], vocabularySize n: Int,
                                       dLogits: UnsafeMutablePointer<Float>?, scale: Float) -> (loss: Double, count: Int) {
        let losses = rowLosses(rows: targets.count, vocabularySize: n) { row in
            let target = targets[row]
            guard target >= 0 else {
                dLogits?.advanced(by: row * n).update(repeating: 0, count: n)
                return nil
            }
            return rowLossAndGradient(logits: logits + row * n, target: target, vocabularySize: n,
                                      dLogits: dLogits.map { $0 + row * n }, scale: scale)
        }
        var total = 0.0
        for loss in losses { total += loss }
        return (total, losses.count)
    }

    /// `rowLoss(row)` for each of `rows` rows of `vocabularySize` logits, shared among the threads; returns the
    /// non-nil losses in row order (nil: an ignored row).
    static func rowLosses(rows: Int, vocabularySize n: Int, _ rowLoss: (Int) -> Double?) -> [Double] {
        var losses = [Double?](repeating: nil, count: rows)
        losses.withUnsafeMutableBufferPointer { losses in
            guard let perRow = losses.baseAddress else { return }
            Parallel.forEach(count: rows, floatsPerItem: 3 * n) { range in
                for row in range { perRow[row] = rowLoss(row) }
            }
        }
        return losses.compactMap { $0 }
    }

    /// One supervised row of `lossAndGradient`: returns −log softmax(x)[target] and writes `scale`·(softmax − onehot)
    /// into `dLogits`. `dLogits` may be `logits` itself (the chunked LM head turns its logits into gradients in place):
    /// every read of an entry comes before its write.
    @inline(__always)
    static func rowLossAndGradient(logits x: UnsafePointer<Float>, target: Int, vocabularySize n: Int,
                                   dLogits: UnsafeMutablePointer<Float>?, scale: Float) -> Double {
        // log Σ e^x with the maximum taken out; the sum in 16 float lanes is exact enough for a
        // 49k-entry row (relative error ~1e-7) and several times faster than double exp.
        var maximum = -Float.infinity
        for i in 0..<n where x[i] > maximum { maximum = x[i] }
        var lanes = SIMD16<Float>(repeating: 0)
        var i = 0
        while i + 16 <= n { lanes += exp16(load16(x + i) - maximum); i += 16 }
        var sum = Double(lanes.sum())
        while i < n { sum += Foundation.exp(Double(x[i] - maximum)); i += 1 }
        let logSum = Float(Foundation.log(sum)) + maximum
        let loss = Double(logSum) - Double(x[target])
        if let d = dLogits {
            var j = 0
            while j + 16 <= n { store16(exp16(load16(x + j) - logSum) * scale, d + j); j += 16 }
            while j < n { d[j] = exp(x[j] - logSum) * scale; j += 1 }
            d[target] -= scale
        }
        return loss
    }

    /// The plain version in double precision, the yardstick of the vectorised one.
    public static func referenceLossAndGradient(logits: UnsafePointer<Float>, targets: [Int], vocabularySize n: Int,
                                                dLogits: UnsafeMutablePointer<Float>?, scale: Float) -> (loss: Double, count: Int) {
        var total = 0.0, count = 0
        for (row, target) in targets.enumerated() {
            let x = logits + row * n
            guard target >= 0 else {
                dLogits?.advanced(by: row * n).update(repeating: 0, count: n)
                continue
            }
            let maximum = Double((0..<n).map { x[$0] }.max()!)
            let logSum = Foundation.log((0..<n).reduce(0.0) { $0 + Foundation.exp(Double(x[$1]) - maximum) }) + maximum
            total += logSum - Double(x[target])
            count += 1
            if let dLogits {
                for i in 0..<n { dLogits[row * n + i] = Float(Foundation.exp(Double(x[i]) - logSum)) * scale }
                dLogits[row * n + target] -= scale
            }
        }
        return (total, count)
    }
}

/// y += x, elementwise.
public func addInPlace(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
    Parallel.forEach(count: count, floatsPerItem: 3, alignment: 16) { range in
        for i in range { y[i] += x[i] }
    }
}

/// y *= scale, element by element.
public func scaleInPlace(_ y: UnsafeMutablePointer<Float>, by scale: Float, count: Int) {
    Parallel.forEach(count: count, floatsPerItem: 2, alignment: 16) { range in
        for i in range { y[i] *= scale }
    }
}

/// The gate activation of a model's MLP, chosen by its configuration: each case runs its own specialised kernels.
public enum GatedActivation: String, Sendable, Codable {
    /// SwiGLU (`hidden_act` "silu").
    case silu
    /// GeGLU with GELU's tanh approximation (`hidden_activation` "gelu_pytorch_tanh").
    case geluTanh

    public func forward(out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        switch self {
        case .silu: SwiGLU.forward(out: out, gate: gate, up: up, count: count)
        case .geluTanh: GeGLU.forward(out: out, gate: gate, up: up, count: count)
        }
    }

    public func backward(dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                         gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        switch self {
        case .silu: SwiGLU.backward(dGate: dGate, dUp: dUp, dOut: dOut, gate: gate, up: up, count: count)
        case .geluTanh: GeGLU.backward(dGate: dGate, dUp: dUp, dOut: dOut, gate: gate, up: up, count: count)
        }
    }
}
