import XCTest

final class LatheDataPlaceholderTests: XCTestCase {
    func testPlaceholder() {}
}
