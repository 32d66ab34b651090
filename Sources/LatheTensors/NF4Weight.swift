/// A frozen weight in QLoRA's NF4 format with double quantization, value for value as bitsandbytes 0.50.2
/// writes it (`quantize_4bit(W, blocksize: 64, quant_type: "nf4", compress_statistics: true)` on the CPU):
/// about 4.13 bits per weight, an eighth of float32.
///
/// W's values, flattened row-major, fall into blocks of `blockSize` (64) consecutive values; a block may run
/// across the end of a row, and the last may be short. Each value is stored as the 4-bit index of the NF4 code
/// (`codebook`, quantiles of a normal distribution scaled to [-1, 1]) nearest to value / absmax, where absmax is
/// the block's largest magnitude; two indices share a byte, the first value in the high nibble.
/// Double quantization stores the absmaxes themselves in 8 bits: their mean (`absmaxOffset`) is subtracted, and
/// each group of 256 is scaled by its own largest magnitude (`absmaxScales`) and rounded to a code of
/// bitsandbytes' signed dynamic map (`absmaxCodebook`) through its 65 536-slot lookup table, so a block's absmax is
/// absmaxCodebook[quantizedAbsmax[b]] · absmaxScales[b / 256] + absmaxOffset, in float32, multiply then add.
public final class NF4Weight: CompactWeight {
    /// Why a weight cannot be quantized.
    public enum QuantizationError: Error, Equatable, CustomStringConvertible {
        case negativeShape(rows: Int, columns: Int)
        case countMismatch(rows: Int, columns: Int, valueCount: Int)
        case unsupportedBlockSize(Int)
        case nonFiniteValue(row: Int, column: Int, value: Float)

        public var description: String {
            switch self {
            case let .negativeShape(rows, columns):
                return "NF4 weight: shape [\(rows), \(columns)] has a negative dimension"
            case let .countMismatch(rows, columns, valueCount):
                return "NF4 weight: shape [\(rows), \(columns)] needs \(rows * columns) values, got \(valueCount)"
            case let .unsupportedBlockSize(size):
                return "NF4 weight: block size \(size) is not one bitsandbytes supports "
                    + "(\(NF4Weight.supportedBlockSizes.map(String.init).joined(separator: ", ")))"
            case let .nonFiniteValue(row, column, value):
                return "NF4 weight: value \(value) at row \(row), column \(column) is not finite; "
                    + "it would spoil its whole block's scale"
            }
        }
    }

    /// The 16 NF4 codes, bitsandbytes' `get_4bit_type("nf4")`, in index order.
    public static let codebook: [Float] = [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
        -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
        0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    ]

