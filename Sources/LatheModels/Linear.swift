import LatheTensors

/// A linear map y = x·Wᵀ + b with W stored [out, in] as in PyTorch, plus any LoRA adapters attached to it.
///
/// The layer owns its frozen base weight; adapters add their low-rank update on top without touching it, so they
/// can be switched off (DPO's reference model) and on, and several can be attached at once.
public final class Linear: @unchecked Sendable {
    public let name: String
    public let weight: Parameter
    public let bias: Parameter?
    public private(set) var adapters: [LoRAAdapter] = []
    /// The frozen base weight in a compact format (bf16, NF4) once `compressWeight` moved it there; `weight` then
    /// keeps its name and shape but no values.
    public private(set) var compactWeight: (any CompactWeight)?
    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    public init(name: String, inFeatures: Int, outFeatures: Int, bias: Bool, allocatesWeight: Bool = true) {
        self.name = name
        weight = Parameter(name: name + ".weight", shape: [outFeatures, inFeatures], allocated: allocatesWeight)
        self.bias = bias ? Parameter(name: name + ".bias", shape: [outFeatures]) : nil
    }

    public var parameters: [Parameter] { [weight] + (bias.map { [$0] } ?? []) }

    /// Moves the frozen weight to `format` and frees its float32 values (nothing happens for `.float32`).
    public func compressWeight(to format: WeightFormat) throws {
        guard format != .float32, compactWeight == nil else { return }
        guard !weight.trainable else {
            throw ModelError.invalidConfiguration(file: name, message:
                "a trainable weight stays in float32; \(format) is for the frozen base of LoRA training and inference")
        }
        try keepCompactCopy(format)
        weight.releaseValues()
    }

    /// Takes the frozen weight as the file stores it (a GGUF's quantized blocks) instead of float32 values.
    public func useStoredWeight(_ stored: any CompactWeight) throws {
        guard !weight.trainable else {
            throw ModelError.invalidConfiguration(file: name, message: "a trainable weight stays in float32, not in the file's blocks")
        }
        guard stored.rows == outFeatures, stored.columns == inFeatures else {
            throw ModelError.wrongShape(file: name, name: weight.name, expected: weight.shape, found: [stored.rows, stored.columns])
        }
        compactWeight = stored
        if weight.hasValues { weight.releaseValues() }
    }

    /// Makes (or, after an optimizer step, remakes) a compact copy of a trainable float32 weight: the forward
    /// product and the input gradient then use the copy, while the weight gradient and the update stay on the
    /// float32 master values (bf16 compute over float32 master weights in full fine-tuning).
    public func keepCompactCopy(_ format: WeightFormat) throws {
        compactWeight = try format.compress(weight.tensor, rows: outFeatures, columns: inFeatures)
    }

    /// Brings a compact weight back to float32 (its rounding stays): merging and export need plain values. A
    /// compact copy of master values is simply dropped.
    public func expandWeight() {
        guard let compactWeight else { return }
        if !weight.hasValues { weight.restoreValues(expanding: compactWeight) }
        self.compactWeight = nil
    }

    public func attach(_ adapter: LoRAAdapter) { adapters.append(adapter) }
    public func detachAdapters(named name: String) { adapters.removeAll { $0.adapterName == name } }

    /// output[rows, out] = input[rows, in]·Wᵀ + b + Σ enabled adapters' scale·(dropout(input)·Aᵀ)·Bᵀ, each adapter
    /// on its own `rows` (all of them by default): the base product is shared, the low-rank terms are per adapter.
    public func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, rows: Int) {
        if let compactWeight {
            compactWeight.multiplyTransposed(input, rows: rows, into: output, accumulate: false)
        } else {
            MatMul.multiply(input, weight.tensor.pointer, into: output, m: rows, n: outFeatures, k: inFeatures, transposeB: true)
        }
        if let bias {
            for r in 0..<rows { addInPlace(output + r * outFeatures, bias.tensor.pointer, count: outFeatures) }
        }
        for adapter in adapters where adapter.enabled {
            let own = adapter.rows ?? 0..<rows
            adapter.forward(output: output + own.lowerBound * outFeatures, input: input + own.lowerBound * inFeatures,
                            rows: own.count)
        }
    }

    /// Writes (or, with `accumulate`, adds) dInput = dOutput·W (+ the adapters' share), and adds the gradients of
    /// the trainable weights: dW += dOutputᵀ·input, db += Σ dOutput. `input` is what the forward pass was given.
    public func backward(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>,
                         rows: Int, accumulate: Bool = false) {
        if let compactWeight {
            compactWeight.multiply(dOutput, rows: rows, into: dInput, accumulate: accumulate)
        } else {
            MatMul.multiply(dOutput, weight.tensor.pointer, into: dInput, m: rows, n: inFeatures, k: outFeatures,
                            accumulate: accumulate)
        }
        if let dW = weight.gradient {
            MatMul.multiply(dOutput, input, into: dW.pointer, m: outFeatures, n: inFeatures, k: rows,
                            transposeA: true, accumulate: true)
        }
        if let bias, let db = bias.gradient {
            for r in 0..<rows { addInPlace(db.pointer, dOutput + r * outFeatures, count: outFeatures) }
        }
        for adapter in adapters where adapter.enabled {
            let own = adapter.rows ?? 0..<rows
            adapter.backward(dInput: dInput + own.lowerBound * inFeatures, dOutput: dOutput + own.lowerBound * outFeatures,
                             input: input + own.lowerBound * inFeatures, rows: own.count)
        }
    }
}

