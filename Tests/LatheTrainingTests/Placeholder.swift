import XCTest

final class LatheTrainingPlaceholderTests: XCTestCase {
    func testPlaceholder() {}
}
