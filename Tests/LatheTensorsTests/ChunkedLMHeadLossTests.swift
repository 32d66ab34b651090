import XCTest
@testable import LatheTensors

/// The fused, chunked LM head + cross-entropy against the unfused path it replaces: full logits = hidden · Wᵀ,
/// `CrossEntropy.lossAndGradient`, dHidden = dLogits · W, dWeight += dLogitsᵀ · hidden.
final class ChunkedLMHeadLossTests: XCTestCase {
    // Loss within 1e-6 relative; gradients rtol 1e-5, atol 1e-7 (typical dWeight entries are ~1e-5).
    let lossTolerance = 1e-6, gradientRtol: Float = 1e-5, gradientAtol: Float = 1e-7
    let dim = 40, vocabularySize = 3001

    struct Gradients { var loss: Double; var count: Int; var dHidden: [Float]; var dWeight: [Float] }

    func unfused(hidden: [Float], weight: [Float], targets: [Int], scale: Float, dWeight initial: [Float]) -> Gradients {
        let rows = targets.count
        var logits = [Float](repeating: 0, count: rows * vocabularySize), dLogits = logits
        MatMul.multiply(hidden, weight, into: &logits, m: rows, n: vocabularySize, k: dim, transposeB: true)
        let (loss, count) = CrossEntropy.lossAndGradient(logits: logits, targets: targets, vocabularySize: vocabularySize,
                                                         dLogits: &dLogits, scale: scale)
        var dHidden = [Float](repeating: 0, count: rows * dim), dWeight = initial
        MatMul.multiply(dLogits, weight, into: &dHidden, m: rows, n: dim, k: vocabularySize)
        MatMul.multiply(dLogits, hidden, into: &dWeight, m: vocabularySize, n: dim, k: rows, transposeA: true, accumulate: true)
        return Gradients(loss: loss, count: count, dHidden: dHidden, dWeight: dWeight)
    }

    func fused(hidden: [Float], weight: [Float], targets: [Int], scale: Float, dWeight initial: [Float],
               chunkRows: Int, workspace: ChunkedLMHeadLoss.Workspace) -> Gradients {
        // dHidden starts non-zero to check that every row, ignored ones included, is written.
        var dHidden = [Float](repeating: 7, count: targets.count * dim), dWeight = initial
        let (loss, count) = weight.withUnsafeBufferPointer { weightValues in
            ChunkedLMHeadLoss.lossAndGradient(
                hidden: hidden, weight: .dense(weightValues.baseAddress!), rows: targets.count, dim: dim,
                vocabularySize: vocabularySize, targets: targets, scale: scale, dHidden: &dHidden, dWeight: &dWeight,
                chunkRows: chunkRows, workspace: workspace)
        }
        return Gradients(loss: loss, count: count, dHidden: dHidden, dWeight: dWeight)
    }

    func testEqualsTheUnfusedPathWithIgnoredRowsAndOddRowCounts() {
        // 203 rows: not a multiple of any chunk size below; every 5th target ignored, and rows 64..<140 (more than a
        // whole chunk of 64) all ignored, as the prompt of an SFT example.
        let rows = 203
        let hidden = randomValues(rows * dim, seed: 101).map { $0 * 2 }
        let weight = randomValues(vocabularySize * dim, seed: 102)
        var generator = SeededGenerator(seed: 103)
        let targets = (0..<rows).map { row in
            row % 5 == 2 || (64..<140).contains(row) ? -1 : Int(generator.next() % UInt64(vocabularySize))
        }
        let initialDWeight = randomValues(vocabularySize * dim, seed: 104).map { $0 * 1e-5 }
        let scale: Float = 1 / Float(targets.filter { $0 >= 0 }.count)
        let expected = unfused(hidden: hidden, weight: weight, targets: targets, scale: scale, dWeight: initialDWeight)
        let chunkSizes = [64, 1, 17, 500]
        for chunkRows in chunkSizes {
            let workspace = ChunkedLMHeadLoss.Workspace()
            let actual = fused(hidden: hidden, weight: weight, targets: targets, scale: scale, dWeight: initialDWeight,
                               chunkRows: chunkRows, workspace: workspace)
            let supervised = expected.count
            print("chunk \(chunkRows): largest |Δ| dHidden \(largestDifference(actual.dHidden, expected.dHidden)),"
                  + " dWeight \(largestDifference(actual.dWeight, expected.dWeight)), relative loss \(abs(actual.loss - expected.loss) / expected.loss)")
            XCTAssertEqual(actual.count, supervised, "chunk \(chunkRows)")
            let relativeLossDifference = abs(actual.loss - expected.loss) / expected.loss
            XCTAssertLessThanOrEqual(relativeLossDifference, lossTolerance,
                                     "chunk \(chunkRows): loss \(actual.loss) vs \(expected.loss)")
            assertClose(actual.dHidden, expected.dHidden, rtol: gradientRtol, atol: gradientAtol, "dHidden, chunk \(chunkRows)")
            assertClose(actual.dWeight, expected.dWeight, rtol: gradientRtol, atol: gradientAtol, "dWeight, chunk \(chunkRows)")
            // Only one [chunk, vocabulary] block of logits ever exists (smaller when fewer rows are supervised).
            XCTAssertEqual(workspace.logitsCapacity, min(chunkRows, supervised) * vocabularySize, "chunk \(chunkRows)")
            XCTAssertEqual(workspace.rowsCapacity, min(chunkRows, supervised) * dim, "chunk \(chunkRows)")
        }
    }

