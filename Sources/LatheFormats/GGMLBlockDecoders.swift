// One decoder per ggml block type: the values of a block, 32 at a time, in two SIMD16 registers. The dequantizer
// (`GGMLType.dequantize`) stores them; `GGMLBlockWeight`'s dot products multiply them with the activations where
// they are, so both see the same values. Each decoder does ggml's and gguf-py's Float operations in their order, so
// results match them bit for bit: e.g. Q4_1 is `d * q + m` (a multiply then an add, never fused), K-quants are
// `(d * scale) * q - (dmin * min)`.

/// A ggml block type's decoder of 32 consecutive values, as integers and the scale and offset that make them
/// values: value = scale · q (+ offset), ggml's own operations in its order.
protocol GGMLBlockDecoder {
    /// The type whose blocks it decodes (their layout: `blockSize`, `typeSize`).
    static var type: GGMLType { get }
    /// Whether values have an offset (Q4_1, Q5_1, K-quants' minimums). Without one no `+ 0` is done, which would
    /// turn ggml's −0 into +0.
    static var hasOffset: Bool { get }
    /// Whether both halves of a chunk have one scale (all but Q6_K, whose scales cover 16 values).
    static var halvesShareScale: Bool { get }
    /// Values 32·chunk ..< 32·chunk + 32 of the block at `block` as integers; `halves` is `HalfPrecision.halfTable`.
    static func scaledChunk(_ block: UnsafeRawPointer, _ chunk: Int, _ halves: UnsafePointer<Float>) -> GGMLScaledChunk
}

/// 32 values of a block as exact integers in float lanes (`low` the first 16, `high` the next 16), each half's
/// scale and the chunk's offset.
struct GGMLScaledChunk {
    var low: SIMD16<Float>
    var high: SIMD16<Float>
    var lowScale: Float
    var highScale: Float
    var offset: Float = 0
}

extension GGMLScaledChunk {
    /// One scale for both halves (every type but Q6_K).
    @inline(__always)
    init(_ low: SIMD16<Int32>, _ high: SIMD16<Int32>, scale: Float, offset: Float = 0) {
        self.init(low: floats(low), high: floats(high), lowScale: scale, highScale: scale, offset: offset)
    }
}

/// 32 decoded values: `low` holds the first 16, `high` the next 16.
struct GGMLChunk {
    var low: SIMD16<Float>
    var high: SIMD16<Float>
}

@_transparent
func half(_ halves: UnsafePointer<Float>, _ base: UnsafeRawPointer, _ offset: Int) -> Float {
    halves[Int(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))]
}

@_transparent
func bytes16(_ base: UnsafeRawPointer, _ offset: Int) -> SIMD16<UInt8> {
    base.loadUnaligned(fromByteOffset: offset, as: SIMD16<UInt8>.self)
}

// The conversions below are lane loops rather than the standard library's generic SIMD conversions
// (`init(truncatingIfNeeded:)`, `init(_:)`), which the optimizer left as out-of-line calls, a third of decoding's
// time; inlined, each loop becomes one vector instruction (vpmovzxbd, vpmovsxbd, vcvtdq2ps).

/// Bytes zero-extended to 32-bit lanes.
@inline(__always)
func integers(_ bytes: SIMD16<UInt8>) -> SIMD16<Int32> {
    var result = SIMD16<Int32>()
    for i in 0..<16 { result[i] = Int32(bytes[i]) }
    return result
}

/// Signed bytes sign-extended to 32-bit lanes.
@inline(__always)
func integers(_ bytes: SIMD16<Int8>) -> SIMD16<Int32> {
    var result = SIMD16<Int32>()
    for i in 0..<16 { result[i] = Int32(bytes[i]) }
    return result
}

/// Exact: every value here is a small integer.
@inline(__always)
func floats(_ values: SIMD16<Int32>) -> SIMD16<Float> {
    var result = SIMD16<Float>()
    for i in 0..<16 { result[i] = Float(values[i]) }
    return result
}

/// Lane i of the result is bit (first + i) of `bits`, as 0 or 16: the fifth bit of a 5-bit quant.
@_transparent
func fifthBits(_ bits: UInt32, first: UInt32) -> SIMD16<Int32> {
    let lanes = SIMD16<UInt32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) &+ first
    return unsafeBitCast(((SIMD16<UInt32>(repeating: bits) &>> lanes) & 1) &<< 4, to: SIMD16<Int32>.self)
}

