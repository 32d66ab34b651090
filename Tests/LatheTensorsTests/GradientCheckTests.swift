import XCTest
import Foundation
@testable import LatheTensors

/// The backward kernels against central finite differences of their forward kernels, for the variants Gemma 3
/// needs: RMSNorm with a weight offset, GeGLU, and attention with a sliding window and its own scale.
final class GradientCheckTests: XCTestCase {
    /// Central differences of Σ probe·f(x) with respect to every element of `x`, in float32: with step h the
    /// truncation error is O(h²·f‴) and the rounding error O(ulp(f)/h), both near 1e-4 here.
    func numericalGradient(_ x: [Float], probe: [Float], step h: Float = 1e-2, _ f: ([Float]) -> [Float]) -> [Float] {
        (0..<x.count).map { i in
            var plus = x, minus = x
            plus[i] += h; minus[i] -= h
            let up = zip(f(plus), probe).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let down = zip(f(minus), probe).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            return Float((up - down) / (2 * Double(h)))
        }
    }

    func testRMSNormWithWeightOffsetMatchesDefinitionAndFiniteDifferences() {
        let dim = 21, rows = 3, eps: Float = 1e-6
        let x = randomValues(rows * dim, seed: 50), w = randomValues(dim, seed: 51).map { $0 * 0.3 }
        let probe = randomValues(rows * dim, seed: 52)
        func forward(_ x: [Float], _ w: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: rows * dim)
            RMSNorm.forward(out: &out, input: x, weight: w, rows: rows, dim: dim, eps: eps, weightOffset: 1)
            return out
        }
        var expected: [Float] = []
        for r in 0..<rows {
            let row = x[(r * dim)..<((r + 1) * dim)].map(Double.init)
            let inverseRMS = 1 / (row.map { $0 * $0 }.reduce(0, +) / Double(dim) + Double(eps)).squareRoot()
            expected += row.enumerated().map { Float($0.element * inverseRMS * (1 + Double(w[$0.offset]))) }
        }
        assertClose(forward(x, w), expected, rtol: 1e-5, atol: 1e-6, "rmsnorm (1 + w)")

