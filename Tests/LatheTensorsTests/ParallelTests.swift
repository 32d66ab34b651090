import XCTest
@testable import LatheTensors

/// Runs `compute` on one thread, then with the kernels' loops on 2 and 3 threads, on OpenMP's threads and on
/// Dispatch's; returns each result with its label, the one-thread result first, and fails when a threaded run split
/// no loop (sizes below `Parallel.minimumWork` would test nothing). Only `Parallel` gets the threads: the products
/// keep the backend's one thread, so what is compared is the kernels' own split.
func acrossThreadCounts<T>(splitting: Bool = true, file: StaticString = #filePath, line: UInt = #line,
                           _ compute: () -> T) -> [(label: String, value: T)] {
    let previousCount = Parallel.threadCount, previousRunner = Parallel.usesOpenMP
    defer {
        Parallel.setThreadCount(previousCount)
        Parallel.usesOpenMP = previousRunner
    }
    Parallel.setThreadCount(1)
    var results = [(label: "1 thread", value: compute())]
    for usesOpenMP in [true, false] where usesOpenMP == false || OpenMPRegion.isAvailable {
        Parallel.usesOpenMP = usesOpenMP
        for threads in [2, 3] {
            Parallel.setThreadCount(threads)
            let splitBefore = Parallel.splitLoops
            let label = "\(threads) threads on \(usesOpenMP ? "OpenMP" : "Dispatch")"
            results.append((label, compute()))
            if splitting { XCTAssertGreaterThan(Parallel.splitLoops, splitBefore, "\(label): no loop was split", file: file, line: line) }
        }
    }
    return results
}

/// A kernel's outputs: arrays of floats and summed losses.
struct KernelOutputs {
    var arrays: [[Float]]
    var sums: [Double] = []
}

/// Asserts that every threaded result has the bits of the one-thread result, naming the first element that differs.
func assertSameBitsOnEveryThreadCount(_ results: [(label: String, value: KernelOutputs)], _ what: String,
                                      file: StaticString = #filePath, line: UInt = #line) {
    guard let single = results.first?.value else { return }
    for (label, value) in results.dropFirst() {
        XCTAssertEqual(value.arrays.count, single.arrays.count, "\(what): \(label)", file: file, line: line)
        for (index, (threaded, plain)) in zip(value.arrays, single.arrays).enumerated() {
            XCTAssertEqual(threaded.count, plain.count, "\(what), output \(index), \(label)", file: file, line: line)
            let different = zip(threaded, plain).enumerated().first { $0.element.0.bitPattern != $0.element.1.bitPattern }
            XCTAssertNil(different, "\(what), output \(index), \(label): element \(different?.offset ?? -1) is "
                         + "\(different?.element.0 ?? 0) against \(different?.element.1 ?? 0) on one thread", file: file, line: line)
        }
        XCTAssertEqual(value.sums.map(\.bitPattern), single.sums.map(\.bitPattern),
                       "\(what), sums \(value.sums) against \(single.sums) on one thread, \(label)", file: file, line: line)
    }
}