    /// bitsandbytes' signed 8-bit dynamic map (`create_dynamic_map(signed=True)`), sorted: the codes of the
    /// quantized absmaxes (index 0 is -0.99297, not -1). Written out because torch's float32 `linspace` that builds it is not reproducible
    /// from the formula in double precision (72 of the 256 codes would differ by an ulp).
    public static let absmaxCodebook: [Float] = [
        -9.9296874e-01, -9.789063e-01, -9.6484375e-01, -9.507812e-01, -9.3671876e-01, -9.2265624e-01, -9.085938e-01, -8.9453125e-01,
        -8.804687e-01, -8.6640626e-01, -8.5234374e-01, -8.382813e-01, -8.2421875e-01, -8.101562e-01, -7.9609376e-01, -7.8203124e-01,
        -7.679688e-01, -7.5390625e-01, -7.398437e-01, -7.2578126e-01, -7.117188e-01, -6.976563e-01, -6.8359375e-01, -6.695312e-01,
        -6.5546876e-01, -6.414063e-01, -6.273438e-01, -6.1328125e-01, -5.992187e-01, -5.8515626e-01, -5.710938e-01, -5.570313e-01,
        -5.4296875e-01, -5.289062e-01, -5.148437e-01, -5.0078124e-01, -4.867187e-01, -4.7265625e-01, -4.5859373e-01, -4.4453126e-01,
        -4.3046874e-01, -4.1640624e-01, -4.0234375e-01, -3.8828123e-01, -3.7421876e-01, -3.6015624e-01, -3.4609374e-01, -3.3203125e-01,
        -3.1796873e-01, -3.0390626e-01, -2.8984374e-01, -2.7578127e-01, -2.6171875e-01, -2.4765624e-01, -2.3359375e-01, -2.1953125e-01,
        -2.0546874e-01, -1.9140625e-01, -1.7734376e-01, -1.6328125e-01, -1.4921875e-01, -1.3515624e-01, -1.2109375e-01, -1.07031256e-01,
        -9.859375e-02, -9.578126e-02, -9.2968754e-02, -9.015625e-02, -8.734375e-02, -8.453125e-02, -8.171876e-02, -7.890625e-02,
        -7.609375e-02, -7.328125e-02, -7.0468746e-02, -6.7656256e-02, -6.484375e-02, -6.203125e-02, -5.9218753e-02, -5.640625e-02,
        -5.359375e-02, -5.078125e-02, -4.796875e-02, -4.515625e-02, -4.2343747e-02, -3.953125e-02, -3.6718752e-02, -3.390625e-02,
        -3.109375e-02, -2.8281251e-02, -2.546875e-02, -2.265625e-02, -1.9843752e-02, -1.703125e-02, -1.421875e-02, -1.140625e-02,
        -9.71875e-03, -9.156249e-03, -8.59375e-03, -8.03125e-03, -7.46875e-03, -6.90625e-03, -6.34375e-03, -5.78125e-03,
        -5.2187503e-03, -4.6562497e-03, -4.09375e-03, -3.5312497e-03, -2.96875e-03, -2.40625e-03, -1.84375e-03, -1.2812499e-03,
        -9.437501e-04, -8.3125e-04, -7.1875006e-04, -6.062501e-04, -4.9375003e-04, -3.8125002e-04, -2.6875004e-04, -1.5625001e-04,
        -8.875e-05, -6.625e-05, -4.375e-05, -2.1249998e-05, -7.75e-06, -3.2500002e-06, -5.5000004e-07, 0e+00,
        5.5000004e-07, 3.2500002e-06, 7.75e-06, 2.1249998e-05, 4.375e-05, 6.625e-05, 8.875e-05, 1.5625001e-04,
        2.6875004e-04, 3.8125002e-04, 4.9375003e-04, 6.062501e-04, 7.1875006e-04, 8.3125e-04, 9.437501e-04, 1.2812499e-03,
        1.84375e-03, 2.40625e-03, 2.96875e-03, 3.5312497e-03, 4.09375e-03, 4.6562497e-03, 5.2187503e-03, 5.78125e-03,
        6.34375e-03, 6.90625e-03, 7.46875e-03, 8.03125e-03, 8.59375e-03, 9.156249e-03, 9.71875e-03, 1.140625e-02,
        1.421875e-02, 1.703125e-02, 1.9843752e-02, 2.265625e-02, 2.546875e-02, 2.8281251e-02, 3.109375e-02, 3.390625e-02,
        3.6718752e-02, 3.953125e-02, 4.2343747e-02, 4.515625e-02, 4.796875e-02, 5.078125e-02, 5.359375e-02, 5.640625e-02,
        5.9218753e-02, 6.203125e-02, 6.484375e-02, 6.7656256e-02, 7.0468746e-02, 7.328125e-02, 7.609375e-02, 7.890625e-02,
        8.171876e-02, 8.453125e-02, 8.734375e-02, 9.015625e-02, 9.2968754e-02, 9.578126e-02, 9.859375e-02, 1.07031256e-01,
        1.2109375e-01, 1.3515624e-01, 1.4921875e-01, 1.6328125e-01, 1.7734376e-01, 1.9140625e-01, 2.0546874e-01, 2.1953125e-01,
        2.3359375e-01, 2.4765624e-01, 2.6171875e-01, 2.7578127e-01, 2.8984374e-01, 3.0390626e-01, 3.1796873e-01, 3.3203125e-01,
        3.4609374e-01, 3.6015624e-01, 3.7421876e-01, 3.8828123e-01, 4.0234375e-01, 4.1640624e-01, 4.3046874e-01, 4.4453126e-01,
        4.5859373e-01, 4.7265625e-01, 4.867187e-01, 5.0078124e-01, 5.148437e-01, 5.289062e-01, 5.4296875e-01, 5.570313e-01,
        5.710938e-01, 5.8515626e-01, 5.992187e-01, 6.1328125e-01, 6.273438e-01, 6.414063e-01, 6.5546876e-01, 6.695312e-01,
        6.8359375e-01, 6.976563e-01, 7.117188e-01, 7.2578126e-01, 7.398437e-01, 7.5390625e-01, 7.679688e-01, 7.8203124e-01,
        7.9609376e-01, 8.101562e-01, 8.2421875e-01, 8.382813e-01, 8.5234374e-01, 8.6640626e-01, 8.804687e-01, 8.9453125e-01,
        9.085938e-01, 9.2265624e-01, 9.3671876e-01, 9.507812e-01, 9.6484375e-01, 9.789063e-01, 9.9296874e-01, 1e+00,
    ]

