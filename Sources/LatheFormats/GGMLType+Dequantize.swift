// Dequantization as ggml and gguf-py's quants.py do it, operation for operation in Float, so results match
// bit for bit; the block types decode through the same decoders as `GGMLBlockWeight`'s products.

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
        switch self {
        case .f32: UnsafeMutableRawPointer(output).copyMemory(from: input, byteCount: needed)
        case .f16: Self.dequantizeF16(input, output, destination.count)
        case .bf16: Self.dequantizeBF16(input, output, destination.count)
        default:
            // canDequantize above leaves only the block types, each with its decoder (GGMLBlockDecoders.swift).
            guard let kernels = blockKernels else { return }
            kernels.decode(input, destination.count / blockSize, output, HalfPrecision.halfTable)
        }
    }

    private static func dequantizeF16(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>, _ count: Int) {
        for i in 0..<count { output[i] = half(HalfPrecision.halfTable, input, 2 * i) }
    }

    private static func dequantizeBF16(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>, _ count: Int) {
        for i in 0..<count {
            output[i] = HalfPrecision.float(fromBFloat16Bits: input.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        }
    }
}