private let lowNibble = SIMD16<UInt8>(repeating: 0x0F)

// Q8_0 block: d (fp16), 32 × int8.  y = q * d
enum Q8_0Block: GGMLBlockDecoder {
    static var type: GGMLType { .q8_0 }
    static var hasOffset: Bool { false }
    @inline(__always)
    static func scaledChunk(_ block: UnsafeRawPointer, _ chunk: Int, _ halves: UnsafePointer<Float>) -> GGMLScaledChunk {
        let d = half(halves, block, 0)
        return GGMLScaledChunk(integers(block.loadUnaligned(fromByteOffset: 2, as: SIMD16<Int8>.self)),
                               integers(block.loadUnaligned(fromByteOffset: 18, as: SIMD16<Int8>.self)), scale: d)
    }
}

// Q4_0 block: d (fp16), 16 bytes of nibbles; element j is the low nibble of byte j, element j+16 the high one.
// y = d * (q - 8)
enum Q4_0Block: GGMLBlockDecoder {
    static var type: GGMLType { .q4_0 }
    static var hasOffset: Bool { false }
    @inline(__always)
    static func scaledChunk(_ block: UnsafeRawPointer, _ chunk: Int, _ halves: UnsafePointer<Float>) -> GGMLScaledChunk {
        let d = half(halves, block, 0)
        let packed = bytes16(block, 2)
        return GGMLScaledChunk(integers(packed & lowNibble) &- 8, integers(packed &>> 4) &- 8, scale: d)
    }
}

// Q4_1 block: d (fp16), m (fp16), 16 bytes of nibbles.  y = d * q + m
enum Q4_1Block: GGMLBlockDecoder {
    static var type: GGMLType { .q4_1 }
    static var hasOffset: Bool { true }
    @inline(__always)
    static func scaledChunk(_ block: UnsafeRawPointer, _ chunk: Int, _ halves: UnsafePointer<Float>) -> GGMLScaledChunk {
        let d = half(halves, block, 0), m = half(halves, block, 2)
        let packed = bytes16(block, 4)
        return GGMLScaledChunk(integers(packed & lowNibble), integers(packed &>> 4), scale: d, offset: m)
    }
}

// Q5_0 block: d (fp16), qh (32 fifth bits, little-endian), 16 bytes of low nibbles.  y = d * (q - 16)
enum Q5_0Block: GGMLBlockDecoder {
    static var type: GGMLType { .q5_0 }
    static var hasOffset: Bool { false }
    @inline(__always)
    static func scaledChunk(_ block: UnsafeRawPointer, _ chunk: Int, _ halves: UnsafePointer<Float>) -> GGMLScaledChunk {
        let d = half(halves, block, 0)
        let fifth = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
        let packed = bytes16(block, 6)
        let low = integers(packed & lowNibble) | fifthBits(fifth, first: 0)
        let high = integers(packed &>> 4) | fifthBits(fifth, first: 16)
        return GGMLScaledChunk(low &- 16, high &- 16, scale: d)
    }
}

// Q5_1 block: d (fp16), m (fp16), qh, 16 bytes of low nibbles.  y = d * q + m
enum Q5_1Block: GGMLBlockDecoder {
    static var type: GGMLType { .q5_1 }
    static var hasOffset: Bool { true }
    @inline(__always)
    static func scaledChunk(_ block: UnsafeRawPointer, _ chunk: Int, _ halves: UnsafePointer<Float>) -> GGMLScaledChunk {
        let d = half(halves, block, 0), m = half(halves, block, 2)
        let fifth = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let packed = bytes16(block, 8)
        let low = integers(packed & lowNibble) | fifthBits(fifth, first: 0)
        let high = integers(packed &>> 4) | fifthBits(fifth, first: 16)
        return GGMLScaledChunk(low, high, scale: d, offset: m)
    }
}

