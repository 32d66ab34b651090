#if canImport(CLatheDNNL) && os(Linux)
import Foundation
import XCTest
import LatheTensors

/// oneDNN reads `ONEDNN_MAX_CPU_ISA` once per process, so the bf16 paths of the CPUs below this one (AMX →
/// AVX512-BF16 → emulated bf16 on plain AVX-512) run in child processes: this test bundle again, filtered to the
/// bf16 tests, under each lower cap. One machine with AMX so runs all three paths; one without bf16 has none below.
final class BF16ISATests: XCTestCase {
    /// The tests that hold the bf16 products against their references.
    static let bf16Tests = [
        "LatheTensorsTests.BF16MatmulTests",
        "LatheTensorsTests.CompactWeightTests",
        "LatheModelsTests.BackwardTests/testNativeBF16ProductsComputeWhatRoundedInputsAndWeightsCompute",
        "LatheModelsTests.BackwardTests/testBF16BaseComputesWhatTheRoundedFloatModelComputes",
        "LatheModelsTests.BackwardTests/testAutoIsFloat32ExceptTrainingWhereBF16ProductsAreFaster",
    ]

    func testBF16TestsPassUnderEveryLowerISA() throws {
        guard ProcessInfo.processInfo.environment["ONEDNN_MAX_CPU_ISA"] == nil else {
            throw XCTSkip("already a child under a cap")
        }
        let caps: [String]
        switch BF16Products.current.instructions {
        case .amx: caps = ["AVX512_CORE_BF16", "AVX512_CORE"]
        case .avx512BF16: caps = ["AVX512_CORE"]
        case .none: throw XCTSkip("this CPU has no bf16 instructions: emulated bf16 is the path the suite itself ran")
        }
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0])
        for cap in caps {
            let process = Process()
            process.executableURL = bundle
            process.arguments = [Self.bf16Tests.joined(separator: ",")]
            var environment = ProcessInfo.processInfo.environment
            environment["ONEDNN_MAX_CPU_ISA"] = cap
            process.environment = environment
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            let executed = text.split(separator: "\n").last { $0.contains("Executed") } ?? "no summary"
            XCTAssertEqual(process.terminationStatus, 0, "bf16 tests under ONEDNN_MAX_CPU_ISA=\(cap) failed:\n"
                           + text.split(separator: "\n").filter { $0.contains("error") }.joined(separator: "\n"))
            // The filter must have found the tests: a child that ran nothing proves nothing.
            XCTAssertTrue(executed.contains("with 0 failures") && !executed.contains("Executed 0 tests"),
                          "ONEDNN_MAX_CPU_ISA=\(cap): \(executed)")
            print("ONEDNN_MAX_CPU_ISA=\(cap): \(executed.trimmingCharacters(in: .whitespaces))")
        }
    }
}
#endif