    /// Absmaxes per second-level scale in double quantization (bitsandbytes' `quantize_blockwise(blocksize=256)`).
    public static let absmaxBlockSize = 256
    /// The block sizes `quantize_4bit` accepts.
    public static let supportedBlockSizes = [32, 64, 128, 256, 512, 1024, 2048, 4096]

    public let rows: Int
    public let columns: Int
    /// Consecutive values (of W flattened row-major) that share one absmax.
    public let blockSize: Int
    public let doubleQuantization: Bool
    /// Two NF4 indices a byte, value 2i in the high nibble and 2i+1 in the low; an odd count ends with the
    /// index of 0 (7) in the last low nibble, as bitsandbytes pads.
    public let packedIndices: [UInt8]
    /// With double quantization: each block's absmax as an index into `absmaxCodebook`; empty otherwise.
    public let quantizedAbsmax: [UInt8]
    /// With double quantization: the largest |absmax - absmaxOffset| of each group of 256 blocks; empty otherwise.
    public let absmaxScales: [Float]
    /// With double quantization: the mean of all blocks' absmaxes; 0 otherwise.
    public let absmaxOffset: Float
    /// Without double quantization: each block's absmax in float32; empty otherwise.
    public let absmax: [Float]

    public var formatName: String { "nf4" }
    public var blockCount: Int { absmax.count + quantizedAbsmax.count }

    /// Packed indices, quantized absmaxes, their float32 scales and offset (or the float32 absmaxes). The two
    /// shared code tables (1 KB in all) are not counted: every NF4 weight uses the same ones.
    public var byteCount: Int {
        packedIndices.count + quantizedAbsmax.count + 4 * absmaxScales.count + (doubleQuantization ? 4 : 0)
            + 4 * absmax.count
    }

    /// Each block's absmax as the products use it (dequantized when double quantization is on).
    public var dequantizedAbsmax: [Float] {
        [Float](unsafeUninitializedCapacity: blockCount) { buffer, count in
            if let base = buffer.baseAddress { expandAbsmax(blocks: 0..<blockCount, into: base) }
            count = blockCount
        }
    }

    /// Quantizes a float32 [rows, columns] weight (row-major, PyTorch's [out, in]).
    public init(rows: Int, columns: Int, values: UnsafeBufferPointer<Float>, blockSize: Int = 64,
                doubleQuantization: Bool = true) throws {
        guard rows >= 0, columns >= 0 else { throw QuantizationError.negativeShape(rows: rows, columns: columns) }
        guard values.count == rows * columns else {
            throw QuantizationError.countMismatch(rows: rows, columns: columns, valueCount: values.count)
        }
        guard Self.supportedBlockSizes.contains(blockSize) else { throw QuantizationError.unsupportedBlockSize(blockSize) }
        if let index = values.firstIndex(where: { !$0.isFinite }) {
            throw QuantizationError.nonFiniteValue(row: index / columns, column: index % columns, value: values[index])
        }
        self.rows = rows
        self.columns = columns
        self.blockSize = blockSize
        self.doubleQuantization = doubleQuantization

        let (packed, blockAbsmax) = Self.quantizeNF4(values, blockSize: blockSize)
        packedIndices = packed
        if doubleQuantization {
            let (indices, scales, offset) = Self.quantizeAbsmax(blockAbsmax)
            quantizedAbsmax = indices
            absmaxScales = scales
            absmaxOffset = offset
            absmax = []
        } else {
            quantizedAbsmax = []
            absmaxScales = []
            absmaxOffset = 0
            absmax = blockAbsmax
        }
    }

