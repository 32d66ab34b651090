import ArgumentParser
import Foundation
import LatheModels
import LatheTensors
import LatheTraining

/// `lathe bench kernels`: each threaded kernel at SmolLM2-135M's shapes on one thread and on several, to see what
/// a second core gives each of them on this machine (the step-level figure is `bench sft`'s).
public struct BenchKernelsCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "kernels", abstract: "Microseconds of each kernel on one thread and on several (one JSON line each).")
    @Option(name: .customLong("batch-size")) public var batchSize = 4
    @Option(name: .customLong("seq-len")) public var seqLen = 128
    @Option(help: "Threads to compare with one (default: every core).") public var threads = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Timed runs of each kernel on each count, alternating; the fastest is reported.") public var repeats = 20
    public init() {}

    struct Result: Encodable {
        let kernel: String, shape: String, one_thread_us: Double, threads: Int, threaded_us: Double, speedup: Double
    }

    public func validate() throws {
        guard batchSize > 0, seqLen > 0, threads > 0, repeats > 0 else {
            throw ValidationError("--batch-size, --seq-len, --threads and --repeats must be positive")
        }
    }

    public func run() throws {
        let rows = batchSize * seqLen, hidden = 576, inner = 1536, heads = 9, kvHeads = 3, headDim = 64, vocabulary = 49152
        let lossRows = min(256, rows)
        var random = SeededGenerator(seed: 3)
        func values(_ count: Int, scale: Float = 1) -> Tensor {
            Tensor(shape: [count], values: (0..<count).map { _ in (random.nextUnitFloat() * 2 - 1) * scale })
        }
        MatMul.setThreadCount(threads)  // the attention workspace has a slice per thread
        let x = values(rows * hidden), normWeight = values(hidden), normed = values(rows * hidden), dNormed = values(rows * hidden)
        let dNormWeight = values(hidden), dx = values(rows * hidden)
        let gate = values(rows * inner, scale: 4), up = values(rows * inner), activated = values(rows * inner)
        let dGate = values(rows * inner), dUp = values(rows * inner)
        let queries = values(rows * heads * headDim), keys = values(rows * kvHeads * headDim), kvValues = values(rows * kvHeads * headDim)
        let attention = values(rows * heads * headDim), dQueries = values(rows * heads * headDim)
        let dKeys = values(rows * kvHeads * headDim), dValues = values(rows * kvHeads * headDim)
        let scoreCount = GroupedQueryAttention.scoreCount(queryCount: seqLen, firstQuerySlot: 0)
        let scores = values(scoreCount), dScores = values(scoreCount)
        let rope = RotaryEmbedding(headDim: headDim, base: 100_000)
        let (cosines, sines) = rope.table(positions: (0..<rows).map { $0 % seqLen })
        let logits = values(lossRows * vocabulary, scale: 8), dLogits = values(lossRows * vocabulary)
        let targets = (0..<lossRows).map { $0 * 7919 % vocabulary }
        let weightValues = values(inner * hidden, scale: 0.05)
        let nf4 = try NF4Weight(rows: inner, columns: hidden, values: UnsafeBufferPointer(weightValues.buffer))
        let bf16 = try BF16Weight(rows: inner, columns: hidden, values: UnsafeBufferPointer(weightValues.buffer))
        let tileRows = CompactWeightTiles.rowsPerTile(columns: hidden)
        let tile = values(tileRows * hidden), decodeOutput = values(inner)
        let adamW = try AdamW(), adamW8bit = try AdamW8bit()
        let parameter = Parameter(name: "w", shape: [inner, hidden], trainable: true)
        parameter.tensor.pointer.update(from: weightValues.pointer, count: inner * hidden)
        parameter.gradient?.pointer.update(from: values(inner * hidden, scale: 1e-3).pointer, count: inner * hidden)
        let product = values(rows * inner)

        let kernels: [(String, String, () throws -> Void)] = [
            ("rmsnorm", "\(rows)×\(hidden)", {
                RMSNorm.forward(out: normed.pointer, input: x.pointer, weight: normWeight.pointer, rows: rows, dim: hidden, eps: 1e-5)
            }),
            ("rmsnorm backward with dw", "\(rows)×\(hidden)", {
                RMSNorm.backward(dInput: dx.pointer, dWeight: dNormWeight.pointer, dOut: dNormed.pointer, input: x.pointer,
                                 weight: normWeight.pointer, rows: rows, dim: hidden, eps: 1e-5)
            }),
            ("swiglu", "\(rows)×\(inner)", {
                SwiGLU.forward(out: activated.pointer, gate: gate.pointer, up: up.pointer, count: rows * inner)
            }),
            ("swiglu backward", "\(rows)×\(inner)", {
                SwiGLU.backward(dGate: dGate.pointer, dUp: dUp.pointer, dOut: activated.pointer, gate: gate.pointer,
                                up: up.pointer, count: rows * inner)
            }),
            ("residual add", "\(rows)×\(hidden)", { addInPlace(dx.pointer, x.pointer, count: rows * hidden) }),
            ("rope (queries)", "\(rows)×\(heads)×\(headDim)", {
                rope.apply(queries.pointer, rows: rows, heads: heads, cos: cosines, sin: sines)
            }),
            ("attention", "\(batchSize)×\(seqLen), \(heads)/\(kvHeads) heads", {
                GroupedQueryAttention.forward(out: attention.pointer, queries: queries.pointer, keys: keys.pointer,
                                              values: kvValues.pointer, queryCount: seqLen, firstQuerySlot: 0, heads: heads,
                                              kvHeads: kvHeads, headDim: headDim, scores: scores.pointer, sequences: batchSize)
            }),
            ("attention backward", "\(batchSize)×\(seqLen), \(heads)/\(kvHeads) heads", {
                GroupedQueryAttention.backward(dQueries: dQueries.pointer, dKeys: dKeys.pointer, dValues: dValues.pointer,
                                               dOut: attention.pointer, queries: queries.pointer, keys: keys.pointer,
                                               values: kvValues.pointer, queryCount: seqLen, heads: heads, kvHeads: kvHeads,
                                               headDim: headDim, scores: scores.pointer, dScores: dScores.pointer,
                                               sequences: batchSize)
            }),
            ("cross-entropy", "\(lossRows)×\(vocabulary)", {
                _ = CrossEntropy.lossAndGradient(logits: logits.pointer, targets: targets, vocabularySize: vocabulary,
                                                 dLogits: dLogits.pointer, scale: 1e-3)
            }),
            ("nf4 tile expansion", "\(tileRows)×\(hidden)", { nf4.decompressRowsInParallel(0..<tileRows, into: tile.pointer) }),
            ("bf16 decoding product", "1×\(hidden) · \(inner)×\(hidden)ᵀ", {
                bf16.multiplyTransposed(x.pointer, rows: 1, into: decodeOutput.pointer, accumulate: false)
            }),
            ("adamw", "\(inner)×\(hidden)", { try adamW.step([parameter], learningRate: 1e-9) }),
            ("adamw8bit", "\(inner)×\(hidden)", { try adamW8bit.step([parameter], learningRate: 1e-9) }),
            ("matmul", "\(rows)×\(hidden)·\(inner)×\(hidden)ᵀ", {
                MatMul.multiply(x.pointer, weightValues.pointer, into: product.pointer, m: rows, n: inner, k: hidden, transposeB: true)
            }),
        ]
        func microseconds(_ body: () throws -> Void) rethrows -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e3
        }
        for (name, shape, body) in kernels {
            var one = Double.infinity, many = Double.infinity
            for run in 0...repeats {  // run 0 warms up
                MatMul.setThreadCount(1)
                let single = try microseconds(body)
                MatMul.setThreadCount(threads)
                let threaded = try microseconds(body)
                if run > 0 { one = min(one, single); many = min(many, threaded) }
            }
            printLine(try jsonLine(Result(kernel: name, shape: shape, one_thread_us: one, threads: threads, threaded_us: many,
                                          speedup: one / many)))
        }
    }
}
