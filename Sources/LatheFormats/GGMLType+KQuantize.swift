// ggml's reference K-quant quantizers (ggml-quants.c: quantize_row_q4_K_ref, quantize_row_q5_K_ref,
// quantize_row_q6_K_ref with make_qkx2_quants and make_qx_quants; what llama-quantize runs without an importance
// matrix), written again in Swift with the same Float operations in the same order, so the bytes equal ggml's
// (fixture kquants.json from scripts/reference/kquants.py).

extension GGMLType {
    /// ggml's `nearest_int`: round half to even (its 1.5·2²³ addition trick, exact for |v| < 2²²).
    @inline(__always)
    private static func nearestInt(_ v: Float) -> Int {
        guard v.isFinite else { return 0 }
        return Int(v.rounded(.toNearestOrEven))
    }

    /// Q4_K (nmax 15) and Q5_K (nmax 31) super-blocks of 256: eight sub-blocks of 32, each with a 6-bit scale and
    /// minimum, found by make_qkx2_quants' weighted search, under one fp16 `d` and `dmin`.
    static func quantizeQ4_KOrQ5_K(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer, fiveBits: Bool) {
        let nmax = fiveBits ? 31 : 15
        var levels = [UInt8](repeating: 0, count: 256)
        var scales = [Float](repeating: 0, count: 8), minimums = [Float](repeating: 0, count: 8)
        var weights = [Float](repeating: 0, count: 32)
        var maxScale: Float = 0, maxMinimum: Float = 0
        levels.withUnsafeMutableBufferPointer { l in
            for j in 0..<8 {
                let sub = x + 32 * j
                var sumX2: Float = 0
                for i in 0..<32 { sumX2 += sub[i] * sub[i] }
                let averageMagnitude = (sumX2 / 32).squareRoot()
                for i in 0..<32 { weights[i] = averageMagnitude + abs(sub[i]) }
                (scales[j], minimums[j]) = scaleAndMinimum(sub, weights: weights, levels: l.baseAddress! + 32 * j,
                                                           nmax: nmax, rmin: fiveBits ? -0.5 : -1, rdelta: 0.1,
                                                           steps: fiveBits ? 15 : 20)
                if scales[j] > maxScale { maxScale = scales[j] }
                if minimums[j] > maxMinimum { maxMinimum = minimums[j] }
            }
        }
        let inverseScale: Float = maxScale > 0 ? 63 / maxScale : 0
        let inverseMinimum: Float = maxMinimum > 0 ? 63 / maxMinimum : 0
        let packed = out + 4  // 12 bytes of 6-bit scales and minimums
        for j in 0..<8 {
            let ls = min(63, UInt8(truncatingIfNeeded: nearestInt(inverseScale * scales[j])))
            let lm = min(63, UInt8(truncatingIfNeeded: nearestInt(inverseMinimum * minimums[j])))
            if j < 4 {
                packed.storeBytes(of: ls, toByteOffset: j, as: UInt8.self)
                packed.storeBytes(of: lm, toByteOffset: j + 4, as: UInt8.self)
            } else {
                packed.storeBytes(of: (ls & 0xF) | ((lm & 0xF) << 4), toByteOffset: j + 4, as: UInt8.self)
                packed.storeBytes(of: packed.load(fromByteOffset: j - 4, as: UInt8.self) | ((ls >> 4) << 6),
                                  toByteOffset: j - 4, as: UInt8.self)
                packed.storeBytes(of: packed.load(fromByteOffset: j, as: UInt8.self) | ((lm >> 4) << 6),
                                  toByteOffset: j, as: UInt8.self)
            }
        }
        let dBits = HalfPrecision.halfBits(from: maxScale / 63), dminBits = HalfPrecision.halfBits(from: maxMinimum / 63)
        out.storeBytes(of: dBits.littleEndian, toByteOffset: 0, as: UInt16.self)
        out.storeBytes(of: dminBits.littleEndian, toByteOffset: 2, as: UInt16.self)
        // The levels again against the rounded scales, as the dequantizer will see them.
        for j in 0..<8 {
            let (sc, m) = scaleAndMinimumK4(j, UnsafeRawPointer(packed))
            let d = HalfPrecision.float(fromHalfBits: dBits) * Float(sc)
            if d == 0 { continue }
            let dm = HalfPrecision.float(fromHalfBits: dminBits) * Float(m)
            for i in 0..<32 { levels[32 * j + i] = UInt8(max(0, min(nmax, nearestInt((x[32 * j + i] + dm) / d)))) }
        }
        if fiveBits {
            // qh (32 bytes): bit 2k / 2k+1 of byte i is the fifth bit of element 64k + i / 64k + 32 + i.
            let high = out + 16, low = out + 48
            for i in 0..<32 { high.storeBytes(of: 0, toByteOffset: i, as: UInt8.self) }
            for k in 0..<4 {
                for i in 0..<32 {
                    var l1 = levels[64 * k + i], l2 = levels[64 * k + 32 + i]
                    var bits = high.load(fromByteOffset: i, as: UInt8.self)
                    if l1 > 15 { l1 -= 16; bits |= 1 << (2 * k) }
                    if l2 > 15 { l2 -= 16; bits |= 2 << (2 * k) }
                    high.storeBytes(of: bits, toByteOffset: i, as: UInt8.self)
                    low.storeBytes(of: l1 | (l2 << 4), toByteOffset: 32 * k + i, as: UInt8.self)
                }
            }
        } else {
            for k in 0..<4 {
                for i in 0..<32 {
                    out.storeBytes(of: levels[64 * k + i] | (levels[64 * k + 32 + i] << 4), toByteOffset: 16 + 32 * k + i,
                                   as: UInt8.self)
                }
            }
        }
    }

