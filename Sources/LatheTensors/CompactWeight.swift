/// A frozen weight W [rows, columns] (PyTorch's [out, in]) held in a compact number format — bf16 at half the
/// memory of float32, NF4 at about an eighth — and multiplied without ever being expanded whole into float32.
///
/// A format supplies `decompressRows`; the default products then expand W a tile of rows at a time into a
/// scratch buffer that stays in cache and multiply through `MatMul.backend` at float32 speed. A format with its
/// own kernel (oneDNN's bf16 matmul on AMX) overrides the products.
public protocol CompactWeight: AnyObject, Sendable {
    var rows: Int { get }
    var columns: Int { get }
    /// Bytes this weight keeps resident: values and their scaling constants.
    var byteCount: Int { get }
    /// The format's short name, as `--dtype` and `--quantize` spell it: "bf16", "nf4".
    var formatName: String { get }
    /// Writes rows `range` of W as float32, row-major, into `destination` (range.count × columns floats).
    /// Threads call it at once for disjoint ranges (`decompressRowsInParallel`): it may only read the weight.
    func decompressRows(_ range: Range<Int>, into destination: UnsafeMutablePointer<Float>)
    /// output[m, rows] = input[m, columns] · Wᵀ (+ output when `accumulate`): a linear layer's forward product.
    func multiplyTransposed(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>,
                            accumulate: Bool)
    /// output[m, columns] = input[m, rows] · W (+ output when `accumulate`): the input gradient.
    func multiply(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>, accumulate: Bool)
}

/// How the default products tile a compact weight: a tile of ~256k floats (1 MB) stays in L2 (2 MB on this
/// project's Xeons) while the matrix product reads it; larger tiles keep the products' shapes efficient (64k-float
/// tiles made QLoRA steps ~3% slower). Layers run one at a time, so one scratch buffer serves every weight.
public enum CompactWeightTiles {
    static let scratch = ScratchBuffer()
    public static let floatsPerTile = 262_144

    /// Rows of a [rows, columns] weight expanded at once (at least 16).
    public static func rowsPerTile(columns: Int) -> Int { max(16, floatsPerTile / max(columns, 1)) }
}

extension CompactWeight {
    /// Bits per weight, constants included.
    public var bitsPerValue: Double { rows * columns == 0 ? 0 : Double(byteCount * 8) / Double(rows * columns) }

    /// W as float32, row-major.
    public func decompress(into destination: UnsafeMutablePointer<Float>) {
        decompressRows(0..<rows, into: destination)
    }

    public func multiplyTransposed(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>,
                                   accumulate: Bool) {
        tiledMultiplyTransposed(input, rows: m, into: output, accumulate: accumulate)
    }

    public func multiply(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>,
                         accumulate: Bool) {
        tiledMultiply(input, rows: m, into: output, accumulate: accumulate)
    }

    /// `decompressRows` with the rows shared among the compute threads: a format expands each row on its own,
    /// so the values are the same whichever thread writes them.
    public func decompressRowsInParallel(_ range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        // Per value a float written, its code read and looked up: five floats' worth, so that one tile (256k
        // values, ~85 µs of NF4 on one thread here, 1.35× faster on two) is split.
        Parallel.forEach(count: range.count, floatsPerItem: 5 * columns) { rows in
            decompressRows(range.lowerBound + rows.lowerBound..<range.lowerBound + rows.upperBound,
                           into: destination + rows.lowerBound * columns)
        }
    }

    /// `multiplyTransposed` by expanding W a tile of rows at a time (formats with their own kernel fall back to it);
    /// the tile's rows are expanded on the compute threads, then multiplied on them.
    public func tiledMultiplyTransposed(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>,
                                        accumulate: Bool) {
        let tileRows = CompactWeightTiles.rowsPerTile(columns: columns)
        let tile = CompactWeightTiles.scratch.pointer(atLeast: tileRows * columns)
        var first = 0
        while first < rows {
            let count = min(tileRows, rows - first)
            decompressRowsInParallel(first..<first + count, into: tile)
            // output[:, first ..< first+count] = input · tileᵀ, written in place inside the wider output rows.
            MatMul.backend.gemm(transposeA: false, transposeB: true, m: m, n: count, k: columns, alpha: 1,
                                a: input, lda: columns, b: tile, ldb: columns,
                                beta: accumulate ? 1 : 0, c: output + first, ldc: rows)
            first += count
        }
    }

