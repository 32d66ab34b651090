import LatheTensors

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

    public func multiplyTransposed(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>,
                                   accumulate: Bool) {
        if m <= Self.fewRows { return multiplyFewRows(input, rows: m, into: output, accumulate: accumulate) }
        tiledMultiplyTransposed(input, rows: m, into: output, accumulate: accumulate)
    }
}
