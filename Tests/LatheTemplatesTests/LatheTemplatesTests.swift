import XCTest
@testable import LatheTemplates

final class LatheTemplatesSmokeTests: XCTestCase {
    func testModuleLoads() {}
}
