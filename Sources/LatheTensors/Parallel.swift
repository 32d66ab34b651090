import Dispatch
import Foundation
#if canImport(CLatheDNNL)
import CLatheDNNL
#endif

/// The kernels' parallel for-loop: splits a loop over independent items (rows, heads, blocks of elements) among
/// the compute threads that `MatMul.setThreadCount` sets, so that one setting drives the products and everything
/// else.
///
/// Only the split is parallel, never a sum: each item is computed by the same code whichever thread takes it, so
/// a kernel's results do not depend on the thread count. A loop smaller than `minimumWork` runs on the calling
/// thread as one range, exactly as a plain loop would.
///
/// On Linux the loop runs on GNU OpenMP's threads, the ones oneDNN's products already use: a pool of its own
/// (Dispatch) would compete for the same two cores with OpenMP threads that spin for milliseconds after each
/// product (measured: ~5 ms of CPU after each threaded sgemm unless `OMP_WAIT_POLICY=PASSIVE`). A product called
/// inside a loop (attention's) then runs on its worker's thread alone, as oneDNN does inside a parallel region.
/// Elsewhere it runs on `DispatchQueue.concurrentPerform`.
public enum Parallel {
    /// The most threads a loop uses, the count of `MatMul.setThreadCount`; sizes per-worker scratch.
    public static var threadCount: Int { configuredThreadCount }
    nonisolated(unsafe) private static var configuredThreadCount = 1

    /// Work below which a loop stays on one thread, counted in floats read, written or multiply-added (kernels
    /// heavier per float, with an exp or a table lookup, count more): about 50 µs of a memory-bound kernel. Waking
    /// a sleeping OpenMP thread (the `lathe` command runs with OMP_WAIT_POLICY=PASSIVE) and joining it costs
    /// ~10–20 µs; `lathe bench kernels` measured RMSNorm, RoPE and the residual add over 512 × 576 (25–40 µs)
    /// 10–25% slower on two threads, SwiGLU over 512 × 1536 (350 µs) 1.7× faster.
    public static let minimumWork = 1 << 20

    /// Pieces a loop is cut into per thread, claimed in turn by whichever thread is free: uneven items (causal
    /// attention's later blocks) and a thread that starts late (a busy core) then cost less than with one
    /// fixed range per thread.
    static let piecesPerThread = 4

    /// Whether loops run on OpenMP's threads (Linux) or on Dispatch's; tests switch it to check both.
    nonisolated(unsafe) static var usesOpenMP = OpenMPRegion.isAvailable

    /// Loops split among threads so far (only a top-level caller splits one): tests check that their sizes did.
    nonisolated(unsafe) static var splitLoops = 0

    /// Set by `MatMul.setThreadCount`.
    static func setThreadCount(_ count: Int) { configuredThreadCount = max(1, count) }

    /// True on a thread that is running a loop's items (where a nested loop runs on that thread alone).
    public static var isInsideLoop: Bool {
        if usesOpenMP, OpenMPRegion.isInside { return true }
        return DispatchLoopDepth.isInside
    }

    /// Calls `body` on consecutive ranges that together cover `0..<count` once; each range but the last starts
    /// and ends on a multiple of `alignment` items (e.g. 16 for a SIMD16 kernel whose scalar tail must stay the
    /// tail). With more than one thread and at least `minimumWork` floats (`count · floatsPerItem`) the ranges run
    /// concurrently, so `body` must write only its own items' outputs.
    public static func forEach(count: Int, floatsPerItem: Int, alignment: Int = 1, _ body: (Range<Int>) -> Void) {
        forEachWorker(count: count, floatsPerItem: floatsPerItem, alignment: alignment) { _, range in body(range) }
    }

