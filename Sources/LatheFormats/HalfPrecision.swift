/// Conversions between Float and the 16-bit float formats stored in model files, done on bit patterns so they
/// behave the same on every platform (Swift's `Float16` is missing on Intel macOS).
public enum HalfPrecision {
    /// IEEE half → Float; exact (every half is a Float). NaN payloads are kept, as numpy and ggml do.
    @inline(__always)
    public static func float(fromHalfBits half: UInt16) -> Float {
        let sign = UInt32(half & 0x8000) << 16
        let exponent = UInt32(half >> 10) & 0x1F
        let mantissa = UInt32(half & 0x03FF)
        if exponent == 0 {
            // Zero or subnormal: mantissa × 2⁻²⁴ is exact in Float.
            let magnitude = Float(mantissa) * 0x1p-24
            return Float(bitPattern: magnitude.bitPattern | sign)
        }
        if exponent == 31 {
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }

    /// Float → IEEE half, rounding to nearest even (numpy's `astype(float16)` and ggml's `GGML_FP32_TO_FP16`).
    public static func halfBits(from value: Float) -> UInt16 {
        let bits = value.bitPattern
        let sign = UInt16((bits >> 16) & 0x8000)
        let exponentBits = bits & 0x7F80_0000
        if exponentBits >= 0x4780_0000 {
            // Overflow to infinity, or infinity/NaN kept (NaN stays NaN by forcing a mantissa bit).
            if exponentBits == 0x7F80_0000 && (bits & 0x007F_FFFF) != 0 {
                var nan = UInt16(0x7C00) + UInt16((bits & 0x007F_FFFF) >> 13)
                if nan == 0x7C00 { nan += 1 }
                return sign | nan
            }
            return sign | 0x7C00
        }
        if exponentBits <= 0x3800_0000 {
            // Result is subnormal or zero.
            if exponentBits < 0x3300_0000 { return sign }
            let exponent = exponentBits >> 23
            var significand = 0x0080_0000 + (bits & 0x007F_FFFF)
            significand >>= (113 - exponent)
            // Round half to even; the low bits shifted out above also count as "more than half".
            if (significand & 0x3FFF) != 0x1000 || (bits & 0x07FF) != 0 {
                significand += 0x1000
            }
            return sign | UInt16(significand >> 13)
        }
        let halfExponent = UInt16((exponentBits - 0x3800_0000) >> 13)
        var significand = bits & 0x007F_FFFF
        if (significand & 0x3FFF) != 0x1000 {
            significand += 0x1000
        }
        // A carry out of the significand correctly bumps the exponent (and can reach infinity).
        return sign | (UInt16(significand >> 13) &+ halfExponent)
    }

    /// bfloat16 → Float: the top half of a Float.
    @inline(__always)
    public static func float(fromBFloat16Bits bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Float → bfloat16, rounding to nearest even, NaN kept quiet (ggml's `ggml_compute_fp32_to_bf16`).
    @inline(__always)
    public static func bfloat16Bits(from value: Float) -> UInt16 {
        let bits = value.bitPattern
        if (bits & 0x7FFF_FFFF) > 0x7F80_0000 {
            return UInt16(bits >> 16) | 0x40
        }
        return UInt16((UInt64(bits) + 0x7FFF + UInt64((bits >> 16) & 1)) >> 16)
    }

    /// All 65536 halves as Floats: a table lookup is the fastest exact conversion in dequantization loops. Made
    /// once and never freed or written, so every thread reads it.
    nonisolated(unsafe) static let halfTable: UnsafePointer<Float> = {
        let table = UnsafeMutablePointer<Float>.allocate(capacity: 0x10000)
        for bits in 0...0xFFFF { table[bits] = float(fromHalfBits: UInt16(bits)) }
        return UnsafePointer(table)
    }()
}