/// The eight 6-bit scales and mins of a Q4_K/Q5_K super-block, packed in 12 bytes:
/// bytes 0–3 hold scales 0–3 (low 6 bits) and the top 2 bits of scales 4–7; bytes 4–7 the same for mins;
/// bytes 8–11 the low 4 bits of scales 4–7 (low nibble) and mins 4–7 (high nibble).
@inline(__always)
func kQuantScaleAndMin(_ packed: UnsafeRawPointer, _ j: Int) -> (scale: UInt8, min: UInt8) {
    if j < 4 {
        return (packed.load(fromByteOffset: j, as: UInt8.self) & 0x3F,
                packed.load(fromByteOffset: j + 4, as: UInt8.self) & 0x3F)
    }
    let mixed = packed.load(fromByteOffset: j + 4, as: UInt8.self)
    let scaleHigh = packed.load(fromByteOffset: j - 4, as: UInt8.self)
    let minHigh = packed.load(fromByteOffset: j, as: UInt8.self)
    return ((mixed & 0x0F) | ((scaleHigh >> 2) & 0x30), (mixed >> 4) | ((minHigh >> 2) & 0x30))
}

/// Sub-block `sub` (32 values) of a Q4_K or Q5_K super-block: d, dmin (fp16), 12 bytes of scales, Q5_K's 32 bytes
/// of fifth bits (bit `sub` of byte l is the fifth bit of element sub·32 + l), then 128 bytes of nibbles: sub-block
/// 2i takes the low nibbles of bytes 32i..<32i+32, sub-block 2i+1 their high nibbles.  y = (d·scale)·q − dmin·min
@inline(__always)
func kQuantChunk(_ block: UnsafeRawPointer, _ sub: Int, _ halves: UnsafePointer<Float>, fifthBitsAt: Int?) -> GGMLScaledChunk {
    let d = half(halves, block, 0), dmin = half(halves, block, 2)
    let (scale, minimum) = kQuantScaleAndMin(block + 4, sub)
    let dl = d * Float(scale), ml = dmin * Float(minimum)
    let quants = block + (fifthBitsAt == nil ? 16 : 48) + (sub >> 1) * 32
    let shift = UInt8((sub & 1) * 4)
    var low = integers((bytes16(quants, 0) &>> shift) & lowNibble)
    var high = integers((bytes16(quants, 16) &>> shift) & lowNibble)
    if let fifthBitsAt {
        let bit = UInt8(sub), one = SIMD16<UInt8>(repeating: 1)
        low |= integers((bytes16(block, fifthBitsAt) &>> bit) & one) &<< 4
        high |= integers((bytes16(block, fifthBitsAt + 16) &>> bit) & one) &<< 4
    }
    // dl·q − ml as dl·q + (−ml): the same float.
    return GGMLScaledChunk(low, high, scale: dl, offset: -ml)
}

enum Q4_KBlock: GGMLBlockDecoder {
    static var type: GGMLType { .q4_K }
    static var hasOffset: Bool { true }
    @inline(__always)
    static func scaledChunk(_ block: UnsafeRawPointer, _ chunk: Int, _ halves: UnsafePointer<Float>) -> GGMLScaledChunk {
        kQuantChunk(block, chunk, halves, fifthBitsAt: nil)
    }
}

enum Q5_KBlock: GGMLBlockDecoder {
    static var type: GGMLType { .q5_K }
    static var hasOffset: Bool { true }
    @inline(__always)
    static func scaledChunk(_ block: UnsafeRawPointer, _ chunk: Int, _ halves: UnsafePointer<Float>) -> GGMLScaledChunk {
        kQuantChunk(block, chunk, halves, fifthBitsAt: 16)
    }
}

// Q6_K super-block: 128 bytes ql, 64 bytes qh, 16 int8 scales, d (fp16). Each half of 128 elements uses 64 ql
// bytes (low nibbles for elements 0–63, high for 64–127) and 32 qh bytes (2 bits per 32-element group); each 16
// elements share a scale.  y = (d · scale) · (q − 32)
enum Q6_KBlock: GGMLBlockDecoder {
    static var type: GGMLType { .q6_K }
    static var hasOffset: Bool { false }
    static var halvesShareScale: Bool { false }
    @inline(__always)
    static func scaledChunk(_ block: UnsafeRawPointer, _ chunk: Int, _ halves: UnsafePointer<Float>) -> GGMLScaledChunk {
        let d = half(halves, block, 208)
        let halfIndex = chunk >> 2, group = chunk & 3
        let lowBytes = block + halfIndex * 64 + (group & 1) * 32, lowShift = UInt8((group >> 1) * 4)
        let highBytes = block + 128 + halfIndex * 32, highShift = UInt8(group * 2)
        let three = SIMD16<UInt8>(repeating: 3)
        func quants(_ offset: Int) -> SIMD16<Int32> {
            let low = (bytes16(lowBytes, offset) &>> lowShift) & lowNibble
            let high = (bytes16(highBytes, offset) &>> highShift) & three
            return integers(low | (high &<< 4)) &- 32
        }
        let scales = block + 192 + chunk * 2
        let firstScale = Float(Int8(bitPattern: scales.load(as: UInt8.self)))
        let secondScale = Float(Int8(bitPattern: scales.load(fromByteOffset: 1, as: UInt8.self)))
        return GGMLScaledChunk(low: floats(quants(0)), high: floats(quants(16)), lowScale: d * firstScale, highScale: d * secondScale)
    }
}

