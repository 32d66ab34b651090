/// Conversions between float32 and bfloat16 (the top 16 bits of a float32: same exponent range, 8 bits of
/// significand), the format the AMX and AVX512-BF16 units multiply.
public enum BF16 {
    /// The bf16 bits nearest to `value`, ties to even; NaN stays NaN (quieted), infinities stay infinite.
    @inlinable @inline(__always)
    public static func bits(from value: Float) -> UInt16 {
        let bits = value.bitPattern
        // Plain rounding could carry a NaN whose payload sits only in the low half into infinity.
        if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        let roundingBias: UInt32 = 0x7FFF + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
    }

    /// The float32 equal to the bf16 `bits` (exact: every bf16 value is a float32).
    @inlinable @inline(__always)
    public static func float(fromBits bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Rounds `count` floats to bf16 bits.
    @inlinable
    public static func convert(_ source: UnsafePointer<Float>, to destination: UnsafeMutablePointer<UInt16>, count: Int) {
        for index in 0..<count { destination[index] = bits(from: source[index]) }
    }
}

/// A row-major [rows, columns] matrix stored as bf16 bits, 64-byte aligned (a cache line, AVX-512's and
/// AMX's natural alignment): a frozen weight at half the memory of float32, for `OneDNNBF16Matmul`.
///
/// Immutable once made, hence safe to share between threads.
public final class BF16Matrix: @unchecked Sendable {
    public let rows: Int
    public let columns: Int
    /// rows × columns bf16 values, row after row.
    public let bits: UnsafePointer<UInt16>

    /// Errors of building a matrix from values a caller supplies.
    public enum ShapeError: Error, CustomStringConvertible, Equatable {
        case negativeShape(rows: Int, columns: Int)
        case countMismatch(rows: Int, columns: Int, valueCount: Int)

        public var description: String {
            switch self {
            case let .negativeShape(rows, columns):
                return "BF16Matrix shape [\(rows), \(columns)] has a negative dimension"
            case let .countMismatch(rows, columns, valueCount):
                return "BF16Matrix [\(rows), \(columns)] needs \(rows * columns) values, got \(valueCount)"
            }
        }
    }

    /// Rounds rows × columns float32 values (row-major) to bf16, ties to even.
    public init(rows: Int, columns: Int, values: UnsafeBufferPointer<Float>) throws {
        bits = UnsafePointer(try Self.roundedStorage(rows: rows, columns: columns, values: values))
        self.rows = rows
        self.columns = columns
    }

    /// Rounds rows × columns float32 values (row-major) to bf16, ties to even.
    public init(rows: Int, columns: Int, values: [Float]) throws {
        bits = UnsafePointer(try values.withUnsafeBufferPointer {
            try Self.roundedStorage(rows: rows, columns: columns, values: $0)
        })
        self.rows = rows
        self.columns = columns
    }

    private static func roundedStorage(rows: Int, columns: Int,
                                       values: UnsafeBufferPointer<Float>) throws -> UnsafeMutablePointer<UInt16> {
        guard rows >= 0, columns >= 0 else { throw ShapeError.negativeShape(rows: rows, columns: columns) }
        guard values.count == rows * columns else {
            throw ShapeError.countMismatch(rows: rows, columns: columns, valueCount: values.count)
        }
        let storage = UnsafeMutableRawPointer.allocate(byteCount: max(1, values.count) * 2, alignment: 64)
            .bindMemory(to: UInt16.self, capacity: max(1, values.count))
        if let source = values.baseAddress { BF16.convert(source, to: storage, count: values.count) }
        return storage
    }

    deinit { UnsafeMutableRawPointer(mutating: bits).deallocate() }

    /// The values as float32, row-major (exact: bf16 widens to float32 without rounding).
    public func floats() -> [Float] {
        (0..<(rows * columns)).map { BF16.float(fromBits: bits[$0]) }
    }
}
