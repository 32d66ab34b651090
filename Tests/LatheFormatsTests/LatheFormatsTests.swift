import XCTest
@testable import LatheFormats

final class LatheFormatsSmokeTests: XCTestCase {
    func testModuleLoads() {}
}
