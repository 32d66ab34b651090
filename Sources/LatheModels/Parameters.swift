import LatheTensors

/// A named weight of a model: its checkpoint key (Hugging Face naming), its values, and whether training updates it.
public final class Parameter: @unchecked Sendable {
    public let name: String
    public let shape: [Int]
    /// The float32 values; empty once a linear layer has moved its frozen weight to a compact format.
    public private(set) var tensor: Tensor
    /// Where backward passes add this parameter's gradient; allocated when it becomes trainable.
    public private(set) var gradient: Tensor?

    public var trainable: Bool {
        didSet { gradient = trainable ? (gradient ?? Tensor(zeros: shape)) : nil }
    }

    /// - Parameter allocated: false for a frozen weight that loading will move to a compact format: its float32
    ///   values then exist only while it is read (`load` allocates them), never all at once.
    public init(name: String, shape: [Int], trainable: Bool = false, allocated: Bool = true) {
        self.name = name
        self.shape = shape
        self.tensor = Tensor(zeros: allocated ? shape : [0])
        self.trainable = trainable
        gradient = trainable ? Tensor(zeros: shape) : nil
    }

    /// Frees the float32 values of a frozen weight that now lives elsewhere (a compact copy).
    func releaseValues() {
        precondition(!trainable, "\(name) is trainable: its float32 values are what training updates")
        tensor = Tensor(zeros: [0])
    }

    /// Whether the float32 values exist (a compact or not-yet-loaded weight has none).
    public var hasValues: Bool { tensor.count == shape.reduce(1, *) }

    /// Gives a released weight float32 values again.
    func restoreValues(_ values: Tensor) {
        precondition(values.shape == shape, "\(name): \(values.shape) values for shape \(shape)")
        tensor = values
    }

    /// Gives a released weight the float32 values of its compact copy (their rounding stays).
    func restoreValues(expanding compact: any CompactWeight) {
        let values = Tensor(zeros: shape)
        compact.decompress(into: values.pointer)
        restoreValues(values)
    }

    /// Backward passes add into gradients; a training step starts by zeroing them.
    public func zeroGradient() { gradient?.fill(0) }
}