final class ParallelTests: XCTestCase {
    func testRangesCoverEveryItemOnceOnAlignedBoundaries() {
        let count = 100_003
        for (label, (ranges, largestWorker)) in acrossThreadCounts({ () -> ([Range<Int>], Int) in
            let lock = NSLock()
            var ranges: [Range<Int>] = [], largestWorker = 0
            Parallel.forEachWorker(count: count, floatsPerItem: 16, alignment: 16) { worker, range in
                lock.lock(); ranges.append(range); largestWorker = max(largestWorker, worker); lock.unlock()
            }
            return (ranges.sorted { $0.lowerBound < $1.lowerBound }, largestWorker)
        }) {
            XCTAssertLessThan(largestWorker, Int(label.prefix(1)) ?? 0, "\(label): worker indices below the thread count")
            XCTAssertEqual(ranges.first?.lowerBound, 0, label)
            XCTAssertEqual(ranges.last?.upperBound, count, label)
            for (a, b) in zip(ranges, ranges.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound, label) }
            for range in ranges.dropLast() { XCTAssertEqual(range.upperBound % 16, 0, label) }
            if label != "1 thread" { XCTAssertGreaterThan(ranges.count, 1, "\(label): the loop is split") }
        }
    }

    func testSmallLoopsAndNestedLoopsRunAsOneRangeOnTheirThread() {
        for (label, calls) in acrossThreadCounts(splitting: false, { () -> [Range<Int>] in
            var small: [Range<Int>] = []
            Parallel.forEach(count: 1000, floatsPerItem: 2) { small.append($0) }  // 2000 floats: below minimumWork
            return small
        }) {
            XCTAssertEqual(calls, [0..<1000], label)
        }
        for (label, (nestedWereSingle, insideSeen)) in acrossThreadCounts({ () -> (Bool, Bool) in
            let lock = NSLock()
            var single = true, inside = false
            Parallel.forEach(count: 8, floatsPerItem: Parallel.minimumWork) { _ in
                var inner = 0
                Parallel.forEach(count: 64, floatsPerItem: Parallel.minimumWork) { _ in inner += 1 }
                lock.lock(); if inner != 1 { single = false }; inside = inside || Parallel.isInsideLoop; lock.unlock()
            }
            return (single, inside)
        }) {
            XCTAssertTrue(nestedWereSingle, "\(label): a loop inside a loop runs as one range")
            XCTAssertEqual(insideSeen, label != "1 thread", label)
        }
        XCTAssertFalse(Parallel.isInsideLoop)
    }

    func testAutoPicksEveryCoreOnlyWhenItWinsByTheMargin() {
        XCTAssertEqual(AutoThreads.choose(oneThread: 10, allCores: 5, cores: 2), 2)
        XCTAssertEqual(AutoThreads.choose(oneThread: 10, allCores: 10.5, cores: 2), 2, "5% slower is within the noise")
        XCTAssertEqual(AutoThreads.choose(oneThread: 10, allCores: 10.6, cores: 2), 1, "6% slower")
        XCTAssertEqual(AutoThreads.choose(oneThread: 10, allCores: 12, cores: 4), 1, "slower with more threads")
        XCTAssertEqual(AutoThreads.choose(oneThread: 10, allCores: 5, cores: 1), 1)
        XCTAssertEqual(AutoThreads.choose(oneThread: .nan, allCores: 5, cores: 2), 1)
        XCTAssertEqual(AutoThreads.choose(oneThread: 10, allCores: 0, cores: 2), 1)
    }

    func testMeasurementTimesBothCountsAndRestoresTheThreadCount() {
        let previous = Parallel.threadCount
        let measured = AutoThreads.measure(cores: 2)
        XCTAssertEqual(Parallel.threadCount, previous)
        XCTAssertGreaterThan(measured.oneThread, 0)
        XCTAssertGreaterThan(measured.allCores, 0)
        XCTAssertEqual(measured.chosen, AutoThreads.choose(oneThread: measured.oneThread, allCores: measured.allCores, cores: 2))
        XCTAssertEqual(AutoThreads.measure(cores: 1).chosen, 1)
    }

    func testThreadSettingReadsAutoAndCountsAndRejectsTheRest() throws {
        XCTAssertEqual(ThreadSetting("auto"), .auto)
        XCTAssertEqual(ThreadSetting("3"), .count(3))
        for bad in ["0", "-1", "two", "", "1.5"] { XCTAssertNil(ThreadSetting(bad), bad) }
        XCTAssertEqual(ThreadSetting.count(4).resolvedCount, 4)
        struct Holder: Codable { var threads: ThreadSetting }
        for (json, setting) in [("{\"threads\":\"auto\"}", ThreadSetting.auto), ("{\"threads\":2}", .count(2))] {
            let decoded = try JSONDecoder().decode(Holder.self, from: Data(json.utf8))
            XCTAssertEqual(decoded.threads, setting)
            XCTAssertEqual(String(decoding: try JSONEncoder().encode(decoded), as: UTF8.self), json)
        }
        for bad in ["{\"threads\":0}", "{\"threads\":\"many\"}"] {
            XCTAssertThrowsError(try JSONDecoder().decode(Holder.self, from: Data(bad.utf8)), bad)
        }
    }
}

