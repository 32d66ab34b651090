/// Where a model's weights come from, in Hugging Face naming (`model.layers.0.self_attn.q_proj.weight`),
/// whatever the file's own naming and layout.
public protocol WeightSource: CustomStringConvertible {
    /// Every tensor the source holds, in Hugging Face naming.
    var tensorNames: [String] { get }
    /// Writes the named tensor as float32 into `destination`, after checking it has exactly `shape`.
    func read(_ name: String, shape: [Int], into destination: UnsafeMutableBufferPointer<Float>) throws
}
