#if canImport(CLatheDNNL)
import CLatheDNNL

/// sgemm from oneDNN, which picks its kernels (AVX-512, AMX) from the CPU's feature flags at run time.
///
/// The default on Linux: Debian's OpenBLAS 0.3.21 does not recognise recent Xeons and falls back to its
/// generic SSE3 kernels, 4× slower here (the README gives the measurement).
public struct OneDNNBackend: MatMulBackend {
    public init() {}
    public var name: String { "onednn" }

    public func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                     alpha: Float, a: UnsafePointer<Float>, lda: Int,
                     b: UnsafePointer<Float>, ldb: Int,
                     beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let status = dnnl_sgemm(transposeA ? CChar(UInt8(ascii: "T")) : CChar(UInt8(ascii: "N")),
                                transposeB ? CChar(UInt8(ascii: "T")) : CChar(UInt8(ascii: "N")),
                                Int64(m), Int64(n), Int64(k), alpha, a, Int64(lda), b, Int64(ldb), beta, c, Int64(ldc))
        // Only invalid arguments fail, and the layers pass shapes they have checked: a failure is a bug here.
        precondition(status == dnnl_success, "dnnl_sgemm failed with status \(status) for m=\(m) n=\(n) k=\(k)")
    }

    /// Sets OpenMP's thread count, which oneDNN uses.
    public static func setThreadCount(_ count: Int) { omp_set_num_threads(Int32(max(1, count))) }
}
#endif
