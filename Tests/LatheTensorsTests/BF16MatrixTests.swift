import XCTest
@testable import LatheTensors

final class BF16MatrixTests: XCTestCase {
    func testValuesRepresentableInBF16RoundTripExactly() {
        // Every bf16 bit pattern that is not NaN: widening then rounding must give the same bits back.
        var mismatches: [UInt16] = []
        for pattern in 0...UInt16.max {
            let value = BF16.float(fromBits: pattern)
            if value.isNaN { continue }
            if BF16.bits(from: value) != pattern { mismatches.append(pattern) }
        }
        XCTAssertEqual(mismatches.count, 0, "first patterns that did not round-trip: \(mismatches.prefix(5))")
    }

    func testRoundingIsToNearestWithTiesToEven() {
        // 0x3F80_8000 lies halfway between bf16 0x3F80 (even) and 0x3F81: the tie goes to the even one.
        XCTAssertEqual(BF16.bits(from: Float(bitPattern: 0x3F80_8000)), 0x3F80)
        // 0x3F81_8000 lies halfway between 0x3F81 (odd) and 0x3F82 (even).
        XCTAssertEqual(BF16.bits(from: Float(bitPattern: 0x3F81_8000)), 0x3F82)
        // Just above and below a tie round to the nearer neighbour.
        XCTAssertEqual(BF16.bits(from: Float(bitPattern: 0x3F80_8001)), 0x3F81)
        XCTAssertEqual(BF16.bits(from: Float(bitPattern: 0x3F80_7FFF)), 0x3F80)
        // Negative values round by magnitude the same way.
        XCTAssertEqual(BF16.bits(from: Float(bitPattern: 0xBF81_8000)), 0xBF82)
        // The largest float rounds up past bf16's largest finite value to infinity, as IEEE rounding does.
        XCTAssertEqual(BF16.bits(from: .greatestFiniteMagnitude), 0x7F80)
    }

    func testNaNStaysNaNAndInfinitiesStay() {
        XCTAssertTrue(BF16.float(fromBits: BF16.bits(from: .nan)).isNaN)
        // A NaN whose payload sits only in the low 16 bits would become infinity if merely truncated or rounded.
        XCTAssertTrue(BF16.float(fromBits: BF16.bits(from: Float(bitPattern: 0x7F80_0001))).isNaN)
        XCTAssertTrue(BF16.float(fromBits: BF16.bits(from: Float(bitPattern: 0xFF80_0001))).isNaN)
        XCTAssertEqual(BF16.float(fromBits: BF16.bits(from: .infinity)), .infinity)
        XCTAssertEqual(BF16.float(fromBits: BF16.bits(from: -.infinity)), -.infinity)
    }

    func testMatrixStoresRoundedValuesAlignedAndGivesThemBack() throws {
        let values = randomValues(7 * 13, seed: 11)
        let matrix = try BF16Matrix(rows: 7, columns: 13, values: values)
        XCTAssertEqual(Int(bitPattern: matrix.bits) % 64, 0, "storage is not 64-byte aligned")
        let expected = values.map { BF16.float(fromBits: BF16.bits(from: $0)) }
        XCTAssertEqual(matrix.floats(), expected)
        // bf16 keeps 8 significant bits (7 stored): half an ulp is at most 2⁻⁸ of the value it rounds.
        let worst = zip(matrix.floats(), values).map { abs($0 - $1) / max(abs($1), 1e-30) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 1.0 / 256, "largest relative rounding error \(worst)")
    }

    func testMatrixRejectsAWrongValueCount() {
        XCTAssertThrowsError(try BF16Matrix(rows: 2, columns: 3, values: [1, 2, 3])) { error in
            XCTAssertEqual(error as? BF16Matrix.ShapeError, .countMismatch(rows: 2, columns: 3, valueCount: 3))
        }
    }
}