/// Every threaded kernel gives the bits of its one-thread run: the loops split independent rows, heads, blocks or
/// elements, never a sum.
final class ThreadedKernelTests: XCTestCase {
    func testRowKernelsGiveTheSameBitsOnEveryThreadCount() {
        let rows = 901, dim = 600  // 600: a scalar tail after the 16-wide steps; above `minimumWork` per pass
        let x = randomValues(rows * dim, seed: 1), w = randomValues(dim, seed: 2), dy = randomValues(rows * dim, seed: 3)
        let start = randomValues(rows * dim, seed: 4), startWeight = randomValues(dim, seed: 5)
        assertSameBitsOnEveryThreadCount(acrossThreadCounts { () -> KernelOutputs in
            var out = [Float](repeating: 0, count: rows * dim)
            RMSNorm.forward(out: &out, input: x, weight: w, rows: rows, dim: dim, eps: 1e-5)
            var dx = start, dWeight = startWeight, dxOnly = start
            RMSNorm.backward(dInput: &dx, dWeight: &dWeight, dOut: dy, input: x, weight: w, rows: rows, dim: dim, eps: 1e-5)
            RMSNorm.backward(dInput: &dxOnly, dWeight: nil, dOut: dy, input: x, weight: w, rows: rows, dim: dim, eps: 1e-5)
            var sum = start
            addInPlace(&sum, x, count: rows * dim)
            return KernelOutputs(arrays: [out, dx, dWeight, dxOnly, sum])
        }, "RMSNorm forward, backward with and without dw, addInPlace")

        let count = 200_011  // not a multiple of 16
        let gate = randomValues(count, seed: 6).map { $0 * 12 }, up = randomValues(count, seed: 7), dOut = randomValues(count, seed: 8)
        assertSameBitsOnEveryThreadCount(acrossThreadCounts { () -> KernelOutputs in
            var out = [Float](repeating: 0, count: count), dGate = out, dUp = out
            SwiGLU.forward(out: &out, gate: gate, up: up, count: count)
            SwiGLU.backward(dGate: &dGate, dUp: &dUp, dOut: dOut, gate: gate, up: up, count: count)
            return KernelOutputs(arrays: [out, dGate, dUp])
        }, "SwiGLU forward and backward")

        let rope = RotaryEmbedding(headDim: 64, base: 10000)
        let tokens = 1000, heads = 9
        let (cosines, sines) = rope.table(positions: (0..<tokens).map { $0 * 3 % 500 })
        let q = randomValues(tokens * heads * 64, seed: 9)
        assertSameBitsOnEveryThreadCount(acrossThreadCounts { () -> KernelOutputs in
            var rotated = q, back = q, oneByOne = q
            rope.apply(&rotated, rows: tokens, heads: heads, cos: cosines, sin: sines)
            rope.applyInverse(&back, rows: tokens, heads: heads, cos: cosines, sin: sines)
            oneByOne.withUnsafeMutableBufferPointer { x in
                cosines.withUnsafeBufferPointer { c in
                    sines.withUnsafeBufferPointer { s in
                        for r in 0..<tokens {
                            rope.apply(x.baseAddress! + r * heads * 64, heads: heads, cos: c.baseAddress! + r * 32, sin: s.baseAddress! + r * 32)
                        }
                    }
                }
            }
            XCTAssertEqual(rotated.map(\.bitPattern), oneByOne.map(\.bitPattern), "rows at once rotate as one row at a time")
            return KernelOutputs(arrays: [rotated, back])
        }, "RoPE over many tokens")

        let n = 4099, lossRows = 90
        let logits = randomValues(lossRows * n, seed: 10).map { $0 * 9 }
        let targets = (0..<lossRows).map { $0 % 6 == 2 ? -1 : $0 * 97 % n }
        let losses = acrossThreadCounts { () -> KernelOutputs in
            var dLogits = [Float](repeating: 1, count: lossRows * n)
            let (loss, counted) = CrossEntropy.lossAndGradient(logits: logits, targets: targets, vocabularySize: n,
                                                               dLogits: &dLogits, scale: 0.1)
            XCTAssertEqual(counted, targets.filter { $0 >= 0 }.count)
            return KernelOutputs(arrays: [dLogits], sums: [loss])
        }
        assertSameBitsOnEveryThreadCount(losses, "cross-entropy gradient and summed loss")
    }