    /// `multiply` by expanding W a tile of rows at a time.
    public func tiledMultiply(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>,
                              accumulate: Bool) {
        let tileRows = CompactWeightTiles.rowsPerTile(columns: columns)
        let tile = CompactWeightTiles.scratch.pointer(atLeast: tileRows * columns)
        if rows == 0 && !accumulate { output.update(repeating: 0, count: m * columns) }
        var first = 0
        while first < rows {
            let count = min(tileRows, rows - first)
            decompressRowsInParallel(first..<first + count, into: tile)
            // output += input[:, first ..< first+count] · tile: the reduction runs over W's rows, tile by tile.
            MatMul.backend.gemm(transposeA: false, transposeB: false, m: m, n: columns, k: count, alpha: 1,
                                a: input + first, lda: rows, b: tile, ldb: columns,
                                beta: accumulate || first > 0 ? 1 : 0, c: output, ldc: columns)
            first += count
        }
    }
}

/// Which product a bf16 weight runs; `BF16Weight.productPath` holds the choice.
public enum BF16ProductPath: Sendable, CaseIterable {
    /// oneDNN's bf16 matmul (AMX, AVX512-BF16, or emulated): the input rounded to bf16, float32 accumulation.
    case native
    /// The weight widened tile by tile into float32 products: only the weight is rounded.
    case widened
    /// The plain reference of `native`: the input rounded to bf16, then the widened product.
    case roundedInputReference
}

/// A frozen weight in bf16. Where bf16 products beat float32 (`BF16Products.current`) they run in oneDNN's bf16
/// matmul; elsewhere the weight is widened tile by tile to float32, which keeps the memory saving at float32 speed.
/// Decoding's few-row products read the bf16 rows directly on every path.
public final class BF16Weight: CompactWeight, @unchecked Sendable {
    public let matrix: BF16Matrix
    public var rows: Int { matrix.rows }
    public var columns: Int { matrix.columns }
    public var byteCount: Int { matrix.rows * matrix.columns * 2 }
    public var formatName: String { "bf16" }

    /// The product every bf16 weight runs: native where it is faster than float32. Tests set the other paths to
    /// hold each against its reference on any CPU.
    nonisolated(unsafe) public static var productPath: BF16ProductPath =
        BF16Products.current.beatFloat32 ? .native : .widened

    /// True when the products run in oneDNN's bf16 matmul (which rounds each input into a scratch buffer).
    public static var usesNativeProducts: Bool {
        #if canImport(CLatheDNNL)
        productPath == .native && nativeMatmul != nil
        #else
        false
        #endif
    }

    /// Rounds a float32 [rows, columns] weight to bf16, ties to even.
    public init(rows: Int, columns: Int, values: UnsafeBufferPointer<Float>) throws {
        matrix = try BF16Matrix(rows: rows, columns: columns, values: values)
    }

    public func decompressRows(_ range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        let source = matrix.bits + range.lowerBound * columns
        // A bf16 is the top half of a float32; this loop vectorises (measured faster than explicit SIMD widening).
        let wide = UnsafeMutableRawPointer(destination).assumingMemoryBound(to: UInt32.self)
        for index in 0..<range.count * columns { wide[index] = UInt32(source[index]) << 16 }
    }

    /// Inputs of at most this many rows (decoding) take `multiplyFewRows`: there the product is bound by reading
    /// the weight, and reading 2 bytes per weight instead of float32's 4 is the gain.
    static let fewRows = 4

    /// Each input row with its values reordered per 32 columns as 16 even then 16 odd ones: a 32-bit load of
    /// the bf16 row then holds an even weight in its low half and an odd one in its high half, and both widen
    /// to float32 with one shift or mask, without shuffles. Shared: layers run one at a time.
    private static let pairedInput = ScratchBuffer()