    /// ggml's `get_scale_min_k4`: the 6-bit scale and minimum of sub-block `j` from the 12 packed bytes.
    private static func scaleAndMinimumK4(_ j: Int, _ q: UnsafeRawPointer) -> (UInt8, UInt8) {
        func byte(_ i: Int) -> UInt8 { q.load(fromByteOffset: i, as: UInt8.self) }
        if j < 4 { return (byte(j) & 63, byte(j + 4) & 63) }
        return ((byte(j + 4) & 0xF) | ((byte(j - 4) >> 6) << 4), (byte(j + 4) >> 4) | ((byte(j) >> 6) << 4))
    }

    /// ggml's `make_qkx2_quants` (n = 32, use_mad false): levels 0...nmax with value = scale·l − minimum, the
    /// weighted squared error minimised over `steps + 1` trial scales. Returns the scale and the (non-negative)
    /// minimum to subtract.
    private static func scaleAndMinimum(_ x: UnsafePointer<Float>, weights: [Float], levels: UnsafeMutablePointer<UInt8>,
                                        nmax: Int, rmin: Float, rdelta: Float, steps: Int) -> (Float, Float) {
        var minimum = x[0], maximum = x[0]
        var sumW = weights[0]
        var sumX = sumW * x[0]
        for i in 1..<32 {
            if x[i] < minimum { minimum = x[i] }
            if x[i] > maximum { maximum = x[i] }
            sumW += weights[i]
            sumX += weights[i] * x[i]
        }
        if minimum > 0 { minimum = 0 }
        if maximum == minimum {
            for i in 0..<32 { levels[i] = 0 }
            return (0, -minimum)
        }
        var inverseScale = Float(nmax) / (maximum - minimum)
        var scale = 1 / inverseScale
        var bestError: Float = 0
        for i in 0..<32 {
            levels[i] = UInt8(max(0, min(nmax, nearestInt(inverseScale * (x[i] - minimum)))))
            let diff = scale * Float(levels[i]) + minimum - x[i]
            bestError += weights[i] * (diff * diff)
        }
        var trial = [UInt8](repeating: 0, count: 32)
        for step in 0...steps {
            inverseScale = (rmin + rdelta * Float(step) + Float(nmax)) / (maximum - minimum)
            var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
            for i in 0..<32 {
                let l = max(0, min(nmax, nearestInt(inverseScale * (x[i] - minimum))))
                trial[i] = UInt8(l)
                let w = weights[i]
                sumL += w * Float(l)
                sumL2 += w * Float(l) * Float(l)
                sumXL += w * Float(l) * x[i]
            }
            let determinant = sumW * sumL2 - sumL * sumL
            guard determinant > 0 else { continue }
            var trialScale = (sumW * sumXL - sumX * sumL) / determinant
            var trialMinimum = (sumL2 * sumX - sumL * sumXL) / determinant
            if trialMinimum > 0 {
                trialMinimum = 0
                trialScale = sumXL / sumL2
            }
            var error: Float = 0
            for i in 0..<32 {
                let diff = trialScale * Float(trial[i]) + trialMinimum - x[i]
                error += weights[i] * (diff * diff)
            }
            if error < bestError {
                for i in 0..<32 { levels[i] = trial[i] }
                bestError = error
                scale = trialScale
                minimum = trialMinimum
            }
        }
        return (scale, -minimum)
    }

