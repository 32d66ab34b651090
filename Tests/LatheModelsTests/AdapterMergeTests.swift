import Foundation
import XCTest
import LatheFormats
@testable import LatheModels
import LatheTestSupport

/// `lathe adapter merge`: PEFT's add_weighted_adapter formulas (scripts/reference/adapters.py), and what the merged
/// adapters do to the model.
final class AdapterMergeTests: XCTestCase {
    let first = fixtures.appendingPathComponent("training/peft-tiny-llama")  // r 4, alpha 8, q/v/down
    let second = fixtures.appendingPathComponent("adapters/second-tiny-llama")  // r 4, alpha 3, q/v/down
    let ids = [3, 14, 15, 92, 65, 35, 89, 7]

    func named(_ url: URL) throws -> NamedLoRAWeights { NamedLoRAWeights(name: url.path, weights: try LoRAWeights(peftFolder: url)) }

    /// The tiny Llama with each adapter folder attached under its own name (all switched on), and its logits.
    func logits(_ folders: [URL]) throws -> [Float] {
        let model = try ModelFiles.open(fixtures.appendingPathComponent("models/tiny-llama")).loadModel()
        for (i, folder) in folders.enumerated() { try PEFTAdapter.load(folder, into: model, adapterName: "adapter\(i)") }
        return try model.forward(tokens: ids).array
    }

    func write(_ weights: LoRAWeights) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-merge-\(UUID().uuidString)")
        try weights.writePEFT(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func assertUpdates(_ merged: LoRAWeights, equal expected: (String) throws -> [Float], relative: Float, _ what: String,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        for module in merged.moduleNames {
            let want = try expected(module), got = try XCTUnwrap(merged.delta(of: module))
            let scale = want.map(abs).max() ?? 0
            let (worst, index) = largestDifference(got, want)
            XCTAssertLessThanOrEqual(worst, relative * scale, "\(what): \(module) differs by \(worst) at \(index) (largest value \(scale))",
                                     file: file, line: line)
        }
    }

    func testOneAdapterWithWeightOneGivesItBack() throws {
        let adapter = try named(first)
        let direct = try logits([first])
        for method in LoRAMergeMethod.allCases {
            let merged = try LoRAWeights.merge([adapter], weights: [1], method: method)
            XCTAssertEqual(merged.config.rank, 4, "\(method)")
            XCTAssertEqual(merged.config.scale, 1, "\(method)")
            try assertUpdates(merged, equal: { adapter.weights.delta(of: $0)! }, relative: 1e-5, "\(method)")
            let (worst, index) = largestDifference(try logits([try write(merged)]), direct)
            XCTAssertLessThanOrEqual(worst, 1e-5, "\(method): logits differ by \(worst) at \(index)")
        }
    }

    func testCatOfTwoAdaptersIsApplyingBoth() throws {
        let merged = try LoRAWeights.merge([try named(first), try named(second)], weights: [1, 1], method: .cat)
        XCTAssertEqual(merged.config.rank, 8)
        let both = try logits([first, second])
        XCTAssertGreaterThan(largestDifference(both, try logits([first])).0, 1e-2, "the second adapter must move the logits")
        let (worst, index) = largestDifference(try logits([try write(merged)]), both)
        XCTAssertLessThanOrEqual(worst, 1e-5, "cat against both attached: \(worst) at \(index)")
    }

    func testMergesAgreeWithPEFTsFormulas() throws {
        let reference = try SafetensorsFile(url: fixtures.appendingPathComponent("adapters/merges.safetensors"))
        let adapters = [try named(first), try named(second)], weights: [Float] = [0.7, -0.4]
        let cat = try LoRAWeights.merge(adapters, weights: weights, method: .cat)
        for (method, rank, key, expectedRank) in [(LoRAMergeMethod.cat, nil, "cat", 8), (.linear, nil, "linear", 4),
                                                   (.svd, nil, "svd4", 4), (.svd, 8, "svd8", 8)] as [(LoRAMergeMethod, Int?, String, Int)] {
            let merged = try LoRAWeights.merge(adapters, weights: weights, method: method, rank: rank)
            XCTAssertEqual(merged.config.rank, expectedRank, key)
            try assertUpdates(merged, equal: { try reference.floats(named: "\(key).\($0)") }, relative: 1e-5, key)
            if key == "svd8" { try assertUpdates(merged, equal: { cat.delta(of: $0)! }, relative: 1e-5, "svd at full rank against cat") }
        }
        // linear is not the weighted sum: its cross terms are what it adds on top.
        let linear = try LoRAWeights.merge(adapters, weights: weights, method: .linear)
        let module = "model.layers.0.self_attn.q_proj"
        XCTAssertGreaterThan(largestDifference(linear.delta(of: module)!, cat.delta(of: module)!).0, 1e-2)
    }

    func testMismatchedAdaptersAreNamed() throws {
        let adapter = try named(first)
        let everyLinear = try named(fixtures.appendingPathComponent("adapters/rslora-tiny-llama"))
        XCTAssertThrowsError(try LoRAWeights.merge([adapter, everyLinear], weights: [1, 1], method: .cat)) {
            XCTAssertTrue("\($0)".contains("rslora-tiny-llama") && "\($0)".contains("target_modules"), "\($0)")
        }
        let rank8 = NamedLoRAWeights(name: "rank8", weights: try LoRAWeights.merge([adapter, try named(second)], weights: [1, 1], method: .cat))
        XCTAssertThrowsError(try LoRAWeights.merge([adapter, rank8], weights: [1, 1], method: .linear)) {
            XCTAssertTrue("\($0)".contains("rank8") && "\($0)".contains("'r'"), "\($0)")
        }
        var otherBase = try LoRAWeights(peftFolder: second)
        otherBase.baseModel = "another-model"
        XCTAssertThrowsError(try LoRAWeights.merge([adapter, NamedLoRAWeights(name: "other", weights: otherBase)], weights: [1, 1],
                                                   method: .svd)) {
            XCTAssertTrue("\($0)".contains("other") && "\($0)".contains("base_model_name_or_path"), "\($0)")
        }
        XCTAssertThrowsError(try LoRAWeights.merge([adapter], weights: [1, 2], method: .cat)) { XCTAssertTrue("\($0)".contains("weight"), "\($0)") }
    }
}
