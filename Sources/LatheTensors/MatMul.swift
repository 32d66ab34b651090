/// The one seam every matrix product goes through, so that a backend (OpenBLAS or Accelerate today,
/// oneDNN bf16 and a GPU later) can be chosen without touching the layers.
///
/// The contract is BLAS's row-major sgemm: C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C,
/// where op(X) is X or Xᵀ and lda/ldb/ldc are row strides.
public protocol MatMulBackend: Sendable {
    var name: String { get }
    func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
              alpha: Float, a: UnsafePointer<Float>, lda: Int,
              b: UnsafePointer<Float>, ldb: Int,
              beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int)
}

/// The backend the layers use; set once at start-up (tests may swap in the reference backend).
public enum MatMul {
    /// One compute thread until told otherwise (the command line's default, `--threads auto`, measures which is
    /// faster: `ThreadSetting`).
    nonisolated(unsafe) public static var backend: any MatMulBackend = {
        // Only when nothing has set a count yet: the libraries would otherwise start with one thread per core.
        // (Setting 1 unconditionally here undid `--threads N`, set before the first product touched `backend`.)
        if !threadCountWasSet { setThreadCount(1) }
        return defaultBackend
    }()

    nonisolated(unsafe) private static var threadCountWasSet = false

    /// oneDNN where it is available (Linux), the platform BLAS otherwise (Accelerate on macOS).
    public static var defaultBackend: any MatMulBackend {
        #if canImport(CLatheDNNL)
        OneDNNBackend()
        #else
        CBLASBackend()
        #endif
    }

    /// Sets the compute threads of everything: every backend library's products and the kernels' own loops
    /// (`Parallel`).
    public static func setThreadCount(_ count: Int) {
        threadCountWasSet = true
        Parallel.setThreadCount(count)
        CBLASBackend.setThreadCount(count)
        #if canImport(CLatheDNNL)
        OneDNNBackend.setThreadCount(count)
        #endif
    }

    /// C = op(A)·op(B) (+ C when `accumulate`), all row-major and contiguous.
    @inlinable
    public static func multiply(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into c: UnsafeMutablePointer<Float>,
                                m: Int, n: Int, k: Int, transposeA: Bool = false, transposeB: Bool = false,
                                accumulate: Bool = false, alpha: Float = 1) {
        backend.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                     a: a, lda: transposeA ? m : k, b: b, ldb: transposeB ? k : n,
                     beta: accumulate ? 1 : 0, c: c, ldc: n)
    }
}

/// Plain triple loops in double precision: slow, obviously right, and the yardstick for the fast backends.
public struct ReferenceMatMulBackend: MatMulBackend {
    public init() {}
    public var name: String { "reference" }
    public func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                     alpha: Float, a: UnsafePointer<Float>, lda: Int,
                     b: UnsafePointer<Float>, ldb: Int,
                     beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for p in 0..<k {
                    let x = transposeA ? a[p * lda + i] : a[i * lda + p]
                    let y = transposeB ? b[j * ldb + p] : b[p * ldb + j]
                    sum += Double(x) * Double(y)
                }
                let previous = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
                c[i * ldc + j] = Float(Double(alpha) * sum + previous)
            }
        }
    }
}