    func testAttentionGivesTheSameBitsOnEveryThreadCountAndBatchesAsSeparateCalls() {
        let heads = 4, kvHeads = 2, d = 16, sequences = 3
        // Forward with a cache in front, padding and a capacity larger than the keys used.
        let first = 9, queries = 100, capacity = first + queries + 5
        let q = randomValues(sequences * queries * heads * d, seed: 11)
        let k = randomValues(sequences * capacity * kvHeads * d, seed: 12), v = randomValues(sequences * capacity * kvHeads * d, seed: 13)
        let valid = (0..<(sequences * capacity)).map { $0 % 11 != 4 }
        func forward(batched: Bool) -> [Float] {
            var out = [Float](repeating: 0, count: sequences * queries * heads * d)
            var scores = [Float](repeating: 0, count: GroupedQueryAttention.scoreCount(queryCount: queries, firstQuerySlot: first))
            valid.withUnsafeBufferPointer { validity in
                if batched {
                    GroupedQueryAttention.forward(out: &out, queries: q, keys: k, values: v, queryCount: queries, firstQuerySlot: first,
                                                  mask: .init(keyIsValid: validity.baseAddress), heads: heads, kvHeads: kvHeads,
                                                  headDim: d, scores: &scores, sequences: sequences, keyRowsPerSequence: capacity)
                    return
                }
                for s in 0..<sequences {
                    out.withUnsafeMutableBufferPointer { out in
                        GroupedQueryAttention.forward(
                            out: out.baseAddress! + s * queries * heads * d, queries: Array(q[(s * queries * heads * d)...]),
                            keys: Array(k[(s * capacity * kvHeads * d)...]), values: Array(v[(s * capacity * kvHeads * d)...]),
                            queryCount: queries, firstQuerySlot: first, mask: .init(keyIsValid: validity.baseAddress! + s * capacity),
                            heads: heads, kvHeads: kvHeads, headDim: d, scores: &scores)
                    }
                }
            }
            return out
        }
        let forwards = acrossThreadCounts { KernelOutputs(arrays: [forward(batched: true), forward(batched: false)]) }
        XCTAssertEqual(forwards[0].value.arrays[0].map(\.bitPattern), forwards[0].value.arrays[1].map(\.bitPattern),
                       "a batch gives the bits of one call per sequence")
        assertSameBitsOnEveryThreadCount(forwards, "attention forward")

        // Backward over packed sequences (segments) with padding.
        let length = 90
        let bq = randomValues(sequences * length * heads * d, seed: 14)
        let bk = randomValues(sequences * length * kvHeads * d, seed: 15), bv = randomValues(sequences * length * kvHeads * d, seed: 16)
        let dOut = randomValues(sequences * length * heads * d, seed: 17)
        let segments = (0..<(sequences * length)).map { Int32($0 % length / 40) }
        let keyIsValid = (0..<(sequences * length)).map { $0 % length < 85 }
        let startKV = randomValues(sequences * length * kvHeads * d, seed: 18)
        assertSameBitsOnEveryThreadCount(acrossThreadCounts { () -> KernelOutputs in
            var dQ = [Float](repeating: 0, count: sequences * length * heads * d), dK = startKV, dV = startKV
            let count = GroupedQueryAttention.scoreCount(queryCount: length, firstQuerySlot: 0)
            var scores = [Float](repeating: 0, count: count), dScores = scores
            segments.withUnsafeBufferPointer { segments in
                keyIsValid.withUnsafeBufferPointer { keyIsValid in
                    GroupedQueryAttention.backward(dQueries: &dQ, dKeys: &dK, dValues: &dV, dOut: dOut, queries: bq, keys: bk,
                                                   values: bv, queryCount: length,
                                                   mask: .init(keyIsValid: keyIsValid.baseAddress, segments: segments.baseAddress),
                                                   heads: heads, kvHeads: kvHeads, headDim: d, scores: &scores, dScores: &dScores,
                                                   sequences: sequences)
                }
            }
            return KernelOutputs(arrays: [dQ, dK, dV])
        }, "attention backward")
    }

