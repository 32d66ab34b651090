import XCTest
@testable import LatheTokenizers

final class LatheTokenizersSmokeTests: XCTestCase {
    func testModuleLoads() {}
}
