// Dequantization as ggml and gguf-py's quants.py do it, operation for operation in Float, so results match
// bit for bit: e.g. Q4_1 is `d * q + m` (a multiply then an add, never fused), K-quants are `(d * scale) * q - (dmin * min)`.

extension GGMLType {
    /// Decodes `source` (whole blocks of this type) into `destination`, which must hold exactly the element count.
    public func dequantize(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard canDequantize else {
            throw FormatError(path: "(\(self) data)", problem: "dequantization of \(self) is not supported",
                              fix: "supported types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K")
        }
        guard let needed = byteCount(elementCount: destination.count) else {
            throw FormatError(path: "(\(self) data)",
                              problem: "\(destination.count) elements are not a whole number of \(blockSize)-element blocks")
        }
        guard source.count == needed else {
            throw FormatError(path: "(\(self) data)",
                              problem: "\(source.count) bytes given for \(destination.count) elements, which take \(needed) bytes")
        }
        guard let input = source.baseAddress, let output = destination.baseAddress else { return }
        let blocks = destination.count / blockSize
        switch self {
        case .f32: UnsafeMutableRawPointer(output).copyMemory(from: input, byteCount: needed)
        case .f16: Self.dequantizeF16(input, output, destination.count)
        case .bf16: Self.dequantizeBF16(input, output, destination.count)
        case .q8_0: Self.dequantizeQ8_0(input, output, blocks)
        case .q4_0: Self.dequantizeQ4_0(input, output, blocks)
        case .q4_1: Self.dequantizeQ4_1(input, output, blocks)
        case .q5_0: Self.dequantizeQ5_0(input, output, blocks)
        case .q5_1: Self.dequantizeQ5_1(input, output, blocks)
        case .q4_K: Self.dequantizeQ4_K(input, output, blocks)
        case .q5_K: Self.dequantizeQ5_K(input, output, blocks)
        case .q6_K: Self.dequantizeQ6_K(input, output, blocks)
        default: break  // excluded by canDequantize above
        }
    }

