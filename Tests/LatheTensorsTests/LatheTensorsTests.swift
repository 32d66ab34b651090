import XCTest
@testable import LatheTensors

final class LatheTensorsSmokeTests: XCTestCase {
    func testModuleLoads() {}
}