    /// output[m, rows] (+)= input · Wᵀ by dot products straight from the bf16 rows, each weight row read once for
    /// all `m` inputs.
    func multiplyFewRows(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>,
                         accumulate: Bool) {
        let pairedColumns = columns / 32 * 32
        let paired = Self.pairedInput.pointer(atLeast: m * pairedColumns)
        for inputRow in 0..<m {
            let x = input + inputRow * columns, reordered = paired + inputRow * pairedColumns
            for chunk in stride(from: 0, to: pairedColumns, by: 32) {
                for lane in 0..<16 {
                    reordered[chunk + lane] = x[chunk + 2 * lane]
                    reordered[chunk + 16 + lane] = x[chunk + 2 * lane + 1]
                }
            }
        }
        let highHalf = SIMD16<UInt32>(repeating: 0xFFFF_0000)
        // Weight rows shared among the threads: each output is one row's dot products, whoever computes it.
        Parallel.forEach(count: rows, floatsPerItem: columns * m) { weightRows in
            for row in weightRows {
                let weightRow = matrix.bits + row * columns
                for inputRow in 0..<m {
                    let x = input + inputRow * columns, reordered = paired + inputRow * pairedColumns
                    var even = SIMD16<Float>(repeating: 0), odd = SIMD16<Float>(repeating: 0)
                    for chunk in stride(from: 0, to: pairedColumns, by: 32) {
                        let pairs = UnsafeRawPointer(weightRow + chunk).loadUnaligned(as: SIMD16<UInt32>.self)
                        even += unsafeBitCast(pairs &<< 16, to: SIMD16<Float>.self) * load16(reordered + chunk)
                        odd += unsafeBitCast(pairs & highHalf, to: SIMD16<Float>.self) * load16(reordered + chunk + 16)
                    }
                    var sum = (even + odd).sum()
                    for k in pairedColumns..<columns { sum += x[k] * BF16.float(fromBits: weightRow[k]) }
                    let destination = output + inputRow * rows + row
                    destination.pointee = accumulate ? destination.pointee + sum : sum
                }
            }
        }
    }

    public func multiplyTransposed(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>,
                                   accumulate: Bool) {
        if m <= Self.fewRows { return multiplyFewRows(input, rows: m, into: output, accumulate: accumulate) }
        product(input, rows: m, into: output, accumulate: accumulate, transposedWeight: true)
    }

    public func multiply(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>,
                         accumulate: Bool) {
        product(input, rows: m, into: output, accumulate: accumulate, transposedWeight: false)
    }

    /// The forward product (input · Wᵀ) or the input gradient (input · W) on `productPath`.
    private func product(_ input: UnsafePointer<Float>, rows m: Int, into output: UnsafeMutablePointer<Float>,
                         accumulate: Bool, transposedWeight: Bool) {
        let widened = transposedWeight ? tiledMultiplyTransposed : tiledMultiply
        switch Self.productPath {
        case .native:
            #if canImport(CLatheDNNL)
            // A shape oneDNN refuses falls back to the widened product rather than failing a training step.
            if let native = Self.nativeMatmul, (try? transposedWeight
                ? native.multiplyByTransposedWeight(input, rows: m, weight: matrix, into: output, accumulate: accumulate)
                : native.multiplyByWeight(input, rows: m, weight: matrix, into: output, accumulate: accumulate)) != nil {
                return
            }
            #endif
            widened(input, m, output, accumulate)
        case .widened:
            widened(input, m, output, accumulate)
        case .roundedInputReference:
            widened(Self.roundedInput(input, count: m * (transposedWeight ? columns : rows)), m, output, accumulate)
        }
    }

    /// The reference path's input, rounded to bf16 and widened back to float32, as oneDNN's product sees it.
    private static let roundedInputs = ScratchBuffer()
    private static func roundedInput(_ input: UnsafePointer<Float>, count: Int) -> UnsafePointer<Float> {
        let rounded = roundedInputs.pointer(atLeast: count)
        for index in 0..<count { rounded[index] = BF16.float(fromBits: BF16.bits(from: input[index])) }
        return UnsafePointer(rounded)
    }

    #if canImport(CLatheDNNL)
    /// One oneDNN matmul (engine, stream, primitive cache) for every bf16 weight, made on first use: layers run
    /// one at a time.
    nonisolated(unsafe) private static let nativeMatmul: OneDNNBF16Matmul? = try? OneDNNBF16Matmul()
    #endif
}
