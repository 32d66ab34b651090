import LatheTensors

/// A named weight of a model: its checkpoint key (Hugging Face naming), its values, and whether training updates it.
public final class Parameter: @unchecked Sendable {
    public let name: String
    public let tensor: Tensor
    /// Where backward passes add this parameter's gradient; allocated when it becomes trainable.
    public private(set) var gradient: Tensor?

    public var trainable: Bool {
        didSet { gradient = trainable ? (gradient ?? Tensor(zeros: tensor.shape)) : nil }
    }

    public init(name: String, shape: [Int], trainable: Bool = false) {
        self.name = name
        self.tensor = Tensor(zeros: shape)
        self.trainable = trainable
        gradient = trainable ? Tensor(zeros: shape) : nil
    }

    public var shape: [Int] { tensor.shape }

    /// Backward passes add into gradients; a training step starts by zeroing them.
    public func zeroGradient() { gradient?.fill(0) }
}

/// A linear map y = x·Wᵀ + b with W stored [out, in] as in PyTorch.
///
/// The layer owns its frozen base weight; adapters (LoRA) and other weight storages (bf16, NF4) attach here in
/// later work, so every linear of the model is one place to extend.
public final class Linear: @unchecked Sendable {
    public let weight: Parameter
    public let bias: Parameter?
    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    public init(name: String, inFeatures: Int, outFeatures: Int, bias: Bool) {
        weight = Parameter(name: name + ".weight", shape: [outFeatures, inFeatures])
        self.bias = bias ? Parameter(name: name + ".bias", shape: [outFeatures]) : nil
    }

    /// output[rows, out] = input[rows, in]·Wᵀ + b.
    public func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, rows: Int) {
        MatMul.multiply(input, weight.tensor.pointer, into: output, m: rows, n: outFeatures, k: inFeatures, transposeB: true)
        if let bias {
            for r in 0..<rows { addInPlace(output + r * outFeatures, bias.tensor.pointer, count: outFeatures) }
        }
    }

    public var parameters: [Parameter] { [weight] + (bias.map { [$0] } ?? []) }
}
