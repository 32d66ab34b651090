import CLatheBlockDots
import LatheTensors

/// What the few-row products of block weights multiply the blocks with: the float32 activations as they are (the
/// default: log-probabilities equal transformers' on the same file), or, as llama.cpp does, the activations rounded
/// to int8 per 32 values with one scale each, whose byte dot products (AVX512-VNNI) are cheaper.
public enum ActivationFormat: String, Sendable, CaseIterable {
    case float32 = "f32"
    case int8

    /// Whether int8 activations run on this CPU (AVX512-VNNI with BW and VL, which the build targets).
    public static var int8Available: Bool { lathe_block_dots_available() != 0 }
}

/// A frozen weight [rows, columns] kept in a GGUF tensor's own quantized blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
/// Q4_K, Q5_K, Q6_K), so that a 4-bit model stays ~4.5 bits per weight in memory and in what each token reads.
///
/// Row r is `columns / valuesPerBlock` consecutive blocks, as ggml lays out a [columns, rows] tensor. Decoding's
/// few-row products decode each block in registers and multiply it with the float32 input where it is; longer
/// inputs (prefill, scoring) take the protocol's tiled products, which expand a tile of rows into a scratch buffer
/// and multiply it through `MatMul.backend`. Both read the values `GGMLType.dequantize` gives, through the same
/// decoders.
public final class GGMLBlockWeight: CompactWeight, @unchecked Sendable {
    // @unchecked Sendable: the blocks are written once in init and only read after.
    public let type: GGMLType
    public let rows: Int
    public let columns: Int
    /// Bytes of one row of blocks.
    public let rowBytes: Int
    private let blocks: UnsafeMutableRawPointer
    private let kernels: GGMLBlockKernels
    /// The activations the few-row products take; int8 only where `ActivationFormat.int8Available`.
    public var activations = ActivationFormat.float32

    public var byteCount: Int { rows * rowBytes }
    public var formatName: String { type.description }