    /// `forEach`, also passing the index of the thread (0..<`threadCount`) that runs the range: no two ranges with
    /// the same index run at once, so a kernel can give each index its own slice of scratch.
    public static func forEachWorker(count: Int, floatsPerItem: Int, alignment: Int = 1,
                                     _ body: (_ worker: Int, _ items: Range<Int>) -> Void) {
        guard count > 0 else { return }
        let alignment = max(1, alignment)
        let alignedUnits = (count + alignment - 1) / alignment
        let threads = min(threadCount, alignedUnits)
        guard threads > 1, count.multipliedReportingOverflow(by: max(floatsPerItem, 1)).partialValue >= minimumWork,
              !isInsideLoop else {
            body(0, 0..<count)
            return
        }
        splitLoops += 1
        let pieces = min(alignedUnits, threads * piecesPerThread)
        let unitsPerPiece = (alignedUnits + pieces - 1) / pieces
        let pieceCount = (alignedUnits + unitsPerPiece - 1) / unitsPerPiece
        withoutActuallyEscaping(body) { body in
            let loop = ClaimedLoop(pieceCount: pieceCount) { worker, piece in
                let start = piece * unitsPerPiece * alignment
                body(worker, start..<min(count, start + unitsPerPiece * alignment))
            }
            if usesOpenMP {
                OpenMPRegion.run(threads: threads, loop)
            } else {
                DispatchQueue.concurrentPerform(iterations: threads) { worker in
                    DispatchLoopDepth.enter()
                    loop.run(worker: worker)
                    DispatchLoopDepth.leave()
                }
            }
        }
    }
}

/// One loop's pieces and the counter its threads claim them from.
final class ClaimedLoop: @unchecked Sendable {
    private let pieceCount: Int
    private let body: (_ worker: Int, _ piece: Int) -> Void
    private let lock = NSLock()
    private var nextPiece = 0

    init(pieceCount: Int, body: @escaping (_ worker: Int, _ piece: Int) -> Void) {
        self.pieceCount = pieceCount
        self.body = body
    }

    /// Runs pieces on the calling thread until none is left.
    func run(worker: Int) {
        while true {
            // A lock per piece (~25 ns) against pieces of tens of microseconds: not worth an atomic.
            lock.lock()
            let piece = nextPiece
            nextPiece += 1
            lock.unlock()
            guard piece < pieceCount else { return }
            body(worker, piece)
        }
    }
}

/// Whether the current thread runs a Dispatch loop's pieces (a thread-local depth).
enum DispatchLoopDepth {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    static var isInside: Bool { pthread_getspecific(key) != nil }
    static func enter() {
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
        // A product inside the loop runs on this thread alone, as oneDNN does inside an OpenMP region.
        OpenMPRegion.limitThisThreadToOne()
    }
    static func leave() { pthread_setspecific(key, nil) }
}

/// A parallel region of GNU OpenMP, entered as `#pragma omp parallel num_threads(n)` compiles to.
enum OpenMPRegion {
    static var isAvailable: Bool {
        #if canImport(CLatheDNNL)
        true
        #else
        false
        #endif
    }

    static var isInside: Bool {
        #if canImport(CLatheDNNL)
        omp_in_parallel() != 0
        #else
        false
        #endif
    }

    /// Makes oneDNN products called from this (non-OpenMP) thread run on it alone.
    static func limitThisThreadToOne() {
        #if canImport(CLatheDNNL)
        omp_set_num_threads(1)
        #endif
    }

    /// Runs `loop` on `threads` OpenMP threads, the calling one among them, and returns when all are done.
    static func run(threads: Int, _ loop: ClaimedLoop) {
        #if canImport(CLatheDNNL)
        let context = Unmanaged.passUnretained(loop).toOpaque()
        GOMP_parallel({ context in
            guard let context else { return }
            Unmanaged<ClaimedLoop>.fromOpaque(context).takeUnretainedValue().run(worker: Int(omp_get_thread_num()))
        }, context, UInt32(threads), 0)
        withExtendedLifetime(loop) {}
        #else
        loop.run(worker: 0)
        #endif
    }
}
