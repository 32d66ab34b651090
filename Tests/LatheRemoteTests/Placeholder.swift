import XCTest

final class LatheRemotePlaceholderTests: XCTestCase {
    func testPlaceholder() {}
}