    /// Q6_K super-blocks of 256: sixteen sub-blocks of 16 with a signed 8-bit scale each (make_qx_quants with
    /// x²-weighted error), one fp16 `d`; levels −32...31 stored as 4 + 2 bits.
    static func quantizeQ6_K(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
        var levels = [Int8](repeating: 0, count: 256)
        var scales = [Float](repeating: 0, count: 16)
        var maxScale: Float = 0, maxAbsoluteScale: Float = 0
        levels.withUnsafeMutableBufferPointer { l in
            for b in 0..<16 {
                scales[b] = symmetricScale(x + 16 * b, levels: l.baseAddress! + 16 * b, nmax: 32)
                if abs(scales[b]) > maxAbsoluteScale {
                    maxAbsoluteScale = abs(scales[b])
                    maxScale = scales[b]
                }
            }
        }
        if maxAbsoluteScale < 1e-15 {  // ggml's GROUP_MAX_EPS: an all-zero block
            for i in 0..<GGMLType.q6_K.typeSize { out.storeBytes(of: 0, toByteOffset: i, as: UInt8.self) }
            return
        }
        let inverseScale = -128 / maxScale
        let dBits = HalfPrecision.halfBits(from: 1 / inverseScale)
        out.storeBytes(of: dBits.littleEndian, toByteOffset: 208, as: UInt16.self)
        var blockScales = [Int8](repeating: 0, count: 16)
        for b in 0..<16 {
            blockScales[b] = Int8(truncatingIfNeeded: min(127, nearestInt(inverseScale * scales[b])))
            out.storeBytes(of: blockScales[b], toByteOffset: 192 + b, as: Int8.self)
        }
        for b in 0..<16 {
            let d = HalfPrecision.float(fromHalfBits: dBits) * Float(blockScales[b])
            if d == 0 { continue }
            for i in 0..<16 { levels[16 * b + i] = Int8(max(-32, min(31, nearestInt(x[16 * b + i] / d))) + 32) }
        }
        // ql (128 bytes): low nibbles of elements 128h + i and 128h + 64 + i share byte 64h + i, and 128h + 32 + i
        // with 128h + 96 + i byte 64h + 32 + i; qh (64 bytes): the top two bits of the four, in that order.
        for h in 0..<2 {
            for i in 0..<32 {
                let q0 = UInt8(levels[128 * h + i]), q1 = UInt8(levels[128 * h + 32 + i])
                let q2 = UInt8(levels[128 * h + 64 + i]), q3 = UInt8(levels[128 * h + 96 + i])
                out.storeBytes(of: (q0 & 0xF) | ((q2 & 0xF) << 4), toByteOffset: 64 * h + i, as: UInt8.self)
                out.storeBytes(of: (q1 & 0xF) | ((q3 & 0xF) << 4), toByteOffset: 64 * h + 32 + i, as: UInt8.self)
                out.storeBytes(of: (q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) | ((q3 >> 4) << 6),
                               toByteOffset: 128 + 32 * h + i, as: UInt8.self)
            }
        }
    }

    /// ggml's `make_qx_quants` with rmse_type 1 (n = 16): levels −nmax...nmax−1 (stored + nmax), the x²-weighted
    /// error minimised over nineteen trial scales. Returns the scale.
    private static func symmetricScale(_ x: UnsafePointer<Float>, levels: UnsafeMutablePointer<Int8>, nmax: Int) -> Float {
        var maximum: Float = 0, largest: Float = 0
        for i in 0..<16 where abs(x[i]) > largest {
            largest = abs(x[i])
            maximum = x[i]
        }
        if largest < 1e-15 {
            for i in 0..<16 { levels[i] = 0 }
            return 0
        }
        func level(_ v: Float) -> Int { max(-nmax, min(nmax - 1, nearestInt(v))) }
        func sums(_ inverseScale: Float) -> (Float, Float) {
            var sumLX: Float = 0, sumL2: Float = 0
            for i in 0..<16 {
                let l = Float(level(inverseScale * x[i]))
                let w = x[i] * x[i]
                sumLX += w * x[i] * l
                sumL2 += w * l * l
            }
            return (sumLX, sumL2)
        }
        var inverseScale = Float(-nmax) / maximum
        for i in 0..<16 { levels[i] = Int8(level(inverseScale * x[i]) + nmax) }
        var (sumLX, sumL2) = sums(inverseScale)
        var scale: Float = sumL2 != 0 ? sumLX / sumL2 : 0
        var best = scale * sumLX
        for step in -9...9 where step != 0 {
            inverseScale = -(Float(nmax) + 0.1 * Float(step)) / maximum
            (sumLX, sumL2) = sums(inverseScale)
            if sumL2 > 0 && sumLX * sumLX > best * sumL2 {
                for i in 0..<16 { levels[i] = Int8(level(inverseScale * x[i]) + nmax) }
                scale = sumLX / sumL2
                best = scale * sumLX
            }
        }
        return scale
    }
}