    // MARK: - Quantization (bitsandbytes' default `quantize_4bit` op and CPU `quantize_blockwise` kernel)

    /// Midpoints between neighbouring NF4 codes, in float32 as bitsandbytes computes them.
    private static let codeMidpoints: [Float] = (0..<15).map { (codebook[$0] + codebook[$0 + 1]) / 2 }

    private static func quantizeNF4(_ values: UnsafeBufferPointer<Float>, blockSize: Int) -> ([UInt8], [Float]) {
        let count = values.count
        let blockCount = (count + blockSize - 1) / blockSize
        var packed = [UInt8](repeating: 0, count: (count + 1) / 2)
        var blockAbsmax = [Float](repeating: 0, count: blockCount)
        for block in 0..<blockCount {
            let first = block * blockSize
            let end = min(first + blockSize, count)
            var largest: Float = 0
            for index in first..<end { largest = max(largest, abs(values[index])) }
            blockAbsmax[block] = largest
            // bitsandbytes keeps an all-zero block's absmax 0 but divides by at least 1e-38; full blocks multiply
            // by the reciprocal, the short last block divides (two torch expressions, kept apart for exactness).
            let divisor = max(largest, Float(1e-38))
            let reciprocal = 1 / divisor
            let isShort = end - first < blockSize
            for index in first..<end {
                let scaled = isShort ? values[index] / divisor : values[index] * reciprocal
                let nibble = nearestCodeIndex(min(max(scaled, -1), 1))
                packed[index / 2] |= index % 2 == 0 ? nibble << 4 : nibble
            }
        }
        // torch.bucketize of the zero padding gives the index of code 0.
        if count % 2 == 1 { packed[count / 2] |= 7 }
        return (packed, blockAbsmax)
    }

    /// torch.bucketize(x, midpoints, right=False): the number of midpoints strictly below x, so a value exactly
    /// on a midpoint takes the lower code.
    private static func nearestCodeIndex(_ scaled: Float) -> UInt8 {
        var index: UInt8 = 0
        for midpoint in codeMidpoints where midpoint < scaled { index += 1 }
        return index
    }

    private static func quantizeAbsmax(_ blockAbsmax: [Float]) -> ([UInt8], [Float], Float) {
        guard !blockAbsmax.isEmpty else { return ([], [], 0) }
        // torch's float32 mean; summing in double and rounding once matched it on every fixture.
        let offset = Float(blockAbsmax.reduce(0.0) { $0 + Double($1) } / Double(blockAbsmax.count))
        let centered = blockAbsmax.map { $0 - offset }
        let groupCount = (centered.count + absmaxBlockSize - 1) / absmaxBlockSize
        var indices = [UInt8](repeating: 0, count: centered.count)
        var scales = [Float](repeating: 0, count: groupCount)
        let lookup = absmaxLookup
        for group in 0..<groupCount {
            let first = group * absmaxBlockSize
            let end = min(first + absmaxBlockSize, centered.count)
            var largest: Float = 0
            for index in first..<end { largest = max(largest, abs(centered[index])) }
            scales[group] = largest
            // A group whose absmaxes all equal the offset keeps index 0, as bitsandbytes writes it.
            guard largest > 0 else { continue }
            let reciprocal = 1 / largest
            for index in first..<end {
                let normalized = centered[index] * reciprocal
                indices[index] = lookup[lookupSlot(normalized.isNaN ? normalized : min(max(normalized, -1), 1))]
            }
        }
        return (indices, scales, offset)
    }

    /// bitsandbytes' CPU kernel does not search the 256 codes: it cuts [-1, 1] into 65 536 evenly spaced points
    /// and maps x to the code nearest its point, rounded as (x + 1) · 0.5 · 65535 + 0.5 then truncated. This is
    /// not always the code nearest x itself (up to half a slot, 1.5e-5, off), so it is reproduced slot for slot.
    @inline(__always)
    private static func lookupSlot(_ normalized: Float) -> Int {
        // NaN only from 0 · ∞ when a group's largest deviation is so small its reciprocal overflows.
        let half = normalized.isNaN ? 0.5 : (normalized + 1) * 0.5
        let position = half * 65535
        return Int(position + 0.5)
    }

