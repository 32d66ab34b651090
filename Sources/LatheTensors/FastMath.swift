/// e^x for 16 lanes: Cephes' single-precision polynomial after range reduction by ln 2, within 2 ulp of expf for
/// x ≥ −87.3; below that (and for −∞) it is exactly 0. Written with compares and bit tricks, no libm call and no
/// branch, so that it vectorises (../shared/MACHINE-NOTES.md).
@inline(__always)
public func exp16(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let clampedX = x.replacing(with: 88.3, where: x .> 88.3).replacing(with: -87.3, where: x .< -87.3)
    // n = round(x / ln 2), by adding 1.5·2²³ so that the integer lands in the low mantissa bits.
    let shifted = clampedX * 1.442_695_04 + 12_582_912
    let n = shifted - 12_582_912
    let r = clampedX - n * 0.693_359_375 + n * 2.121_944_4e-4
    var p = SIMD16<Float>(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_950_7e-3
    p = p * r + 8.333_451_907_3e-3
    p = p * r + 4.166_579_589_4e-2
    p = p * r + 1.666_666_545_9e-1
    p = p * r + 5.000_000_120_1e-1
    p = p * (r * r) + r + 1
    let exponent = (unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    let result = p * unsafeBitCast(exponent, to: SIMD16<Float>.self)
    return result.replacing(with: 0, where: x .< -87.3)
}

@inline(__always)
func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }

@inline(__always)
func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self) }