    @inline(__always)
    private static func half(_ table: UnsafePointer<Float>, _ base: UnsafeRawPointer, _ offset: Int) -> Float {
        table[Int(base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))]
    }

    private static func dequantizeF16(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>, _ count: Int) {
        HalfPrecision.halfTable.withUnsafeBufferPointer { table in
            let table = table.baseAddress!
            for i in 0..<count { output[i] = half(table, input, 2 * i) }
        }
    }

    private static func dequantizeBF16(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>, _ count: Int) {
        for i in 0..<count {
            output[i] = HalfPrecision.float(fromBFloat16Bits: input.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        }
    }

    // Q8_0 block: d (fp16), 32 × int8.  y = q * d
    private static func dequantizeQ8_0(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>, _ blocks: Int) {
        HalfPrecision.halfTable.withUnsafeBufferPointer { table in
            let table = table.baseAddress!
            for b in 0..<blocks {
                let block = input + b * 34
                let d = half(table, block, 0)
                let y = output + b * 32
                for j in 0..<32 {
                    y[j] = Float(Int8(bitPattern: block.load(fromByteOffset: 2 + j, as: UInt8.self))) * d
                }
            }
        }
    }

    // Q4_0 block: d (fp16), 16 bytes of nibbles; element j is the low nibble of byte j, element j+16 the high one.
    private static func dequantizeQ4_0(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>, _ blocks: Int) {
        HalfPrecision.halfTable.withUnsafeBufferPointer { table in
            let table = table.baseAddress!
            for b in 0..<blocks {
                let block = input + b * 18
                let d = half(table, block, 0)
                let y = output + b * 32
                for j in 0..<16 {
                    let byte = block.load(fromByteOffset: 2 + j, as: UInt8.self)
                    y[j] = d * Float(Int(byte & 0x0F) - 8)
                    y[j + 16] = d * Float(Int(byte >> 4) - 8)
                }
            }
        }
    }

    // Q4_1 block: d (fp16), m (fp16), 16 bytes of nibbles.  y = d * q + m
    private static func dequantizeQ4_1(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>, _ blocks: Int) {
        HalfPrecision.halfTable.withUnsafeBufferPointer { table in
            let table = table.baseAddress!
            for b in 0..<blocks {
                let block = input + b * 20
                let d = half(table, block, 0)
                let m = half(table, block, 2)
                let y = output + b * 32
                for j in 0..<16 {
                    let byte = block.load(fromByteOffset: 4 + j, as: UInt8.self)
                    y[j] = d * Float(byte & 0x0F) + m
                    y[j + 16] = d * Float(byte >> 4) + m
                }
            }
        }
    }

    // Q5_0 block: d (fp16), qh (32 high bits, little-endian), 16 bytes of low nibbles.  y = d * (q - 16)
    private static func dequantizeQ5_0(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>, _ blocks: Int) {
        HalfPrecision.halfTable.withUnsafeBufferPointer { table in
            let table = table.baseAddress!
            for b in 0..<blocks {
                let block = input + b * 22
                let d = half(table, block, 0)
                let high = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
                let y = output + b * 32
                for j in 0..<16 {
                    let byte = block.load(fromByteOffset: 6 + j, as: UInt8.self)
                    let low = Int(byte & 0x0F) | Int((high >> UInt32(j)) & 1) << 4
                    let upper = Int(byte >> 4) | Int((high >> UInt32(j + 16)) & 1) << 4
                    y[j] = d * Float(low - 16)
                    y[j + 16] = d * Float(upper - 16)
                }
            }
        }
    }

    // Q5_1 block: d (fp16), m (fp16), qh, 16 bytes of low nibbles.  y = d * q + m
    private static func dequantizeQ5_1(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>, _ blocks: Int) {
        HalfPrecision.halfTable.withUnsafeBufferPointer { table in
            let table = table.baseAddress!
            for b in 0..<blocks {
                let block = input + b * 24
                let d = half(table, block, 0)
                let m = half(table, block, 2)
                let high = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
                let y = output + b * 32
                for j in 0..<16 {
                    let byte = block.load(fromByteOffset: 8 + j, as: UInt8.self)
                    let low = UInt32(byte & 0x0F) | ((high >> UInt32(j)) & 1) << 4
                    let upper = UInt32(byte >> 4) | ((high >> UInt32(j + 16)) & 1) << 4
                    y[j] = d * Float(low) + m
                    y[j + 16] = d * Float(upper) + m
                }
            }
        }
    }

    /// The eight 6-bit scales and mins of a Q4_K/Q5_K super-block, packed in 12 bytes:
    /// bytes 0–3 hold scales 0–3 (low 6 bits) and the top 2 bits of scales 4–7; bytes 4–7 the same for mins;
    /// bytes 8–11 the low 4 bits of scales 4–7 (low nibble) and mins 4–7 (high nibble).
    @inline(__always)
    private static func kQuantScaleAndMin(_ packed: UnsafeRawPointer, _ j: Int) -> (scale: UInt8, min: UInt8) {
        if j < 4 {
            return (packed.load(fromByteOffset: j, as: UInt8.self) & 0x3F,
                    packed.load(fromByteOffset: j + 4, as: UInt8.self) & 0x3F)
        }
        let mixed = packed.load(fromByteOffset: j + 4, as: UInt8.self)
        let scaleHigh = packed.load(fromByteOffset: j - 4, as: UInt8.self)
        let minHigh = packed.load(fromByteOffset: j, as: UInt8.self)
        return ((mixed & 0x0F) | ((scaleHigh >> 2) & 0x30), (mixed >> 4) | ((minHigh >> 2) & 0x30))
    }

    // Q4_K super-block (256): d, dmin (fp16), 12 bytes of scales, 128 bytes of nibbles. Sub-block 2i takes the low
    // nibbles of bytes 32i..<32i+32, sub-block 2i+1 their high nibbles.
    private static func dequantizeQ4_K(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>, _ blocks: Int) {
        dequantizeKQuant(input, output, blocks, blockBytes: 144, highBitsOffset: nil)
    }

    // Q5_K super-block: d, dmin, 12 bytes of scales, 32 bytes qh (bit `sub` of byte l is the 5th bit of element
    // sub*32+l), 128 bytes of low nibbles laid out as in Q4_K.
    private static func dequantizeQ5_K(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>, _ blocks: Int) {
        dequantizeKQuant(input, output, blocks, blockBytes: 176, highBitsOffset: 16)
    }

    /// Q4_K and Q5_K share their layout but for Q5_K's 32 bytes of fifth bits before the nibbles.
    private static func dequantizeKQuant(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>, _ blocks: Int,
                                         blockBytes: Int, highBitsOffset: Int?) {
        HalfPrecision.halfTable.withUnsafeBufferPointer { table in
            let table = table.baseAddress!
            for b in 0..<blocks {
                let block = input + b * blockBytes
                let d = half(table, block, 0)
                let dmin = half(table, block, 2)
                let scales = block + 4
                let highBits = highBitsOffset.map { block + $0 }
                let quants = block + (highBitsOffset == nil ? 16 : 48)
                let y = output + b * 256
                for sub in 0..<8 {
                    let (scale, minimum) = kQuantScaleAndMin(scales, sub)
                    let dl = d * Float(scale)
                    let ml = dmin * Float(minimum)
                    let shift = UInt8((sub & 1) * 4)
                    let bytes = quants + (sub >> 1) * 32
                    let out = y + sub * 32
                    for l in 0..<32 {
                        var q = (bytes.load(fromByteOffset: l, as: UInt8.self) >> shift) & 0x0F
                        if let highBits { q |= ((highBits.load(fromByteOffset: l, as: UInt8.self) >> UInt8(sub)) & 1) << 4 }
                        out[l] = dl * Float(q) - ml
                    }
                }
            }
        }
    }

    // Q6_K super-block: 128 bytes ql, 64 bytes qh, 16 int8 scales, d (fp16). Each half of 128 elements uses 64 ql
    // bytes (low nibbles for elements 0–63, high for 64–127) and 32 qh bytes (2 bits per 32-element group).
    private static func dequantizeQ6_K(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>, _ blocks: Int) {
        HalfPrecision.halfTable.withUnsafeBufferPointer { table in
            let table = table.baseAddress!
            for b in 0..<blocks {
                let block = input + b * 210
                let d = half(table, block, 208)
                let y = output + b * 256
                for e in 0..<256 {
                    let halfIndex = e >> 7
                    let r = e & 127
                    let lowByte = block.load(fromByteOffset: halfIndex * 64 + (r & 63), as: UInt8.self)
                    let low = (lowByte >> UInt8((r >> 6) * 4)) & 0x0F
                    let highByte = block.load(fromByteOffset: 128 + halfIndex * 32 + (r & 31), as: UInt8.self)
                    let high = (highByte >> UInt8((r >> 5) * 2)) & 0x03
                    let q = Int(low | (high << 4)) - 32
                    let scale = Float(Int8(bitPattern: block.load(fromByteOffset: 192 + (e >> 4), as: UInt8.self)))
                    y[e] = (d * scale) * Float(q)
                }
            }
        }
    }
}
