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
        Self.useThreads(for: m * n * k)
        let status = dnnl_sgemm(transposeA ? CChar(UInt8(ascii: "T")) : CChar(UInt8(ascii: "N")),
                                transposeB ? CChar(UInt8(ascii: "T")) : CChar(UInt8(ascii: "N")),
                                Int64(m), Int64(n), Int64(k), alpha, a, Int64(lda), b, Int64(ldb), beta, c, Int64(ldc))
        // Only invalid arguments fail, and the layers pass shapes they have checked: a failure is a bug here.
        precondition(status == dnnl_success, "dnnl_sgemm failed with status \(status) for m=\(m) n=\(n) k=\(k)")
    }

    /// The threads a large product may use; smaller ones run on one.
    nonisolated(unsafe) private static var threadCount = 1
    nonisolated(unsafe) private static var activeThreadCount = 1
    /// Multiply-adds below which a product runs on one thread: waking a second one costs more than it saves on
    /// LoRA's rank-r products and on decoding's single rows (../shared/MACHINE-NOTES.md: ≥ ~256k floats of work).
    static let smallestThreadedProduct = 1 << 22

    /// Sets OpenMP's thread count, which oneDNN uses, for products large enough to share.
    public static func setThreadCount(_ count: Int) {
        threadCount = max(1, count)
        activeThreadCount = threadCount
        omp_set_num_threads(Int32(threadCount))
    }

    /// Sets OpenMP's count for a product of `multiplyAdds`; every oneDNN product calls it first (the bf16 matmul
    /// too: a count left at one by a small product would otherwise hold for the large ones after it).
    static func useThreads(for multiplyAdds: Int) {
        // Inside a kernel's parallel loop a product runs on its worker's thread alone (oneDNN does so inside an
        // OpenMP region; `Parallel` limits Dispatch workers to one), and the counts here are the caller's thread's.
        if Parallel.isInsideLoop { return }
        let wanted = multiplyAdds >= smallestThreadedProduct ? threadCount : 1
        if wanted != activeThreadCount {
            activeThreadCount = wanted
            omp_set_num_threads(Int32(wanted))
        }
    }
}
#endif
