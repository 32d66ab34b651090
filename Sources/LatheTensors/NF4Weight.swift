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
/// bitsandbytes' signed dynamic map through its 65 536-slot lookup table (`BlockwiseQuantization` with
/// `DynamicQuantizationMap.signed`), so a block's absmax is
/// signed.codes[quantizedAbsmax[b]] · absmaxScales[b / 256] + absmaxOffset, in float32, multiply then add.
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

    /// Absmaxes per second-level scale in double quantization (bitsandbytes' `quantize_blockwise(blocksize=256)`).
    public static let absmaxBlockSize = BlockwiseQuantization.blockSize
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
    /// With double quantization: each block's absmax as an index into `DynamicQuantizationMap.signed.codes`;
    /// empty otherwise.
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
        // A group whose absmaxes all equal the offset gets scale 0 and indices 0, as bitsandbytes writes it.
        centered.withUnsafeBufferPointer { centered in
            indices.withUnsafeMutableBufferPointer { indices in
                guard let values = centered.baseAddress, let codes = indices.baseAddress else { return }
                for group in 0..<groupCount {
                    let first = group * absmaxBlockSize
                    scales[group] = BlockwiseQuantization.quantizeBlock(
                        values + first, count: min(absmaxBlockSize, centered.count - first),
                        map: .signed, codes: codes + first)
                }
            }
        }
        return (indices, scales, offset)
    }

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
        DynamicQuantizationMap.signed.codes.withUnsafeBufferPointer { code in
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
            UnsafeMutableRawPointer(output).storeBytes(of: decode16(byte, table), as: SIMD16<Float>.self)
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

    /// The 16 values of 8 packed bytes (high nibble first), looked up in a block's `table` of code · absmax.
    @inline(__always)
    private static func decode16(_ byte: UnsafePointer<UInt8>, _ table: SIMD16<Float>) -> SIMD16<Float> {
        var vector = SIMD16<Float>()
        for pair in 0..<8 {
            let bits = Int(byte[pair])
            vector[2 * pair] = table[bits >> 4]
            vector[2 * pair + 1] = table[bits & 0x0F]
        }
        return vector
    }

    // MARK: - Decoding's products

    /// Inputs of at most this many rows (decoding) take `multiplyFewRows`: the product is bound by reading the
    /// weight, and reading ~4.1 bits per weight instead of expanding a float32 tile of it is the gain.
    static let fewRows = 8

    public func multiplyTransposed(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>,
                                   accumulate: Bool) {
        if m <= Self.fewRows { return multiplyFewRows(input, rows: m, into: output, accumulate: accumulate) }
        tiledMultiplyTransposed(input, rows: m, into: output, accumulate: accumulate)
    }

    /// output[m, rows] (+)= input · Wᵀ by dot products straight from the packed codes, decoded in registers 16 at
    /// a time and multiplied with up to four input rows at once, each block's sums scaled by its absmax. Weight rows
    /// are shared among the threads.
    func multiplyFewRows(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>,
                         accumulate: Bool) {
        let columns = columns, rows = rows, blockSize = blockSize
        packedIndices.withUnsafeBufferPointer { packed in
            guard let packed = packed.baseAddress else { return }
            // Looking a code up costs about as much as two multiply-adds.
            Parallel.forEach(count: rows, floatsPerItem: columns * (m + 2)) { weightRows in
                guard !weightRows.isEmpty else { return }
                let firstBlock = weightRows.lowerBound * columns / blockSize
                let blocks = firstBlock..<((weightRows.upperBound * columns - 1) / blockSize + 1)
                withUnsafeTemporaryAllocation(of: Float.self, capacity: blocks.count) { absmax in
                    guard let absmax = absmax.baseAddress else { return }
                    expandAbsmax(blocks: blocks, into: absmax)
                    for row in weightRows {
                        for first in stride(from: 0, to: m, by: 4) {
                            Self.dot(packed, row: row, columns: columns, blockSize: blockSize,
                                     absmax: absmax - firstBlock, input: input + first * columns, count: min(4, m - first),
                                     into: output + first * rows + row, outputStride: rows, accumulate: accumulate)
                        }
                    }
                }
            }
        }
    }

    /// The sum of the lanes, inlined (the standard library's `sum()` stayed an out-of-line call here, 5% of the time).
    @inline(__always)
    private static func laneSum(_ vector: SIMD16<Float>) -> Float {
        var sum: Float = 0
        for lane in 0..<16 { sum += vector[lane] }
        return sum
    }

    /// The two NF4 codes of every byte (high nibble first), so that one 8-byte load decodes a byte: the few-row
    /// product sums code · input over a block and scales the sum by the block's absmax once.
    nonisolated(unsafe) private static let codePairs: UnsafePointer<SIMD2<Float>> = {
        let pairs = UnsafeMutablePointer<SIMD2<Float>>.allocate(capacity: 256)
        for byte in 0..<256 { pairs[byte] = SIMD2(codebook[byte >> 4], codebook[byte & 0x0F]) }
        return UnsafePointer(pairs)
    }()

    /// output[i · outputStride] (+)= Σ_k input[i · columns + k] · W[row, k] for up to four input rows; `absmax[b]` is
    /// block b's absmax.
    @inline(__always)
    private static func dot(_ packed: UnsafePointer<UInt8>, row: Int, columns: Int, blockSize: Int,
                            absmax: UnsafePointer<Float>, input: UnsafePointer<Float>, count: Int,
                            into output: UnsafeMutablePointer<Float>, outputStride: Int, accumulate: Bool) {
        let x0 = input, x1 = input + columns, x2 = input + 2 * columns, x3 = input + 3 * columns
        let pairs = codePairs
        var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
        var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
        let start = row * columns, end = start + columns
        var index = start
        while index < end {
            let block = index / blockSize
            let blockEnd = min(end, (block + 1) * blockSize)
            // The same table (code · absmax, rounded once) as `expand`.
            var table = SIMD16<Float>(repeating: absmax[block])
            table *= nf4Codes
            func scalar(_ k: Int, _ value: Float) {
                let column = k - start
                s0 += value * x0[column]
                if count > 1 { s1 += value * x1[column] }
                if count > 2 { s2 += value * x2[column] }
                if count > 3 { s3 += value * x3[column] }
            }
            if index % 2 == 1 {
                scalar(index, table[Int(packed[index / 2] & 0x0F)])
                index += 1
            }
            // Whole vectors: Σ code · x over the block, scaled by its absmax once (one table load per byte).
            var b0 = SIMD16<Float>(), b1 = SIMD16<Float>(), b2 = SIMD16<Float>(), b3 = SIMD16<Float>()
            while index + 16 <= blockEnd {
                let bytes = packed + index / 2, column = index - start
                var w = SIMD16<Float>()
                for pair in 0..<8 {
                    let codes = pairs[Int(bytes[pair])]
                    w[2 * pair] = codes.x
                    w[2 * pair + 1] = codes.y
                }
                b0 = b0.addingProduct(w, load16(x0 + column))
                if count > 1 { b1 = b1.addingProduct(w, load16(x1 + column)) }
                if count > 2 { b2 = b2.addingProduct(w, load16(x2 + column)) }
                if count > 3 { b3 = b3.addingProduct(w, load16(x3 + column)) }
                index += 16
            }
            let scale = SIMD16<Float>(repeating: absmax[block])
            a0 = a0.addingProduct(b0, scale)
            if count > 1 { a1 = a1.addingProduct(b1, scale) }
            if count > 2 { a2 = a2.addingProduct(b2, scale) }
            if count > 3 { a3 = a3.addingProduct(b3, scale) }
            while index < blockEnd {
                let bits = packed[index / 2]
                scalar(index, table[Int(index % 2 == 0 ? bits >> 4 : bits & 0x0F)])
                index += 1
            }
        }
        let sums = SIMD4<Float>(laneSum(a0) + s0, laneSum(a1) + s1, laneSum(a2) + s2, laneSum(a3) + s3)
        for i in 0..<count {
            let destination = output + i * outputStride
            destination.pointee = accumulate ? destination.pointee + sums[i] : sums[i]
        }
    }
}
