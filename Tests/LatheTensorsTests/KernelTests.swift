import XCTest
import Foundation
@testable import LatheTensors

/// Largest |a − b| − rtol·|b| over two arrays; ≤ atol means close.
func assertClose(_ actual: [Float], _ expected: [Float], rtol: Float = 1e-5, atol: Float = 1e-5,
                 _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, "\(what): counts differ", file: file, line: line)
    var worst: Float = 0, worstIndex = 0
    for i in 0..<min(actual.count, expected.count) {
        let excess = abs(actual[i] - expected[i]) - rtol * abs(expected[i])
        if !(excess <= worst) { worst = excess.isNaN ? .infinity : excess; worstIndex = i }
    }
    XCTAssertLessThanOrEqual(worst, atol,
        "\(what): largest difference at \(worstIndex): \(actual[worstIndex]) vs \(expected[worstIndex]) (rtol \(rtol), atol \(atol))",
        file: file, line: line)
}

func randomValues(_ count: Int, seed: UInt64) -> [Float] {
    var g = SeededGenerator(seed: seed)
    return (0..<count).map { _ in g.nextUnitFloat() * 2 - 1 }
}

final class MatMulTests: XCTestCase {
    func testBLASMatchesReferenceForEveryTransposeAndStride() {
        let (m, n, k) = (7, 5, 11)
        let blas = CBLASBackend(), reference = ReferenceMatMulBackend()
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            // Strided operands: each row is 3 floats wider than it needs to be.
            let lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 3, ldc = n + 2
            let a = randomValues((ta ? k : m) * lda, seed: 1), b = randomValues((tb ? n : k) * ldb, seed: 2)
            let c0 = randomValues(m * ldc, seed: 3)
            var fast = c0, slow = c0
            fast.withUnsafeMutableBufferPointer { c in
                blas.gemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb,
                          beta: 2, c: c.baseAddress!, ldc: ldc)
            }
            slow.withUnsafeMutableBufferPointer { c in
                reference.gemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb,
                               beta: 2, c: c.baseAddress!, ldc: ldc)
            }
            assertClose(fast, slow, rtol: 1e-5, atol: 1e-5, "gemm transposeA=\(ta) transposeB=\(tb)")
        }
    }
}

final class RowKernelTests: XCTestCase {
    func testRMSNormMatchesDefinition() {
        let dim = 37, rows = 3
        let x = randomValues(rows * dim, seed: 4), w = randomValues(dim, seed: 5)
        var out = [Float](repeating: 0, count: rows * dim)
        RMSNorm.forward(out: &out, input: x, weight: w, rows: rows, dim: dim, eps: 1e-5)
        var expected: [Float] = []
        for r in 0..<rows {
            let row = x[(r * dim)..<((r + 1) * dim)].map(Double.init)
            let scale = 1 / (row.map { $0 * $0 }.reduce(0, +) / Double(dim) + 1e-5).squareRoot()
            expected += row.enumerated().map { Float($0.element * scale * Double(w[$0.offset])) }
        }
        assertClose(out, expected, rtol: 1e-5, atol: 1e-6, "rmsnorm")
    }

    func testSoftmaxSumsToOneAndHandlesFullyMaskedRows() {
        var row: [Float] = [1000, 999, -.infinity, 998]
        Softmax.forwardInPlace(&row, count: 4)
        let e = [1, exp(-1.0), 0, exp(-2.0)], s = e.reduce(0, +)
        assertClose(row, e.map { Float($0 / s) }, rtol: 1e-6, atol: 1e-7, "softmax")
        var masked: [Float] = [-.infinity, -.infinity]
        Softmax.forwardInPlace(&masked, count: 2)
        XCTAssertEqual(masked, [0, 0])
        XCTAssertEqual(Softmax.logProbability([0, 0, 0, 0], count: 4, index: 2), log(0.25), accuracy: 1e-12)
    }

    func testRoPERotatesHalvesByPositionTimesFrequency() {
        let rope = RotaryEmbedding(headDim: 8, base: 10000)
        var x = randomValues(16, seed: 6)
        let original = x
        rope.apply(&x, heads: 2, position: 5)
        for h in 0..<2 {
            for i in 0..<4 {
                let angle = 5 * Double(1 / pow(10000.0, Double(2 * i) / 8))
                let a = Double(original[h * 8 + i]), b = Double(original[h * 8 + i + 4])
                XCTAssertEqual(Double(x[h * 8 + i]), a * cos(angle) - b * sin(angle), accuracy: 1e-5)
                XCTAssertEqual(Double(x[h * 8 + i + 4]), b * cos(angle) + a * sin(angle), accuracy: 1e-5)
            }
        }
        // Position 0 is the identity.
        var y = original
        rope.apply(&y, heads: 2, position: 0)
        XCTAssertEqual(y, original)
    }

