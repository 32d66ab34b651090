import Foundation

// WAITING FOR THE REWARD BRANCH. A stand-in with the RLHF contract's API (plus `head`, as branch `reward` has it),
// so that the ppo branch builds before `reward` is on main. When merging `reward`, take its
// Sources/LatheModels/RewardModel.swift and drop this file. Until then `lathe ppo` stops at loading --reward-model.

/// A reward model that shares the base: a PEFT SEQ_CLS adapter (LoRA + the `score` head) attached to the model.
public final class RewardModel {
    public let head: ScoreHead

    /// Attaches the RM adapter folder (PEFT SEQ_CLS LoRA + modules_to_save score) to `model` under `adapterName`, frozen, off by default.
    public init(adapter folder: URL, on model: LlamaModel, adapterName: String = "reward") throws {
        throw ModelError.invalidInput("\(folder.path): reward models load with the reward branch, which is not merged yet")
    }

    /// The score of each sequence (read at its last token that is not `padTokenID`), with only this adapter on.
    public func scores(_ sequences: [[Int]], padTokenID: Int?) throws -> [Float] {
        throw ModelError.invalidInput("reward models score with the reward branch, which is not merged yet")
    }
}