extension GGMLBlockDecoder {
    /// Values per block (32, or 256 for K-quants).
    static var valuesPerBlock: Int { type.blockSize }
    /// Bytes per block (ggml's `type_size`).
    static var bytesPerBlock: Int { type.typeSize }
    static var chunksPerBlock: Int { valuesPerBlock / 32 }
    static var halvesShareScale: Bool { true }

    /// Values 32·chunk ..< 32·chunk + 32 of a block: scale · q (+ offset).
    @inline(__always)
    static func chunk(_ block: UnsafeRawPointer, _ chunk: Int, _ halves: UnsafePointer<Float>) -> GGMLChunk {
        let q = scaledChunk(block, chunk, halves)
        if !hasOffset { return GGMLChunk(low: q.lowScale * q.low, high: q.highScale * q.high) }
        return GGMLChunk(low: q.lowScale * q.low + q.offset, high: q.highScale * q.high + q.offset)
    }

    /// Decodes `blocks` consecutive blocks at `source` into `destination` (blocks · valuesPerBlock floats).
    static func decode(_ source: UnsafeRawPointer, blocks: Int, into destination: UnsafeMutablePointer<Float>,
                       halves: UnsafePointer<Float>) {
        for b in 0..<blocks {
            let block = source + b * bytesPerBlock, output = destination + b * valuesPerBlock
            for c in 0..<chunksPerBlock {
                let values = chunk(block, c, halves)
                UnsafeMutableRawPointer(output + 32 * c).storeBytes(of: values.low, as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(output + 32 * c + 16).storeBytes(of: values.high, as: SIMD16<Float>.self)
            }
        }
    }

    /// output[i · outputStride + row] (+)= Σ_k input[i · columns + k] · W[row, k] for the weight rows `rows` and up to
    /// four input rows `i` (`count`), W's rows `rowBytes` apart at `weight`. Each chunk of a weight row is decoded
    /// once in registers to its integers, multiplied with every input row and scaled once per half:
    /// Σ (s·q + o)·x = s·Σ q·x + o·Σ x, with Σ x over each 32 inputs given in `chunkSums` (`columns / 32` per input
    /// row) for types with an offset.
    @inline(__always)
    static func dot(_ weight: UnsafeRawPointer, rowBytes: Int, rows: Range<Int>, columns: Int,
                    input: UnsafePointer<Float>, count: Int, chunkSums: UnsafePointer<Float>,
                    into output: UnsafeMutablePointer<Float>, outputStride: Int,
                    accumulate: Bool, halves: UnsafePointer<Float>) {
        let x0 = input, x1 = input + columns, x2 = input + 2 * columns, x3 = input + 3 * columns
        let chunks = columns / 32
        let s0 = chunkSums, s1 = chunkSums + chunks, s2 = chunkSums + 2 * chunks, s3 = chunkSums + 3 * chunks
        let blocks = columns / valuesPerBlock
        for row in rows {
            let weightRow = weight + row * rowBytes
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
            var offsets = SIMD4<Float>()
            for b in 0..<blocks {
                let block = weightRow + b * bytesPerBlock
                for c in 0..<chunksPerBlock {
                    let w = scaledChunk(block, c, halves)
                    let k = b * valuesPerBlock + 32 * c, j = b * chunksPerBlock + c
                    @inline(__always)
                    func add(_ x: UnsafePointer<Float>, _ a: inout SIMD16<Float>) {
                        if halvesShareScale {
                            var products = w.low * loadFloats(x + k)
                            products.addProduct(w.high, loadFloats(x + k + 16))
                            a.addProduct(SIMD16(repeating: w.lowScale), products)
                        } else {
                            a.addProduct(SIMD16(repeating: w.lowScale), w.low * loadFloats(x + k))
                            a.addProduct(SIMD16(repeating: w.highScale), w.high * loadFloats(x + k + 16))
                        }
                    }
                    add(x0, &a0)
                    if count > 1 { add(x1, &a1) }
                    if count > 2 { add(x2, &a2) }
                    if count > 3 { add(x3, &a3) }
                    if hasOffset {
                        offsets.addProduct(SIMD4(repeating: w.offset), SIMD4(s0[j], count > 1 ? s1[j] : 0,
                                                                            count > 2 ? s2[j] : 0, count > 3 ? s3[j] : 0))
                    }
                }
            }
            let sums = SIMD4<Float>(a0.sum(), a1.sum(), a2.sum(), a3.sum()) + offsets
            for i in 0..<count {
                let destination = output + i * outputStride + row
                destination.pointee = accumulate ? destination.pointee + sums[i] : sums[i]
            }
        }
    }
}

@_transparent
func loadFloats(_ pointer: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(pointer).loadUnaligned(as: SIMD16<Float>.self)
}

extension SIMD where Scalar == Float {
    /// self += a · b, one fused multiply-add per lane.
    @_transparent
    mutating func addProduct(_ a: Self, _ b: Self) { self = addingProduct(a, b) }
}

/// A block type's decoder and dot product, specialized for it: what `GGMLType.dequantize` and `GGMLBlockWeight`
/// call through.
struct GGMLBlockKernels: Sendable {
    let valuesPerBlock: Int
    let bytesPerBlock: Int
    /// Whether `dot` reads the inputs' sums per 32 (`GGMLBlockDecoder.hasOffset`).
    let hasOffset: Bool
    /// `GGMLBlockDecoder.decode`: source, block count, destination, half table.
    let decode: @Sendable (UnsafeRawPointer, Int, UnsafeMutablePointer<Float>, UnsafePointer<Float>) -> Void
    /// `GGMLBlockDecoder.dot`.
    let dot: @Sendable (_ weight: UnsafeRawPointer, _ rowBytes: Int, _ rows: Range<Int>, _ columns: Int,
                        _ input: UnsafePointer<Float>, _ count: Int, _ chunkSums: UnsafePointer<Float>,
                        _ output: UnsafeMutablePointer<Float>,
                        _ outputStride: Int, _ accumulate: Bool, _ halves: UnsafePointer<Float>) -> Void