    func testLlama3ScalingKeepsHighFrequenciesAndDividesLowOnes() {
        let plain = RotaryEmbedding(headDim: 64, base: 500000)
        let scaled = RotaryEmbedding(headDim: 64, base: 500000, llama3: .init(
            factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalMaxPositions: 8192))
        XCTAssertEqual(scaled.inverseFrequencies[0], plain.inverseFrequencies[0])
        XCTAssertEqual(scaled.inverseFrequencies[31], plain.inverseFrequencies[31] / 8, accuracy: 1e-12)
        // Frequencies in between are blended, so strictly between f/8 and f.
        let middle = (0..<32).filter { scaled.inverseFrequencies[$0] != plain.inverseFrequencies[$0]
            && abs(scaled.inverseFrequencies[$0] - plain.inverseFrequencies[$0] / 8) > 1e-12 }
        XCTAssertFalse(middle.isEmpty)
        for i in middle {
            XCTAssertGreaterThan(scaled.inverseFrequencies[i], plain.inverseFrequencies[i] / 8)
            XCTAssertLessThan(scaled.inverseFrequencies[i], plain.inverseFrequencies[i])
        }
    }
}

final class AttentionTests: XCTestCase {
    /// Attention written out with scalar loops in double precision; `scale` nil for 1/√d, `window` nil for none.
    static func naiveAttention(q: [Float], k: [Float], v: [Float], queries: Int, first: Int, valid: [Bool],
                               heads: Int, kvHeads: Int, d: Int, scale: Double? = nil, window: Int? = nil) -> [Float] {
        var out = [Float](repeating: 0, count: queries * heads * d)
        for h in 0..<heads {
            let g = h / (heads / kvHeads)
            for t in 0..<queries {
                var weights: [Double] = []
                for j in 0...(first + t) {
                    var s = 0.0
                    for i in 0..<d { s += Double(q[t * heads * d + h * d + i]) * Double(k[j * kvHeads * d + g * d + i]) }
                    let inWindow = window.map { first + t - j < $0 } ?? true
                    weights.append(valid[j] && inWindow ? s * (scale ?? 1 / Double(d).squareRoot()) : -.infinity)
                }
                let m = weights.max()!
                let e = weights.map { m == -.infinity ? 0 : exp($0 - m) }, total = e.reduce(0, +)
                for i in 0..<d {
                    var sum = 0.0
                    for j in 0..<e.count where total > 0 { sum += e[j] / total * Double(v[j * kvHeads * d + g * d + i]) }
                    out[t * heads * d + h * d + i] = Float(sum)
                }
            }
        }
        return out
    }

    func testGroupedQueryAttentionWithCacheAndPaddingMatchesNaive() {
        let heads = 4, kvHeads = 2, d = 8, first = 3, queries = 4
        let keys = first + queries
        let q = randomValues(queries * heads * d, seed: 7)
        let k = randomValues(keys * kvHeads * d, seed: 8), v = randomValues(keys * kvHeads * d, seed: 9)
        let valid = [false, true, true, true, true, false, true]
        var out = [Float](repeating: 0, count: queries * heads * d)
        var scores = [Float](repeating: 0, count: queries * keys)
        valid.withUnsafeBufferPointer { validity in
            GroupedQueryAttention.forward(out: &out, queries: q, keys: k, values: v, queryCount: queries, firstQuerySlot: first,
                                          mask: .init(keyIsValid: validity.baseAddress), heads: heads, kvHeads: kvHeads, headDim: d,
                                          scores: &scores)
        }
        let expected = Self.naiveAttention(q: q, k: k, v: v, queries: queries, first: first, valid: valid,
                                      heads: heads, kvHeads: kvHeads, d: d)
        assertClose(out, expected, rtol: 1e-5, atol: 1e-6, "attention")
    }
}

final class RandomTests: XCTestCase {
    func testSeededGeneratorIsRepeatableAndUniform() {
        var a = SeededGenerator(seed: 42), b = SeededGenerator(seed: 42), c = SeededGenerator(seed: 43)
        let first = (0..<5).map { _ in a.next() }
        XCTAssertEqual(first, (0..<5).map { _ in b.next() })
        XCTAssertNotEqual(first, (0..<5).map { _ in c.next() })
        var g = SeededGenerator(seed: 1)
        let mean = (0..<10000).map { _ in Double(g.nextUnitFloat()) }.reduce(0, +) / 10000
        XCTAssertEqual(mean, 0.5, accuracy: 0.02)
    }
}

final class VectorisedKernelTests: XCTestCase {
    func testExp16MatchesLibmWithinTwoUlpAndUnderflowsToZero() {
        var worst: Float = 0
        var g = SeededGenerator(seed: 11)
        for _ in 0..<2000 {
            let x = SIMD16<Float>((0..<16).map { _ in g.nextUnitFloat() * 175 - 87 })
            let fast = exp16(x)
            for lane in 0..<16 {
                let exact = Float(Foundation.exp(Double(x[lane])))
                worst = max(worst, abs(fast[lane] - exact) / exact.ulp)
            }
        }
        XCTAssertLessThanOrEqual(worst, 2, "largest error \(worst) ulp")
        let tiny = exp16(SIMD16<Float>(repeating: -.infinity))
        XCTAssertEqual(tiny, SIMD16<Float>(repeating: 0))
        XCTAssertEqual(exp16(SIMD16<Float>(repeating: 0)), SIMD16<Float>(repeating: 1))
    }