    /// For each of the 65 536 slots, the index of the absmax code nearest the slot's point -1 + 2i / 65535
    /// (the lower code on a midpoint), as bitsandbytes builds it: 64 KB, built once on first use.
    private static let absmaxLookup: [UInt8] = {
        let code = absmaxCodebook
        let midpoints = (0..<(code.count - 1)).map { 0.5 * (code[$0] + code[$0 + 1]) }
        var lookup = [UInt8](repeating: 0, count: 65_536)
        var codeIndex = 0
        for slot in 0..<65_536 {
            let point = -1 + (2 * Float(slot)) / 65535
            while codeIndex < midpoints.count && midpoints[codeIndex] < point { codeIndex += 1 }
            lookup[slot] = UInt8(codeIndex)
        }
        return lookup
    }()

    // MARK: - Expansion

    /// Writes the absmaxes of `blocks` (dequantized when double quantization is on) to `destination`.
    private func expandAbsmax(blocks: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        if !doubleQuantization {
            absmax.withUnsafeBufferPointer { stored in
                for block in blocks { destination[block - blocks.lowerBound] = stored[block] }
            }
            return
        }
        let offset = absmaxOffset
        Self.absmaxCodebook.withUnsafeBufferPointer { code in
            quantizedAbsmax.withUnsafeBufferPointer { indices in
                absmaxScales.withUnsafeBufferPointer { scales in
                    for block in blocks {
                        // Two roundings, multiply then add, as bitsandbytes' dequantize_blockwise then `+= offset`.
                        let scaled = code[Int(indices[block])] * scales[block / Self.absmaxBlockSize]
                        destination[block - blocks.lowerBound] = scaled + offset
                    }
                }
            }
        }
    }

    public func decompressRows(_ range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        let start = range.lowerBound * columns
        let end = range.upperBound * columns
        guard end > start else { return }
        let blocks = (start / blockSize)..<((end - 1) / blockSize + 1)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: blocks.count) { scales in
            guard let scaleBase = scales.baseAddress else { return }
            expandAbsmax(blocks: blocks, into: scaleBase)
            packedIndices.withUnsafeBufferPointer { packed in
                guard let packedBase = packed.baseAddress else { return }
                for block in blocks {
                    let first = max(start, block * blockSize)
                    let last = min(end, block * blockSize + blockSize)
                    Self.expand(packedBase, values: first..<last, absmax: scaleBase[block - blocks.lowerBound],
                                into: destination + (first - start))
                }
            }
        }
    }

    /// Expands values `values` (indices into W flattened), all of one block, scaled by `absmax`.
    @inline(__always)
    private static func expand(_ packed: UnsafePointer<UInt8>, values: Range<Int>, absmax: Float,
                               into destination: UnsafeMutablePointer<Float>) {
        // The block's 16 possible values, each code · absmax rounded once as bitsandbytes does.
        var table = SIMD16<Float>(repeating: absmax)
        table *= nf4Codes
        var index = values.lowerBound
        var output = destination
        if index % 2 == 1, index < values.upperBound {
            output.pointee = table[Int(packed[index / 2] & 0x0F)]
            output += 1
            index += 1
        }
        // Whole bytes: 16 values (8 bytes) at a time, assembled in a vector and stored at once.
        var byte = packed + index / 2
        while index + 16 <= values.upperBound {
            var vector = SIMD16<Float>()
            for pair in 0..<8 {
                let bits = Int(byte[pair])
                vector[2 * pair] = table[bits >> 4]
                vector[2 * pair + 1] = table[bits & 0x0F]
            }
            UnsafeMutableRawPointer(output).storeBytes(of: vector, as: SIMD16<Float>.self)
            output += 16
            byte += 8
            index += 16
        }
        while index + 2 <= values.upperBound {
            let bits = Int(byte.pointee)
            output[0] = table[bits >> 4]
            output[1] = table[bits & 0x0F]
            output += 2
            byte += 1
            index += 2
        }
        if index < values.upperBound { output.pointee = table[Int(byte.pointee >> 4)] }
    }

    private static let nf4Codes = SIMD16<Float>(codebook)
}