    func largestDifference(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    func testReusedWorkspaceDoesNotGrowAndAllIgnoredCostsNothing() {
        let rows = 9
        let hidden = randomValues(rows * dim, seed: 111), weight = randomValues(vocabularySize * dim, seed: 112)
        let workspace = ChunkedLMHeadLoss.Workspace()
        let allIgnored = [Int](repeating: -1, count: rows)
        let nothing = fused(hidden: hidden, weight: weight, targets: allIgnored, scale: 1, dWeight: [Float](repeating: 3, count: vocabularySize * dim),
                            chunkRows: 4, workspace: workspace)
        XCTAssertEqual(nothing.count, 0)
        XCTAssertEqual(nothing.loss, 0)
        XCTAssertTrue(nothing.dHidden.allSatisfy { $0 == 0 }, "ignored rows get zero dHidden")
        XCTAssertTrue(nothing.dWeight.allSatisfy { $0 == 3 }, "no supervised row, nothing added to dWeight")
        XCTAssertEqual(workspace.logitsCapacity, 0, "no logits computed when every target is ignored")

        let targets = (0..<rows).map { $0 * 331 % vocabularySize }
        let expected = unfused(hidden: hidden, weight: weight, targets: targets, scale: 0.5, dWeight: [Float](repeating: 0, count: vocabularySize * dim))
        for call in 0..<2 {
            let actual = fused(hidden: hidden, weight: weight, targets: targets, scale: 0.5, dWeight: [Float](repeating: 0, count: vocabularySize * dim),
                               chunkRows: 4, workspace: workspace)
            XCTAssertLessThanOrEqual(abs(actual.loss - expected.loss) / expected.loss, lossTolerance, "call \(call)")
            assertClose(actual.dHidden, expected.dHidden, rtol: gradientRtol, atol: gradientAtol, "dHidden, call \(call)")
            assertClose(actual.dWeight, expected.dWeight, rtol: gradientRtol, atol: gradientAtol, "dWeight, call \(call)")
            XCTAssertEqual(workspace.logitsCapacity, 4 * vocabularySize, "call \(call)")
        }
    }

    func testLossOnlyEqualsCrossEntropyOfTheFullLogits() {
        let rows = 13
        let hidden = randomValues(rows * dim, seed: 121), weight = randomValues(vocabularySize * dim, seed: 122)
        let targets = (0..<rows).map { $0 % 4 == 1 ? -1 : $0 * 97 % vocabularySize }
        let expected = unfused(hidden: hidden, weight: weight, targets: targets, scale: 1, dWeight: [Float](repeating: 0, count: vocabularySize * dim))
        let (loss, count) = weight.withUnsafeBufferPointer { weightValues in
            ChunkedLMHeadLoss.lossAndGradient(
                hidden: hidden, weight: .dense(weightValues.baseAddress!), rows: rows, dim: dim, vocabularySize: vocabularySize,
                targets: targets, scale: 1, dHidden: nil, dWeight: nil, chunkRows: 5, workspace: ChunkedLMHeadLoss.Workspace())
        }
        XCTAssertEqual(count, expected.count)
        XCTAssertLessThanOrEqual(abs(loss - expected.loss) / expected.loss, lossTolerance, "loss \(loss) vs \(expected.loss)")
    }
}