    init<D: GGMLBlockDecoder>(_ decoder: D.Type) {
        valuesPerBlock = D.valuesPerBlock
        bytesPerBlock = D.bytesPerBlock
        hasOffset = D.hasOffset
        decode = { D.decode($0, blocks: $1, into: $2, halves: $3) }
        dot = { D.dot($0, rowBytes: $1, rows: $2, columns: $3, input: $4, count: $5, chunkSums: $6, into: $7,
                      outputStride: $8, accumulate: $9, halves: $10) }
    }
}

extension GGMLType {
    /// The block decoder of a quantized type; nil for the plain types (F32, F16, BF16) and those Lathe cannot decode.
    var blockKernels: GGMLBlockKernels? {
        switch self {
        case .q8_0: return Self.q8_0Kernels
        case .q4_0: return Self.q4_0Kernels
        case .q4_1: return Self.q4_1Kernels
        case .q5_0: return Self.q5_0Kernels
        case .q5_1: return Self.q5_1Kernels
        case .q4_K: return Self.q4_KKernels
        case .q5_K: return Self.q5_KKernels
        case .q6_K: return Self.q6_KKernels
        default: return nil
        }
    }

    private static let q8_0Kernels = GGMLBlockKernels(Q8_0Block.self)
    private static let q4_0Kernels = GGMLBlockKernels(Q4_0Block.self)
    private static let q4_1Kernels = GGMLBlockKernels(Q4_1Block.self)
    private static let q5_0Kernels = GGMLBlockKernels(Q5_0Block.self)
    private static let q5_1Kernels = GGMLBlockKernels(Q5_1Block.self)
    private static let q4_KKernels = GGMLBlockKernels(Q4_KBlock.self)
    private static let q5_KKernels = GGMLBlockKernels(Q5_KBlock.self)
    private static let q6_KKernels = GGMLBlockKernels(Q6_KBlock.self)
}
