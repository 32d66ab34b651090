#if canImport(Accelerate)
import Accelerate
#else
import CLatheBLAS
#endif

/// sgemm from the platform's BLAS: OpenBLAS on Linux, Accelerate on macOS (both export the CBLAS interface).
public struct CBLASBackend: MatMulBackend {
    public init() {}

    public var name: String {
        #if canImport(Accelerate)
        "accelerate"
        #else
        "openblas"
        #endif
    }

    public func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                     alpha: Float, a: UnsafePointer<Float>, lda: Int,
                     b: UnsafePointer<Float>, ldb: Int,
                     beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Sets how many threads BLAS may use (OpenBLAS only; Accelerate chooses for itself).
    public static func setThreadCount(_ count: Int) {
        #if !canImport(Accelerate)
        openblas_set_num_threads(Int32(max(1, count)))
        #endif
    }
}
