import Foundation
import LatheTensors

/// One number from a final normalised hidden state: transformers' `score` of `LlamaForSequenceClassification`
/// with `num_labels=1` (Linear(hidden, 1, bias=False)) for a reward model, and PPO's value head.
public final class ScoreHead: @unchecked Sendable {
    /// [1, hidden].
    public let weight: Parameter

    public init(hiddenSize: Int, name: String = "score.weight") {
        weight = Parameter(name: name, shape: [1, hiddenSize])
    }

    var hiddenSize: Int { weight.shape[1] }

    /// Draws the weight from normal(0, standardDeviation), as transformers initialises `score` (std
    /// `initializer_range`, 0.02 for SmolLM2 and most llama configs); Box–Muller on a seeded stream.
    public func initialize(standardDeviation: Float = 0.02, seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        let w = weight.tensor.pointer
        for i in 0..<weight.tensor.count {
            let u = max(random.nextUnitFloat(), .leastNormalMagnitude), v = random.nextUnitFloat()
            w[i] = standardDeviation * (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
        }
    }

    /// Where a sequence's score is read: its last token that is not `padTokenID` (transformers'
    /// `LlamaForSequenceClassification` rule, which also skips a trailing EOS when EOS is the pad), the last token
    /// without a pad id, 0 when every token is the pad (as torch's argmax of an all-zero mask).
    public static func scoredPosition(of sequence: [Int], padTokenID: Int?) -> Int {
        guard let padTokenID else { return max(sequence.count - 1, 0) }
        return sequence.lastIndex { $0 != padTokenID } ?? 0
    }

    /// w · h at each listed row of `hidden` ([rows, hidden]).
    public func scores(_ hidden: Tensor, rows: [Int]) -> [Float] {
        let d = hiddenSize, w = weight.tensor.pointer
        precondition(hidden.count % d == 0, "ScoreHead: the hidden states are not rows of \(d)")
        return rows.map { row in
            let h = hidden.pointer + row * d
            var sum: Float = 0
            for i in 0..<d { sum += w[i] * h[i] }
            return sum
        }
    }

    /// Adds d(objective)/d(score) · w into `dHidden`'s listed rows (the caller zeroes it), and Σ d(score) · h into
    /// the weight's gradient when it is trainable.
    public func backward(hidden: Tensor, rows: [Int], scoreGradient: [Float], dHidden: Tensor) {
        precondition(rows.count == scoreGradient.count, "ScoreHead: one gradient per scored row")
        let d = hiddenSize, w = weight.tensor.pointer
        for (row, g) in zip(rows, scoreGradient) where g != 0 {
            let dh = dHidden.pointer + row * d, h = hidden.pointer + row * d
            for i in 0..<d { dh[i] += g * w[i] }
            if let dW = weight.gradient?.pointer {
                for i in 0..<d { dW[i] += g * h[i] }
            }
        }
    }
}
