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
