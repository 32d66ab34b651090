import Foundation
import XCTest
@testable import LatheTraining

/// Learning-rate schedules against transformers (scripts/reference/optim.py), and decoding of the schedule and
/// optimizer configurations.
final class ScheduleAndConfigurationTests: XCTestCase {
    /// Every step of a 20-step run with 5 warmup steps, compared with transformers' rate rounded to Float:
    /// tolerance one Float ulp (rtol 1.2e-7), since a libm cosine may differ in its last Double bit between systems.
    func testSchedulesEqualTransformersAtEveryStep() throws {
        let fixture = try Fixtures.decode(ScheduleFixture.self, from: "schedules.json")
        let cases: [(String, LearningRateSchedule, [Double])] = [
            ("constant", try LearningRateSchedule(kind: .constant, peakRate: fixture.peakRate, warmupSteps: fixture.warmupSteps,
                                                  totalSteps: fixture.totalSteps), fixture.constant),
            ("linear", try LearningRateSchedule(kind: .linear, peakRate: fixture.peakRate, warmupSteps: fixture.warmupSteps,
                                                totalSteps: fixture.totalSteps), fixture.linear),
            ("cosine", try LearningRateSchedule(kind: .cosine, peakRate: fixture.peakRate, warmupSteps: fixture.warmupSteps,
                                                totalSteps: fixture.totalSteps), fixture.cosine),
            ("cosine minimum", try LearningRateSchedule(kind: .cosine, peakRate: fixture.peakRate, warmupSteps: fixture.warmupSteps,
                                                        totalSteps: fixture.totalSteps, minimumRate: fixture.minimumRate),
             fixture.cosineMinimum),
        ]
        for (name, schedule, expected) in cases {
            XCTAssertEqual(expected.count, fixture.totalSteps, name)
            let actual = (0..<expected.count).map { schedule.rate(at: $0) }
            let largest = assertClose(actual, expected.map { Float($0) }, relative: 1.2e-7, absolute: 0, name)
            print("\(name) schedule: largest difference from transformers \(largest)")
        }
        XCTAssertEqual(fixture.constant[0], 0, "warmup starts from 0")
    }

    func testScheduleValidationNamesTheField() {
        func subject(_ make: () throws -> LearningRateSchedule) -> String? {
            do { _ = try make(); return nil } catch { return (error as? OptimizerError)?.subject }
        }
        XCTAssertEqual(subject { try LearningRateSchedule(kind: .linear, peakRate: 1e-3, warmupSteps: 11, totalSteps: 10) }, "warmupSteps")
        XCTAssertEqual(subject { try LearningRateSchedule(kind: .linear, peakRate: 1e-3, warmupSteps: -1, totalSteps: 10) }, "warmupSteps")
        XCTAssertEqual(subject { try LearningRateSchedule(kind: .cosine, peakRate: 1e-3, warmupSteps: 0, totalSteps: 0) }, "totalSteps")
        XCTAssertEqual(subject { try LearningRateSchedule(kind: .cosine, peakRate: -1, warmupSteps: 0, totalSteps: 5) }, "peakRate")
        XCTAssertEqual(subject { try LearningRateSchedule(kind: .linear, peakRate: 1, warmupSteps: 0, totalSteps: 5, minimumRate: 0.1) }, "minimumRate")
        XCTAssertEqual(subject { try LearningRateSchedule(kind: .cosine, peakRate: 1, warmupSteps: 0, totalSteps: 5, minimumRate: 2) }, "minimumRate")
        XCTAssertNil(subject { try LearningRateSchedule(kind: .constant, peakRate: 1, warmupSteps: 10, totalSteps: 10) })
    }

    func testScheduleDecodesAndRoundTrips() throws {
        let json = #"{"kind": "cosine", "peakRate": 0.0003, "warmupSteps": 5, "totalSteps": 20, "minimumRate": 0.00003}"#
        let schedule = try JSONDecoder().decode(LearningRateSchedule.self, from: Data(json.utf8))
        XCTAssertEqual(schedule, try LearningRateSchedule(kind: .cosine, peakRate: 3e-4, warmupSteps: 5, totalSteps: 20, minimumRate: 3e-5))
        let again = try JSONDecoder().decode(LearningRateSchedule.self, from: JSONEncoder().encode(schedule))
        XCTAssertEqual(again, schedule)
    }

    /// Decoding `json` fails with an error whose text names `field`.
    private func assertDecodingFails<T: Decodable>(_ type: T.Type, _ json: String, naming field: String,
                                                   file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try JSONDecoder().decode(T.self, from: Data(json.utf8)), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(field), "error should name \(field): \(error)", file: file, line: line)
        }
    }

    func testDecodingErrorsNameTheField() {
        assertDecodingFails(LearningRateSchedule.self, #"{"kind": "linear", "peakRate": 1, "warmupSteps": 30, "totalSteps": 20}"#,
                            naming: "warmupSteps")
        assertDecodingFails(LearningRateSchedule.self, #"{"kind": "linear", "peakRate": 1, "warmupStep": 3, "totalSteps": 20}"#,
                            naming: "warmupStep")
        assertDecodingFails(LearningRateSchedule.self, #"{"kind": "exponential", "peakRate": 1, "warmupSteps": 3, "totalSteps": 20}"#,
                            naming: "kind")
        assertDecodingFails(OptimizerConfiguration.self, #"{"kind": "adamw", "momentum": 0.9}"#, naming: "momentum")
        assertDecodingFails(OptimizerConfiguration.self, #"{"kind": "sgd", "beta1": 0.9}"#, naming: "beta1")
        assertDecodingFails(OptimizerConfiguration.self, #"{"kind": "adamw", "beta2": 1.5}"#, naming: "beta2")
        assertDecodingFails(OptimizerConfiguration.self, #"{"kind": "adamw", "weight_decay": 0.1}"#, naming: "weight_decay")
    }

    func testConfigurationBuildsTheOptimizerWithTorchDefaults() throws {
        let adamw = try JSONDecoder().decode(OptimizerConfiguration.self, from: Data(#"{"kind": "adamw"}"#.utf8)).make()
        let adam = try XCTUnwrap(adamw as? AdamW)
        XCTAssertEqual([adam.beta1, adam.beta2, adam.epsilon, adam.weightDecay], [0.9, 0.999, 1e-8, 0.01])
        XCTAssertFalse(adam.amsgrad)

        let sgdJSON = #"{"kind": "sgd", "momentum": 0.9, "nesterov": true, "weightDecay": 0.001}"#
        let sgd = try XCTUnwrap(try JSONDecoder().decode(OptimizerConfiguration.self, from: Data(sgdJSON.utf8)).make() as? SGD)
        XCTAssertEqual([sgd.momentum, sgd.dampening, sgd.weightDecay], [0.9, 0, 0.001])
        XCTAssertTrue(sgd.nesterov)

        // An optimizer's configuration rebuilds an identical optimizer.
        XCTAssertEqual(try sgd.configuration.make().configuration, sgd.configuration)
        XCTAssertEqual(try adam.configuration.make().configuration, adam.configuration)
    }
}
