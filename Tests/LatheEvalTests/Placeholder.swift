import XCTest

final class LatheEvalPlaceholderTests: XCTestCase {
    func testPlaceholder() {}
}
