import XCTest
@testable import LatheModels

final class LatheModelsSmokeTests: XCTestCase {
    func testModuleLoads() {}
}
