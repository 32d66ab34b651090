import XCTest
@testable import LatheCLI

final class LatheCLISmokeTests: XCTestCase {
    func testModuleLoads() {}
}