    func testSoftmaxAndSwiGLUEqualTheirReferences() {
        for count in [1, 15, 16, 17, 100, 49152] {
            var fast = randomValues(count, seed: UInt64(count)).map { $0 * 30 }
            var slow = fast
            Softmax.forwardInPlace(&fast, count: count)
            Softmax.referenceForwardInPlace(&slow, count: count)
            assertClose(fast, slow, rtol: 1e-5, atol: 1e-9, "softmax of \(count)")
            let gate = randomValues(count, seed: 100 + UInt64(count)).map { $0 * 20 }, up = randomValues(count, seed: 7)
            var a = [Float](repeating: 0, count: count), b = a
            SwiGLU.forward(out: &a, gate: gate, up: up, count: count)
            SwiGLU.referenceForward(out: &b, gate: gate, up: up, count: count)
            assertClose(a, b, rtol: 1e-5, atol: 1e-7, "swiglu of \(count)")
        }
    }

    func testBlockedAttentionOverManyQueriesMatchesNaive() {
        // More queries than one block, with a cache in front: exercises the block edges.
        let heads = 2, kvHeads = 1, d = 4, first = 5, queries = GroupedQueryAttention.queryBlock + 9
        let keys = first + queries
        let q = randomValues(queries * heads * d, seed: 21)
        let k = randomValues(keys * kvHeads * d, seed: 22), v = randomValues(keys * kvHeads * d, seed: 23)
        let valid = (0..<keys).map { $0 % 7 != 3 }
        var out = [Float](repeating: 0, count: queries * heads * d)
        var scores = [Float](repeating: 0, count: GroupedQueryAttention.scoreCount(queryCount: queries, firstQuerySlot: first))
        valid.withUnsafeBufferPointer { validity in
            GroupedQueryAttention.forward(out: &out, queries: q, keys: k, values: v, queryCount: queries, firstQuerySlot: first,
                                          mask: .init(keyIsValid: validity.baseAddress), heads: heads, kvHeads: kvHeads, headDim: d,
                                          scores: &scores)
        }
        let expected = AttentionTests.naiveAttention(q: q, k: k, v: v, queries: queries, first: first, valid: valid,
                                                       heads: heads, kvHeads: kvHeads, d: d)
        assertClose(out, expected, rtol: 1e-5, atol: 1e-6, "blocked attention")
    }
}

final class CrossEntropyTests: XCTestCase {
    func testVectorisedLossAndGradientEqualTheDoublePrecisionReference() {
        let n = 1000, rows = 5
        let logits = randomValues(rows * n, seed: 31).map { $0 * 12 }
        let targets = [3, -1, 999, 0, 517]
        var fast = [Float](repeating: 1, count: rows * n), slow = fast
        let a = CrossEntropy.lossAndGradient(logits: logits, targets: targets, vocabularySize: n, dLogits: &fast, scale: 0.25)
        let b = CrossEntropy.referenceLossAndGradient(logits: logits, targets: targets, vocabularySize: n, dLogits: &slow, scale: 0.25)
        XCTAssertEqual(a.count, 4)
        XCTAssertEqual(a.count, b.count)
        XCTAssertEqual(a.loss, b.loss, accuracy: 1e-5 * b.loss)
        assertClose(fast, slow, rtol: 2e-6, atol: 1e-9, "dlogits")
        XCTAssertEqual(fast[n..<(2 * n)].allSatisfy { $0 == 0 }, true, "ignored rows get no gradient")
    }
}

extension VectorisedKernelTests {
    func testSwiGLUBackwardEqualsItsReference() {
        for count in [1, 16, 37, 1536] {
            let gate = randomValues(count, seed: 40 + UInt64(count)).map { $0 * 15 }
            let up = randomValues(count, seed: 41), dOut = randomValues(count, seed: 42)
            var fastGate = [Float](repeating: 0, count: count), fastUp = fastGate, slowGate = fastGate, slowUp = fastGate
            SwiGLU.backward(dGate: &fastGate, dUp: &fastUp, dOut: dOut, gate: gate, up: up, count: count)
            SwiGLU.referenceBackward(dGate: &slowGate, dUp: &slowUp, dOut: dOut, gate: gate, up: up, count: count)
            assertClose(fastGate, slowGate, rtol: 1e-5, atol: 1e-7, "dGate of \(count)")
            assertClose(fastUp, slowUp, rtol: 1e-5, atol: 1e-7, "dUp of \(count)")
        }
    }
}