/// A LoRA adapter (PEFT's `LoraLayer`): y += scale · dropout(x)·Aᵀ·Bᵀ, with A [rank, in] random and B [out, rank]
/// zero at the start, so that training begins from the base model exactly.
public final class LoRAAdapter: @unchecked Sendable {
    public let adapterName: String
    /// `<linear>.lora_A.weight` / `<linear>.lora_B.weight` in the base model's naming.
    public let a: Parameter
    public let b: Parameter
    public let scale: Float
    public let dropout: Float
    public var enabled = true
    /// The rows of the coming passes this adapter applies to; nil: every row. A batch decoder sorts its rows by
    /// adapter and sets each adapter's range for the step, so that one pass serves requests of several adapters.
    public var rows: Range<Int>?
    /// Training mode applies dropout; evaluation does not.
    public var training = false
    /// Set while the backward pass recomputes a checkpointed block: the forward pass then applies the dropout
    /// mask it drew the first time instead of drawing a new one.
    var reusesDropoutMask = false
    /// The dropout stream; checkpoints save and restore it so that a resumed run drops the same inputs.
    public var random: SeededGenerator
    /// Saved by the forward pass for the backward pass: dropout(x)·Aᵀ, and the dropout multipliers (0 or 1/(1−p)).
    var projected = Tensor(zeros: [0])
    var dropoutScale = Tensor(zeros: [0])

    /// - Parameter scale: alpha / rank (PEFT's default) or alpha / √rank (rsLoRA).
    public init(linear: Linear, adapterName: String, rank: Int, scale: Float, dropout: Float, seed: UInt64) {
        self.adapterName = adapterName
        a = Parameter(name: linear.name + ".lora_A.weight", shape: [rank, linear.inFeatures], trainable: true)
        b = Parameter(name: linear.name + ".lora_B.weight", shape: [linear.outFeatures, rank], trainable: true)
        self.scale = scale
        self.dropout = dropout
        random = SeededGenerator(seed: seed)
        // PEFT initialises A with kaiming_uniform_(a = √5): uniform in ±1/√in; B stays zero.
        let bound = 1 / Float(linear.inFeatures).squareRoot()
        for i in 0..<a.tensor.count { a.tensor[i] = (random.nextUnitFloat() * 2 - 1) * bound }
    }

    public var rank: Int { a.shape[0] }
    public var parameters: [Parameter] { [a, b] }

    func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, rows: Int) {
        let inFeatures = a.shape[1], outFeatures = b.shape[0]
        if projected.count != rows * rank { projected = Tensor(zeros: [rows, rank]) }
        if training && dropout > 0 {
            let drawsMask = !(reusesDropoutMask && dropoutScale.count == rows * inFeatures)
            if dropoutScale.count != rows * inFeatures { dropoutScale = Tensor(zeros: [rows, inFeatures]) }
            let keep = 1 / (1 - dropout)
            let dropped = Tensor(zeros: [rows, inFeatures])
            for i in 0..<rows * inFeatures {
                if drawsMask { dropoutScale[i] = random.nextUnitFloat() < dropout ? 0 : keep }
                dropped[i] = input[i] * dropoutScale[i]
            }
            MatMul.multiply(dropped.pointer, a.tensor.pointer, into: projected.pointer, m: rows, n: rank, k: inFeatures, transposeB: true)
        } else {
            dropoutScale = Tensor(zeros: [0])
            MatMul.multiply(input, a.tensor.pointer, into: projected.pointer, m: rows, n: rank, k: inFeatures, transposeB: true)
        }
        MatMul.multiply(projected.pointer, b.tensor.pointer, into: output, m: rows, n: outFeatures, k: rank,
                        transposeB: true, accumulate: true, alpha: scale)
    }

    func backward(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, rows: Int) {
        let inFeatures = a.shape[1], outFeatures = b.shape[0]
        // y += scale · projected · Bᵀ  →  dB += scale · dOutputᵀ · projected ; dProjected = scale · dOutput · B
        if let dB = b.gradient {
            MatMul.multiply(dOutput, projected.pointer, into: dB.pointer, m: outFeatures, n: rank, k: rows,
                            transposeA: true, accumulate: true, alpha: scale)
        }
        let dProjected = Tensor(zeros: [rows, rank])
        MatMul.multiply(dOutput, b.tensor.pointer, into: dProjected.pointer, m: rows, n: rank, k: outFeatures, alpha: scale)
        // projected = dropout(x) · Aᵀ  →  dA += dProjectedᵀ · dropout(x) ; dx += (dProjected · A) ⊙ dropout multipliers
        let dropped: UnsafePointer<Float>
        var droppedInput: Tensor?
        if dropoutScale.count == rows * inFeatures {
            let t = Tensor(zeros: [rows, inFeatures])
            for i in 0..<rows * inFeatures { t[i] = input[i] * dropoutScale[i] }
            droppedInput = t
            dropped = UnsafePointer(t.pointer)
        } else {
            dropped = input
        }
        if let dA = a.gradient {
            MatMul.multiply(dProjected.pointer, dropped, into: dA.pointer, m: rank, n: inFeatures, k: rows,
                            transposeA: true, accumulate: true)
        }
        if droppedInput != nil {
            let dx = Tensor(zeros: [rows, inFeatures])
            MatMul.multiply(dProjected.pointer, a.tensor.pointer, into: dx.pointer, m: rows, n: inFeatures, k: rank)
            for i in 0..<rows * inFeatures { dInput[i] += dx[i] * dropoutScale[i] }
        } else {
            MatMul.multiply(dProjected.pointer, a.tensor.pointer, into: dInput, m: rows, n: inFeatures, k: rank, accumulate: true)
        }
    }
}
