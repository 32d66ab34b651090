// Quantizers that reproduce gguf-py's numpy quantizers (quants.py) bit for bit (the K-quants ggml's C ones): every step is the same Float
// operation in the same order (e.g. Q4_0 takes `trunc(x * (1/d) + 8.5)`, Q8_0 rounds half away from zero).

extension GGMLType {
    /// Encodes `values` (a whole number of blocks) in this type. Supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
    /// Q4_K, Q5_K, Q6_K (the K-quants as ggml's reference quantizers, GGMLType+KQuantize.swift).
    public func quantize(_ values: [Float]) throws -> [UInt8] {
        guard canQuantize else {
            throw FormatError(path: "(\(self) data)", problem: "quantization to \(self) is not supported",
                              fix: "supported types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K")
        }
        guard let byteCount = byteCount(elementCount: values.count) else {
            throw FormatError(path: "(\(self) data)",
                              problem: "\(values.count) values are not a whole number of \(blockSize)-element blocks",
                              fix: "the fastest-varying dimension must be a multiple of \(blockSize)")
        }
        var bytes = [UInt8](repeating: 0, count: byteCount)
        let blocks = values.count / blockSize
        values.withUnsafeBufferPointer { source in
            bytes.withUnsafeMutableBytes { destination in
                guard let x = source.baseAddress, let out = destination.baseAddress else { return }
                switch self {
                case .f32: out.copyMemory(from: x, byteCount: byteCount)
                case .f16:
                    for i in 0..<values.count { out.storeBytes(of: HalfPrecision.halfBits(from: x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
                case .bf16:
                    for i in 0..<values.count { out.storeBytes(of: HalfPrecision.bfloat16Bits(from: x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
                case .q8_0: for b in 0..<blocks { Self.quantizeQ8_0(x + 32 * b, out + 34 * b) }
                case .q4_0: for b in 0..<blocks { Self.quantizeSymmetric(x + 32 * b, out + 18 * b, levels: 16) }
                case .q5_0: for b in 0..<blocks { Self.quantizeSymmetric(x + 32 * b, out + 22 * b, levels: 32) }
                case .q4_1: for b in 0..<blocks { Self.quantizeWithMinimum(x + 32 * b, out + 20 * b, levels: 16) }
                case .q5_1: for b in 0..<blocks { Self.quantizeWithMinimum(x + 32 * b, out + 24 * b, levels: 32) }
                case .q4_K: for b in 0..<blocks { Self.quantizeQ4_KOrQ5_K(x + 256 * b, out + 144 * b, fiveBits: false) }
                case .q5_K: for b in 0..<blocks { Self.quantizeQ4_KOrQ5_K(x + 256 * b, out + 176 * b, fiveBits: true) }
                case .q6_K: for b in 0..<blocks { Self.quantizeQ6_K(x + 256 * b, out + 210 * b) }
                default: break  // excluded by canQuantize above
                }
            }
        }
        return bytes
    }

    @inline(__always)
    private static func storeHalf(_ value: Float, _ out: UnsafeMutableRawPointer, _ offset: Int) {
        out.storeBytes(of: HalfPrecision.halfBits(from: value).littleEndian, toByteOffset: offset, as: UInt16.self)
    }

    /// numpy's `np.trunc(v).astype(np.uint8).clip(0, hi)` for the values the quantizers produce (never below -1).
    @inline(__always)
    private static func truncatedLevel(_ v: Float, maximum: Int) -> Int {
        let truncated = v.rounded(.towardZero)
        guard truncated.isFinite, truncated > 0 else { return 0 }
        return min(Int(min(truncated, 1024)), maximum)
    }

    private static func quantizeQ8_0(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for j in 0..<32 { amax = max(amax, abs(x[j])) }
        let d = amax / 127
        let id: Float = d == 0 ? 0 : 1 / d
        storeHalf(d, out, 0)
        for j in 0..<32 {
            let q = (x[j] * id).rounded(.toNearestOrAwayFromZero)
            let level: Int8 = q.isNaN ? 0 : Int8(max(-128, min(127, q)))
            out.storeBytes(of: level, toByteOffset: 2 + j, as: Int8.self)
        }
    }

    /// Q4_0 (16 levels) and Q5_0 (32 levels): d = (signed value of largest magnitude) / -(levels/2).
    private static func quantizeSymmetric(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer, levels: Int) {
        // First index of the largest magnitude, as numpy's argmax picks it.
        var largest = 0
        for j in 1..<32 where abs(x[j]) > abs(x[largest]) { largest = j }
        let half = Float(levels / 2)
        let d = x[largest] / -half
        let id: Float = d == 0 ? 0 : 1 / d
        var q = [Int](repeating: 0, count: 32)
        for j in 0..<32 { q[j] = truncatedLevel(x[j] * id + (half + 0.5), maximum: levels - 1) }
        storeHalf(d, out, 0)
        packLevels(q, out, nibblesAt: levels == 16 ? 2 : 6, highBitsAt: levels == 16 ? nil : 2)
    }

    /// Q4_1 (16 levels) and Q5_1 (32 levels): d = (max - min) / (levels - 1), m = min.
    private static func quantizeWithMinimum(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer, levels: Int) {
        var maximum = x[0], minimum = x[0]
        for j in 1..<32 {
            maximum = max(maximum, x[j])
            minimum = min(minimum, x[j])
        }
        let d = (maximum - minimum) / Float(levels - 1)
        let id: Float = d == 0 ? 0 : 1 / d
        var q = [Int](repeating: 0, count: 32)
        for j in 0..<32 { q[j] = truncatedLevel((x[j] - minimum) * id + 0.5, maximum: levels - 1) }
        storeHalf(d, out, 0)
        storeHalf(minimum, out, 2)
        packLevels(q, out, nibblesAt: levels == 16 ? 4 : 8, highBitsAt: levels == 16 ? nil : 4)
    }

    /// Low nibbles: byte j holds element j (low) and j+16 (high). Fifth bits (Q5): bit j of a little-endian UInt32.
    private static func packLevels(_ q: [Int], _ out: UnsafeMutableRawPointer, nibblesAt: Int, highBitsAt: Int?) {
        for j in 0..<16 {
            let byte = UInt8(q[j] & 0x0F) | UInt8((q[j + 16] & 0x0F) << 4)
            out.storeBytes(of: byte, toByteOffset: nibblesAt + j, as: UInt8.self)
        }
        if let highBitsAt {
            var high: UInt32 = 0
            for j in 0..<32 { high |= UInt32((q[j] >> 4) & 1) << UInt32(j) }
            out.storeBytes(of: high.littleEndian, toByteOffset: highBitsAt, as: UInt32.self)
        }
    }
}