        // Backward adds into what is there: start both gradients from ones.
        var dx = [Float](repeating: 1, count: rows * dim), dw = [Float](repeating: 1, count: dim)
        RMSNorm.backward(dInput: &dx, dWeight: &dw, dOut: probe, input: x, weight: w, rows: rows, dim: dim, eps: eps,
                         weightOffset: 1)
        let numericX = numericalGradient(x, probe: probe) { forward($0, w) }
        let numericW = numericalGradient(w, probe: probe) { forward(x, $0) }
        assertClose(dx.map { $0 - 1 }, numericX, rtol: 1e-3, atol: 5e-4, "rmsnorm dx")
        assertClose(dw.map { $0 - 1 }, numericW, rtol: 1e-3, atol: 5e-4, "rmsnorm dw")
    }

    /// GELU's tanh approximation as PyTorch writes it, in double precision.
    static func geluTanh(_ g: Double) -> Double { 0.5 * g * (1 + tanh((2 / Double.pi).squareRoot() * (g + 0.044715 * g * g * g))) }

    func testGeGLUMatchesTheTanhFormulaAndItsDerivative() {
        for count in [1, 16, 37, 1536] {
            // Gates up to ±8: the tails where the sigmoid form and tanh saturate.
            let gate = randomValues(count, seed: 60 + UInt64(count)).map { $0 * 8 }
            let up = randomValues(count, seed: 61), dOut = randomValues(count, seed: 62)
            var out = [Float](repeating: 0, count: count), reference = out
            GeGLU.forward(out: &out, gate: gate, up: up, count: count)
            GeGLU.referenceForward(out: &reference, gate: gate, up: up, count: count)
            let formula = (0..<count).map { Float(Self.geluTanh(Double(gate[$0])) * Double(up[$0])) }
            assertClose(out, formula, rtol: 1e-5, atol: 1e-6, "geglu of \(count)")
            assertClose(reference, formula, rtol: 1e-5, atol: 1e-6, "reference geglu of \(count)")

            var dGate = [Float](repeating: 0, count: count), dUp = dGate, slowGate = dGate, slowUp = dGate
            GeGLU.backward(dGate: &dGate, dUp: &dUp, dOut: dOut, gate: gate, up: up, count: count)
            GeGLU.referenceBackward(dGate: &slowGate, dUp: &slowUp, dOut: dOut, gate: gate, up: up, count: count)
            // The derivative of the formula by central differences in double precision.
            let h = 1e-5
            let numericGate = (0..<count).map { i -> Float in
                let g = Double(gate[i])
                return Float((Self.geluTanh(g + h) - Self.geluTanh(g - h)) / (2 * h) * Double(up[i]) * Double(dOut[i]))
            }
            let numericUp = (0..<count).map { Float(Self.geluTanh(Double(gate[$0])) * Double(dOut[$0])) }
            assertClose(dGate, numericGate, rtol: 1e-4, atol: 1e-6, "geglu dGate of \(count)")
            assertClose(dUp, numericUp, rtol: 1e-5, atol: 1e-6, "geglu dUp of \(count)")
            assertClose(dGate, slowGate, rtol: 1e-5, atol: 1e-7, "geglu dGate against its reference, \(count)")
            assertClose(dUp, slowUp, rtol: 1e-5, atol: 1e-7, "geglu dUp against its reference, \(count)")
        }
    }

    func testSlidingWindowAttentionWithOwnScaleBackwardMatchesFiniteDifferences() {
        // Two sequences of 9 tokens, a window of 3, two query heads per KV head, padding in the second sequence.
        let heads = 4, kvHeads = 2, d = 4, length = 9, sequences = 2, window = 3, scale: Float = 0.7
        let queryWidth = heads * d, kvWidth = kvHeads * d
        let q = randomValues(sequences * length * queryWidth, seed: 70)
        let k = randomValues(sequences * length * kvWidth, seed: 71), v = randomValues(sequences * length * kvWidth, seed: 72)
        let probe = randomValues(sequences * length * queryWidth, seed: 73)
        let valid = (0..<(sequences * length)).map { $0 != length + 1 }
        func forward(_ q: [Float], _ k: [Float], _ v: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: sequences * length * queryWidth)
            var scores = [Float](repeating: 0, count: GroupedQueryAttention.scoreCount(queryCount: length, firstQuerySlot: 0))
            valid.withUnsafeBufferPointer { validity in
                GroupedQueryAttention.forward(out: &out, queries: q, keys: k, values: v, queryCount: length, firstQuerySlot: 0,
                                              mask: .init(keyIsValid: validity.baseAddress, window: window), heads: heads,
                                              kvHeads: kvHeads, headDim: d, scale: scale, scores: &scores, sequences: sequences)
            }
            return out
        }
        // The forward against the naive attention, sequence by sequence.
        let out = forward(q, k, v)
        for s in 0..<sequences {
            let rows = s * length..<(s + 1) * length
            let expected = AttentionTests.naiveAttention(
                q: Array(q[rows.lowerBound * queryWidth..<rows.upperBound * queryWidth]),
                k: Array(k[rows.lowerBound * kvWidth..<rows.upperBound * kvWidth]),
                v: Array(v[rows.lowerBound * kvWidth..<rows.upperBound * kvWidth]), queries: length, first: 0,
                valid: Array(valid[rows]), heads: heads, kvHeads: kvHeads, d: d, scale: Double(scale), window: window)
            assertClose(Array(out[rows.lowerBound * queryWidth..<rows.upperBound * queryWidth]), expected,
                        rtol: 1e-5, atol: 1e-6, "windowed attention, sequence \(s)")
        }

        var dQ = [Float](repeating: 0, count: q.count), dK = [Float](repeating: 0, count: k.count), dV = dK
        let workspace = GroupedQueryAttention.scoreCount(queryCount: length, firstQuerySlot: 0)
        var scores = [Float](repeating: 0, count: workspace), dScores = scores
        valid.withUnsafeBufferPointer { validity in
            GroupedQueryAttention.backward(dQueries: &dQ, dKeys: &dK, dValues: &dV, dOut: probe, queries: q, keys: k, values: v,
                                           queryCount: length, mask: .init(keyIsValid: validity.baseAddress, window: window),
                                           heads: heads, kvHeads: kvHeads, headDim: d, scale: scale, scores: &scores,
                                           dScores: &dScores, sequences: sequences)
        }
        assertClose(dQ, numericalGradient(q, probe: probe) { forward($0, k, v) }, rtol: 1e-3, atol: 5e-4, "attention dQ")
        assertClose(dK, numericalGradient(k, probe: probe) { forward(q, $0, v) }, rtol: 1e-3, atol: 5e-4, "attention dK")
        assertClose(dV, numericalGradient(v, probe: probe) { forward(q, k, $0) }, rtol: 1e-3, atol: 5e-4, "attention dV")
    }

    func testSlidingWindowAttentionOverACacheMatchesNaive() {
        // Decoding after a cached prefix longer than the window: the window counts cache slots too.
        let heads = 2, kvHeads = 1, d = 8, first = 6, queries = 3, window = 4, scale: Float = 0.25
        let keys = first + queries
        let q = randomValues(queries * heads * d, seed: 80)
        let k = randomValues(keys * kvHeads * d, seed: 81), v = randomValues(keys * kvHeads * d, seed: 82)
        let valid = [false, true, true, true, true, true, true, true, true]
        var out = [Float](repeating: 0, count: queries * heads * d)
        var scores = [Float](repeating: 0, count: GroupedQueryAttention.scoreCount(queryCount: queries, firstQuerySlot: first))
        valid.withUnsafeBufferPointer { validity in
            GroupedQueryAttention.forward(out: &out, queries: q, keys: k, values: v, queryCount: queries, firstQuerySlot: first,
                                          mask: .init(keyIsValid: validity.baseAddress, window: window), heads: heads,
                                          kvHeads: kvHeads, headDim: d, scale: scale, scores: &scores)
        }
        let expected = AttentionTests.naiveAttention(q: q, k: k, v: v, queries: queries, first: first, valid: valid,
                                                     heads: heads, kvHeads: kvHeads, d: d, scale: Double(scale), window: window)
        assertClose(out, expected, rtol: 1e-5, atol: 1e-6, "windowed attention with a cache")
        let unwindowed = AttentionTests.naiveAttention(q: q, k: k, v: v, queries: queries, first: first, valid: valid,
                                                       heads: heads, kvHeads: kvHeads, d: d, scale: Double(scale))
        XCTAssertGreaterThan(zip(out, unwindowed).map { abs($0 - $1) }.max()!, 1e-3, "the window hides keys")
    }
}
