import Foundation
import XCTest
import LatheTestSupport
@testable import LatheModels

/// A PEFT SEQ_CLS adapter written by PEFT 0.21.2 on tiny-llama (scripts/reference/reward.py) scores as
/// transformers + PEFT score it, switched on only while scoring; Lathe's save of it loads back alike.
final class RewardModelTests: XCTestCase {
    let folder = fixtures.appendingPathComponent("reward")

    func testPEFTsRewardAdapterGivesTransformersScores() throws {
        let model = try ModelFiles.open(fixtures.appendingPathComponent("models/tiny-llama")).loadModel()
        let other = try model.attachLoRA(LoRAConfiguration(rank: 2, targets: ["q_proj"]), name: "policy", seed: 1)
        let reward = try RewardModel(adapter: folder.appendingPathComponent("tiny_rm"), on: model)
        XCTAssertFalse(model.adapters.filter { $0.adapterName == "reward" }.contains { $0.enabled }, "off by default")
        XCTAssertTrue(model.adapters.filter { $0.adapterName == "reward" }.allSatisfy { $0.parameters.allSatisfy { !$0.trainable } })
        let expected = try JSONValue.parse(Data(contentsOf: folder.appendingPathComponent("tiny_rm_scores.json")))
        let sequences = expected["sequences"]?.array?.map { $0.array?.compactMap(\.int) ?? [] } ?? []
        let scores = try reward.scores(sequences, padTokenID: expected["pad_token_id"]?.int)
        let reference = expected["scores"]?.array?.compactMap(\.double) ?? []
        XCTAssertEqual(scores.count, 4)
        for (lathe, peft) in zip(scores, reference) { XCTAssertEqual(Double(lathe), peft, accuracy: 1e-4) }
        XCTAssertTrue(other.allSatisfy(\.enabled), "the other adapter's switch is restored")
        XCTAssertFalse(model.adapters.filter { $0.adapterName == "reward" }.contains { $0.enabled })
        // The last sequence ends on the pad id: its score is read one token earlier, as transformers reads it.
        XCTAssertEqual(ScoreHead.scoredPosition(of: sequences[3], padTokenID: 0), 2)
        XCTAssertNotEqual(try reward.scores([sequences[3]], padTokenID: nil)[0], scores[3])

        // Lathe's save of it loads back with the same scores.
        let saved = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-rm-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: saved) }
        let shape = LoRAConfiguration(rank: 4, alpha: 8, targets: ["q_proj", "v_proj"])
        try PEFTAdapter.save(model, adapterName: "reward", config: shape, heads: [reward.head.weight], baseModel: "tiny-llama", to: saved)
        let fresh = try ModelFiles.open(fixtures.appendingPathComponent("models/tiny-llama")).loadModel()
        XCTAssertEqual(try RewardModel(adapter: saved, on: fresh, adapterName: "rm").scores(sequences, padTokenID: 0), scores)
        // A plain adapter load refuses the head rather than dropping it.
        XCTAssertThrowsError(try PEFTAdapter.load(saved, into: fresh))
    }

    func testAnAdapterWithoutAScoreHeadIsRefusedBeforeAnythingIsAttached() throws {
        let model = try ModelFiles.open(fixtures.appendingPathComponent("models/tiny-llama")).loadModel()
        try model.attachLoRA(LoRAConfiguration(rank: 2, targets: ["q_proj"]), seed: 1)
        let plain = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-lora-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: plain) }
        try PEFTAdapter.save(model, config: LoRAConfiguration(rank: 2, targets: ["q_proj"]), baseModel: "tiny-llama", to: plain)
        XCTAssertThrowsError(try RewardModel(adapter: plain, on: model)) { XCTAssertTrue("\($0)".contains("score.weight"), "\($0)") }
        XCTAssertEqual(Set(model.adapters.map(\.adapterName)), ["default"])
    }
}
