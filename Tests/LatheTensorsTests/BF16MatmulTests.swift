#if canImport(CLatheDNNL)
import XCTest
@testable import LatheTensors

/// The bf16 matmul runs on any AVX-512 CPU (oneDNN emulates bf16 where AMX and AVX512-BF16 are missing), so
/// these tests check its results on every CPU, and again under lower `ONEDNN_MAX_CPU_ISA` caps (`BF16ISATests`).
final class BF16MatmulTests: XCTestCase {
    private func rounded(_ values: [Float]) -> [Float] { values.map { BF16.float(fromBits: BF16.bits(from: $0)) } }

    /// C[m, n] = A[m, k] · B[k, n] in double, plus Σ|a·b| per element: the scale rounding errors are measured on.
    private func exactProduct(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int,
                              transposeB: Bool) -> (product: [Float], magnitude: [Float]) {
        var product = [Float](repeating: 0, count: m * n), magnitude = product
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0, absoluteSum = 0.0
                for p in 0..<k {
                    let term = Double(a[i * k + p]) * Double(transposeB ? b[j * k + p] : b[p * n + j])
                    sum += term
                    absoluteSum += abs(term)
                }
                product[i * n + j] = Float(sum)
                magnitude[i * n + j] = Float(absoluteSum)
            }
        }
        return (product, magnitude)
    }

    /// Asserts |actual − expected| ≤ tolerance · Σ|a·b| per element, printing the worst element on failure.
    private func assertWithin(_ actual: [Float], _ expected: [Float], magnitude: [Float], tolerance: Float,
                              _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        var worstRatio: Float = 0, worstIndex = 0
        for index in actual.indices {
            let ratio = abs(actual[index] - expected[index]) / max(magnitude[index], 1e-30)
            if !(ratio <= worstRatio) { worstRatio = ratio.isNaN ? .infinity : ratio; worstIndex = index }
        }
        XCTAssertLessThanOrEqual(worstRatio, tolerance,
            "\(what): largest error at \(worstIndex): \(actual[worstIndex]) vs \(expected[worstIndex]), "
            + "\(worstRatio) of Σ|a·b| (tolerance \(tolerance))", file: file, line: line)
    }

    // Tolerances, relative to Σ|a·b| of each output element:
    // - tight, against the exact product of the bf16-rounded operands: only float32 accumulation error is
    //   left (k ≤ 77 terms, ≪ 1e-4);
    // - loose, against float32 A times the bf16-rounded weight: rounding A to bf16 moves each term by at most
    //   2⁻⁸ of itself, so the sum moves by ≤ 2⁻⁸ ≈ 4e-3 of Σ|a·b|; 1e-2 leaves room as stated for bf16 inputs.
    private let tightTolerance: Float = 1e-4
    private let looseTolerance: Float = 1e-2

    func testForwardProductMatchesFloat32ForOddShapes() throws {
        try skipWithoutOneDNNBF16()
        let matmul = try OneDNNBF16Matmul()
        for (m, n, k) in [(1, 37, 53), (7, 50, 19), (128, 33, 77)] {
            let input = randomValues(m * k, seed: UInt64(m * 1000 + n))
            let weight = try BF16Matrix(rows: n, columns: k, values: randomValues(n * k, seed: UInt64(k)))
            var output = [Float](repeating: .nan, count: m * n)
            try matmul.multiplyByTransposedWeight(input, rows: m, weight: weight, into: &output)

            let tight = exactProduct(rounded(input), weight.floats(), m: m, n: n, k: k, transposeB: true)
            assertWithin(output, tight.product, magnitude: tight.magnitude, tolerance: tightTolerance,
                         "A·Wᵀ m=\(m) n=\(n) k=\(k) vs bf16-rounded operands")
            let loose = exactProduct(input, weight.floats(), m: m, n: n, k: k, transposeB: true)
            assertWithin(output, loose.product, magnitude: loose.magnitude, tolerance: looseTolerance,
                         "A·Wᵀ m=\(m) n=\(n) k=\(k) vs float32 input")
        }
    }

    func testInputGradientProductMatchesFloat32ForOddShapes() throws {
        try skipWithoutOneDNNBF16()
        let matmul = try OneDNNBF16Matmul()
        for (m, n, k) in [(1, 37, 53), (7, 50, 19), (128, 33, 77)] {
            // The weight is [n, k]; the gradient A is [m, n]; the result is [m, k].
            let gradient = randomValues(m * n, seed: UInt64(m * 1000 + k))
            let weight = try BF16Matrix(rows: n, columns: k, values: randomValues(n * k, seed: UInt64(n)))
            var output = [Float](repeating: .nan, count: m * k)
            try matmul.multiplyByWeight(gradient, rows: m, weight: weight, into: &output)

            let tight = exactProduct(rounded(gradient), weight.floats(), m: m, n: k, k: n, transposeB: false)
            assertWithin(output, tight.product, magnitude: tight.magnitude, tolerance: tightTolerance,
                         "A·W m=\(m) n=\(n) k=\(k) vs bf16-rounded operands")
            let loose = exactProduct(gradient, weight.floats(), m: m, n: k, k: n, transposeB: false)
            assertWithin(output, loose.product, magnitude: loose.magnitude, tolerance: looseTolerance,
                         "A·W m=\(m) n=\(n) k=\(k) vs float32 input")
        }
    }

    func testBF16InputGivesTheSameResultAsTheRoundedFloatInput() throws {
        try skipWithoutOneDNNBF16()
        let (m, n, k) = (7, 21, 45)
        let matmul = try OneDNNBF16Matmul()
        let input = randomValues(m * k, seed: 5)
        let weight = try BF16Matrix(rows: n, columns: k, values: randomValues(n * k, seed: 6))
        var fromFloats = [Float](repeating: 0, count: m * n), fromBits = fromFloats
        try matmul.multiplyByTransposedWeight(input, rows: m, weight: weight, into: &fromFloats)
        let inputBits = input.map(BF16.bits(from:))
        try matmul.multiplyByTransposedWeight(bf16: inputBits, rows: m, weight: weight, into: &fromBits)
        XCTAssertEqual(fromBits, fromFloats, "the same bf16 operands through the same primitive must agree exactly")
    }

    func testAccumulateAddsToTheOutput() throws {
        try skipWithoutOneDNNBF16()
        let (m, n, k) = (7, 29, 18)
        let matmul = try OneDNNBF16Matmul()
        let input = randomValues(m * k, seed: 8)
        let weight = try BF16Matrix(rows: n, columns: k, values: randomValues(n * k, seed: 9))
        let previous = randomValues(m * n, seed: 10)
        var output = previous
        try matmul.multiplyByTransposedWeight(input, rows: m, weight: weight, into: &output, accumulate: true)

        let exact = exactProduct(rounded(input), weight.floats(), m: m, n: n, k: k, transposeB: true)
        let expected = zip(exact.product, previous).map { $0 + $1 }
        // The previous values add exactly up to float32 rounding: widen the scale by |previous|.
        let magnitude = zip(exact.magnitude, previous).map { $0 + abs($1) }
        assertWithin(output, expected, magnitude: magnitude, tolerance: tightTolerance, "accumulate A·Wᵀ")
    }

    func testPrimitivesAreBuiltOncePerShape() throws {
        try skipWithoutOneDNNBF16()
        let (m, n, k) = (7, 19, 23)
        let matmul = try OneDNNBF16Matmul()
        let input = randomValues(m * k, seed: 12)
        let weight = try BF16Matrix(rows: n, columns: k, values: randomValues(n * k, seed: 13))
        var first = [Float](repeating: 0, count: m * n), again = first
        try matmul.multiplyByTransposedWeight(input, rows: m, weight: weight, into: &first)
        for _ in 0..<5 { try matmul.multiplyByTransposedWeight(input, rows: m, weight: weight, into: &again) }
        XCTAssertEqual(matmul.cachedPrimitiveCount, 1, "repeated calls of one shape built more primitives")
        XCTAssertEqual(again, first, "a reused primitive gave a different result")

        var gradient = [Float](repeating: 0, count: m * k)
        try matmul.multiplyByWeight(first, rows: m, weight: weight, into: &gradient)
        XCTAssertEqual(matmul.cachedPrimitiveCount, 2, "the input-gradient form needs its own primitive")
    }

    func testBF16InstructionsMatchTheCPUFlags() throws {
        // oneDNN's view should agree with the kernel's: AMX-BF16 or AVX512-BF16 in /proc/cpuinfo, unless a cap is set.
        guard let cpuInfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else {
            throw XCTSkip("no /proc/cpuinfo")
        }
        let flags = Set(cpuInfo.split(separator: "\n").first { $0.hasPrefix("flags") }?
            .split(separator: " ").map(String.init) ?? [])
        var expected: BF16Products.Instructions =
            flags.contains("amx_bf16") ? .amx : flags.contains("avx512_bf16") ? .avx512BF16 : .none
        switch ProcessInfo.processInfo.environment["ONEDNN_MAX_CPU_ISA"]?.uppercased() {
        case "AVX512_CORE", "AVX512_CORE_VNNI": expected = .none
        case "AVX512_CORE_BF16" where expected == .amx: expected = .avx512BF16
        default: break
        }
        XCTAssertEqual(BF16Products.current.instructions, expected, "oneDNN and /proc/cpuinfo disagree about bf16")
    }

    /// oneDNN has no bf16 matmul below AVX-512 (AVX2-only CPUs): nothing to check there.
    func skipWithoutOneDNNBF16() throws {
        guard BF16Products.oneDNNHasBF16Matmul else { throw XCTSkip("oneDNN has no bf16 matmul on this CPU (\(BF16Products.current))") }
    }
}
#endif