    /// The types a block weight holds.
    public static let supportedTypes: [GGMLType] = [.q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    /// Whether a GGUF tensor is kept in its blocks when loaded as stored: a matrix of a supported type.
    public static func holds(_ tensor: GGUFTensorInfo) -> Bool {
        tensor.dimensions.count == 2 && supportedTypes.contains(tensor.type)
    }

    /// Copies the blocks of a [rows, columns] weight (`rows · columns / blockSize` blocks of `type`, row after row).
    /// With `rowOrder`, row r of the weight is row `rowOrder[r]` of `bytes` (a permutation of 0..<rows): a whole
    /// row of blocks moves, so reordering rows (llama.cpp's permuted Q/K projections) needs no decoding.
    public init(type: GGMLType, rows: Int, columns: Int, bytes: UnsafeRawBufferPointer, rowOrder: [Int]? = nil) throws {
        let what = "(\(type) weight [\(rows), \(columns)])"
        guard let kernels = type.blockKernels else {
            throw FormatError(path: what, problem: "\(type) blocks cannot be multiplied in place",
                              fix: "supported: \(Self.supportedTypes.map(\.description).joined(separator: ", ")); load with --dtype f32")
        }
        guard rows >= 0, columns >= 0, columns % type.blockSize == 0 else {
            throw FormatError(path: what, problem: "\(columns) columns are not a whole number of \(type.blockSize)-value blocks")
        }
        let rowBytes = columns / type.blockSize * type.typeSize
        guard bytes.count == rows * rowBytes else {
            throw FormatError(path: what, problem: "\(bytes.count) bytes given; the blocks take \(rows * rowBytes)")
        }
        if let rowOrder, rowOrder.count != rows || Set(rowOrder) != Set(0..<rows) {
            throw FormatError(path: what, problem: "the row order is not a permutation of the \(rows) rows")
        }
        self.type = type
        self.rows = rows
        self.columns = columns
        self.rowBytes = rowBytes
        self.kernels = kernels
        blocks = .allocate(byteCount: max(rows * rowBytes, 1), alignment: 64)
        guard let source = bytes.baseAddress else { return }
        for row in 0..<rows {
            (blocks + row * rowBytes).copyMemory(from: source + (rowOrder?[row] ?? row) * rowBytes, byteCount: rowBytes)
        }
    }

    deinit { blocks.deallocate() }

    public func decompressRows(_ range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        guard !range.isEmpty else { return }
        kernels.decode(blocks + range.lowerBound * rowBytes, range.count * columns / type.blockSize, destination,
                       HalfPrecision.halfTable)
    }

    /// Inputs of at most this many rows (decoding, a few sequences at once) take `multiplyFewRows`: there the product
    /// is bound by reading the weight, and reading ~4.5 bits per weight instead of float32's 32 is the gain.
    public static let fewRows = 8
    /// `multiplyFewRows`' input sums; layers run one at a time.
    private static let chunkSums = ScratchBuffer()

    /// output[m, rows] (+)= input · Wᵀ by dot products straight from the blocks, each block decoded in registers
    /// once per four input rows; weight rows are shared among the threads.
    public func multiplyFewRows(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>,
                                accumulate: Bool) {
        if activations == .int8, multiplyInt8Activations(input, rows: m, into: output, accumulate: accumulate) { return }
        let kernels = kernels, blocks = UnsafeRawPointer(blocks), rowBytes = rowBytes, columns = columns, rows = rows
        // Each input row's sums per 32 values, which an offset (Q4_1's minimum) multiplies: once for all weight rows.
        let chunks = columns / 32, chunkSums = Self.chunkSums.pointer(atLeast: max(1, m * chunks))
        if kernels.hasOffset {
            for j in 0..<m * chunks { chunkSums[j] = loadFloats(input + 32 * j).sum() + loadFloats(input + 32 * j + 16).sum() }
        }
        let halves = HalfPrecision.halfTable
        // Decoding a value costs about as much as two multiply-adds.
        Parallel.forEach(count: rows, floatsPerItem: columns * (m + 2)) { weightRows in
            for first in stride(from: 0, to: m, by: 4) {
                kernels.dot(blocks, rowBytes, weightRows, columns, input + first * columns, min(4, m - first),
                            chunkSums + first * chunks, output + first * rows, rows, accumulate, halves)
            }
        }
    }

    /// The int8-activation scratch: per input row `columns` bytes, then per 32 values a scale and two half sums.
    private static let int8Activations = ScratchBuffer()

    /// `multiplyFewRows` with the input rows rounded to int8 (`ActivationFormat.int8`); false, having written nothing,
    /// where the C kernels cannot multiply this weight (no VNNI, or an odd number of 32-value chunks per row).
    private func multiplyInt8Activations(_ input: UnsafePointer<Float>, rows m: Int,
                                         into output: UnsafeMutablePointer<Float>, accumulate: Bool) -> Bool {
        let chunks = columns / 32
        guard ActivationFormat.int8Available, chunks % 2 == 0 else { return false }
        let scratch = Self.int8Activations.pointer(atLeast: m * (columns / 4 + 3 * chunks))
        let scales = scratch, halfSums = scales + m * chunks
        let quantized = UnsafeMutableRawPointer(halfSums + 2 * m * chunks).assumingMemoryBound(to: Int8.self)
        for i in 0..<m {
            lathe_quantize_activations(input + i * columns, Int64(columns), quantized + i * columns, scales + i * chunks,
                                       halfSums + 2 * i * chunks)
        }
        let type = Int32(type.rawValue), blocks = UnsafeRawPointer(blocks), rowBytes = Int64(rowBytes)
        let columns = columns, rows = rows
        // A VNNI byte product does four multiply-adds; decoding adds about one per value.
        Parallel.forEach(count: rows, floatsPerItem: columns * (m + 4) / 4) { weightRows in
            for first in stride(from: 0, to: m, by: 4) {
                let done = lathe_block_dot(type, blocks, rowBytes, Int64(weightRows.lowerBound), Int64(weightRows.upperBound),
                                           Int64(columns), quantized + first * columns, scales + first * chunks,
                                           halfSums + 2 * first * chunks, Int64(min(4, m - first)),
                                           output + first * rows, Int64(rows), accumulate ? 1 : 0)
                precondition(done != 0, "the int8 kernels multiply every type a block weight holds")
            }
        }
        return true
    }

    public func multiplyTransposed(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>,
                                   accumulate: Bool) {
        if m <= Self.fewRows { return multiplyFewRows(input, rows: m, into: output, accumulate: accumulate) }
        tiledMultiplyTransposed(input, rows: m, into: output, accumulate: accumulate)
    }
}