    func testCompactWeightProductsAndChunkedLossGiveTheSameBitsOnEveryThreadCount() throws {
        // The kernels' own loops are what is swept; the libraries' products stay on one thread (an earlier test may
        // have left oneDNN with two, whose split of a long product is its own: seen once to differ by 1 ulp).
        MatMul.setThreadCount(1)
        let rows = 700, columns = 520  // a tile of 504 rows and a partial one; NF4 blocks run across rows
        let values = randomValues(rows * columns, seed: 21)
        let weights: [any CompactWeight] = try values.withUnsafeBufferPointer {
            [try NF4Weight(rows: rows, columns: columns, values: $0), try BF16Weight(rows: rows, columns: columns, values: $0)]
        }
        let m = 6
        let forwardInput = randomValues(m * columns, seed: 22), backwardInput = randomValues(m * rows, seed: 23)
        for weight in weights {
            assertSameBitsOnEveryThreadCount(acrossThreadCounts { () -> KernelOutputs in
                var expanded = [Float](repeating: 0, count: rows * columns), parallelExpanded = expanded
                weight.decompress(into: &expanded)
                weight.decompressRowsInParallel(0..<rows, into: &parallelExpanded)
                XCTAssertEqual(parallelExpanded.map(\.bitPattern), expanded.map(\.bitPattern), "\(weight.formatName) rows in parallel")
                var forward = [Float](repeating: 0, count: m * rows), backward = [Float](repeating: 0, count: m * columns)
                weight.tiledMultiplyTransposed(forwardInput, rows: m, into: &forward, accumulate: false)
                weight.tiledMultiply(backwardInput, rows: m, into: &backward, accumulate: false)
                return KernelOutputs(arrays: [expanded, forward, backward])
            }, "\(weight.formatName) expansion and tiled products")
        }
        // Decoding's few-row product over bf16 rows.
        let bf16 = try XCTUnwrap(weights[1] as? BF16Weight)
        assertSameBitsOnEveryThreadCount(acrossThreadCounts { () -> KernelOutputs in
            var output = randomValues(4 * rows, seed: 24)
            bf16.multiplyFewRows(forwardInput, rows: 4, into: &output, accumulate: true)
            return KernelOutputs(arrays: [output])
        }, "bf16 few-row product")

        // The fused head and loss over a dense and a compact head.
        let dim = 64, vocabulary = 5003, lossRows = 150
        let hidden = randomValues(lossRows * dim, seed: 25), head = randomValues(vocabulary * dim, seed: 26)
        let targets = (0..<lossRows).map { $0 % 7 == 3 ? -1 : $0 * 31 % vocabulary }
        let compactHead = try head.withUnsafeBufferPointer { try BF16Weight(rows: vocabulary, columns: dim, values: $0) }
        let workspace = ChunkedLMHeadLoss.Workspace()
        assertSameBitsOnEveryThreadCount(acrossThreadCounts { () -> KernelOutputs in
            var results = KernelOutputs(arrays: [])
            for compact in [false, true] {
                var dHidden = [Float](repeating: 0, count: lossRows * dim), dWeight = [Float](repeating: 0, count: vocabulary * dim)
                let (loss, _) = head.withUnsafeBufferPointer { headValues in
                    ChunkedLMHeadLoss.lossAndGradient(hidden: hidden,
                                                      weight: compact ? ChunkedLMHeadLoss.Weight.compact(compactHead) : .dense(headValues.baseAddress!),
                                                      rows: lossRows, dim: dim, vocabularySize: vocabulary, targets: targets,
                                                      scale: 0.01, dHidden: &dHidden, dWeight: &dWeight, chunkRows: 80,
                                                      workspace: workspace)
                }
                results.arrays += [dHidden, dWeight]
                results.sums.append(loss)
            }
            return results
        }, "chunked LM head loss")
    }
}
