import Foundation

/// Rotary position embedding in Hugging Face's "rotate half" layout: for a head of dimension d, element i is
/// paired with element i + d/2 and both are rotated by position · inverseFrequency[i].
public struct RotaryEmbedding: Sendable {
    /// Llama 3's frequency scaling (`rope_scaling.rope_type = "llama3"`).
    public struct Llama3Scaling: Sendable, Equatable, Codable {
        public var factor: Double
        public var lowFrequencyFactor: Double
        public var highFrequencyFactor: Double
        public var originalMaxPositions: Int
        public init(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalMaxPositions: Int) {
            self.factor = factor; self.lowFrequencyFactor = lowFrequencyFactor
            self.highFrequencyFactor = highFrequencyFactor; self.originalMaxPositions = originalMaxPositions
        }
    }

    public let headDim: Int
    public let inverseFrequencies: [Float]

    /// - Parameter frequencyFactors: divisors of each inverse frequency, as GGUF files store Llama 3's scaling.
    public init(headDim: Int, base: Double, llama3: Llama3Scaling? = nil, frequencyFactors: [Float]? = nil) {
        self.headDim = headDim
        // transformers computes 1 / base^(2i/d) in float32; doing the same keeps angles bit-close at long positions.
        var frequencies = (0..<headDim / 2).map { i in 1 / Float(pow(base, Double(2 * i) / Double(headDim))) }
        if let s = llama3 {
            let lowWavelength = Double(s.originalMaxPositions) / s.lowFrequencyFactor
            let highWavelength = Double(s.originalMaxPositions) / s.highFrequencyFactor
            frequencies = frequencies.map { f in
                let wavelength = 2 * Double.pi / Double(f)
                if wavelength < highWavelength { return f }
                if wavelength > lowWavelength { return Float(Double(f) / s.factor) }
                let smooth = (Double(s.originalMaxPositions) / wavelength - s.lowFrequencyFactor)
                    / (s.highFrequencyFactor - s.lowFrequencyFactor)
                return Float((1 - smooth) * Double(f) / s.factor + smooth * Double(f))
            }
        }
        if let factors = frequencyFactors {
            frequencies = zip(frequencies, factors).map { $0 / $1 }
        }
        inverseFrequencies = frequencies
    }

    /// cos and sin of position · frequency for each position: [positions.count, headDim/2] each, computed once
    /// per forward pass and shared by every layer.
    public func table(positions: [Int]) -> (cos: [Float], sin: [Float]) {
        let half = headDim / 2
        var cosines = [Float](repeating: 0, count: positions.count * half), sines = cosines
        for (r, position) in positions.enumerated() {
            for i in 0..<half {
                // In float32, as transformers computes the angle.
                let angle = Float(position) * inverseFrequencies[i]
                cosines[r * half + i] = cos(angle)
                sines[r * half + i] = sin(angle)
            }
        }
        return (cosines, sines)
    }

    /// Rotates `heads` consecutive heads of one token, in place, by the angles of one row of `table`.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, cos c: UnsafePointer<Float>, sin s: UnsafePointer<Float>) {
        let half = headDim / 2
        for h in 0..<heads {
            let p = x + h * headDim
            for i in 0..<half {
                let a = p[i], b = p[i + half]
                p[i] = a * c[i] - b * s[i]
                p[i + half] = b * c[i] + a * s[i]
            }
        }
    }

    /// The backward pass of `apply`: the rotation is orthogonal, so its gradient rotates back by the same angle.
    public func applyInverse(_ x: UnsafeMutablePointer<Float>, heads: Int, cos c: UnsafePointer<Float>, sin s: UnsafePointer<Float>) {
        let half = headDim / 2
        for h in 0..<heads {
            let p = x + h * headDim
            for i in 0..<half {
                let a = p[i], b = p[i + half]
                p[i] = a * c[i] + b * s[i]
                p[i + half] = b * c[i] - a * s[i]
            }
        }
    }

    /// Rotates `rows` tokens of `heads` consecutive heads each ([rows, heads·headDim]) in place, token r by row r of
    /// the angle tables ([rows, headDim/2] each); tokens are shared among the threads.
    public func apply(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, cos c: UnsafePointer<Float>, sin s: UnsafePointer<Float>) {
        let width = heads * headDim, half = headDim / 2
        Parallel.forEach(count: rows, floatsPerItem: 2 * width) { range in
            for r in range { apply(x + r * width, heads: heads, cos: c + r * half, sin: s + r * half) }
        }
    }

    /// The backward pass of `apply(_:rows:heads:cos:sin:)`, in place.
    public func applyInverse(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, cos c: UnsafePointer<Float>,
                             sin s: UnsafePointer<Float>) {
        let width = heads * headDim, half = headDim / 2
        Parallel.forEach(count: rows, floatsPerItem: 2 * width) { range in
            for r in range { applyInverse(x + r * width, heads: heads, cos: c + r * half, sin: s + r * half) }
        }
    }

    /// Rotates `heads` consecutive heads of one token, in place, for position `position`.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        let (c, s) = table(positions: [position])
        apply(x, heads: heads, cos: c, sin: s)
    }
}
