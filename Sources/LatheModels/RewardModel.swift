import Foundation
import LatheTensors

/// A reward model that shares the base: a PEFT SEQ_CLS adapter (LoRA + the `score` head, as `lathe reward` and
/// PEFT write it) attached to an existing model under its own adapter name, frozen, and switched on only while it
/// scores, so that the policy (and the reference: every adapter off) keep using the same base weights.
public final class RewardModel {
    public let model: DecoderModel
    public let adapterName: String
    public let head: ScoreHead

    /// Attaches the RM adapter folder (PEFT SEQ_CLS LoRA + modules_to_save score) to `model` under `adapterName`, frozen, off by default.
    public init(adapter folder: URL, on model: DecoderModel, adapterName: String = "reward") throws {
        guard !model.adapters.contains(where: { $0.adapterName == adapterName }) else {
            throw ModelError.invalidInput("the model already has an adapter named '\(adapterName)'")
        }
        self.model = model
        self.adapterName = adapterName
        head = ScoreHead(hiddenSize: model.config.hiddenSize, name: "score.weight")
        try PEFTAdapter.load(folder, into: model, adapterName: adapterName, heads: [head.weight])
        model.setAdapters(enabled: false, named: adapterName)
    }

    /// The score of each sequence (read at its last token that is not `padTokenID`, transformers' rule), with only
    /// this adapter switched on; restores every adapter switch afterwards. `rowsPerPass` rows go through the model at
    /// a time: a pass's buffers grow with its rows, so a rollout batch is scored a few at a time.
    public func scores(_ sequences: [[Int]], padTokenID: Int?, rowsPerPass: Int = 8) throws -> [Float] {
        try stride(from: 0, to: sequences.count, by: max(1, rowsPerPass)).flatMap { start in
            try scoresInOnePass(Array(sequences[start..<min(start + max(1, rowsPerPass), sequences.count)]), padTokenID: padTokenID)
        }
    }

    private func scoresInOnePass(_ sequences: [[Int]], padTokenID: Int?) throws -> [Float] {
        guard sequences.allSatisfy({ !$0.isEmpty }) else { throw ModelError.invalidInput("a sequence to score has no tokens") }
        let length = sequences.map(\.count).max() ?? 0
        // Right-padded, the padding masked: the rows do not see it, and it is never the scored position.
        let tokens = sequences.flatMap { $0 + Array(repeating: 0, count: length - $0.count) }
        let valid = sequences.flatMap { s in (0..<length).map { $0 < s.count } }
        let rows = sequences.indices.map { $0 * length + ScoreHead.scoredPosition(of: sequences[$0], padTokenID: padTokenID) }
        return try model.withAdapters(where: { $0.adapterName == adapterName }) {
            let hidden = try model.finalHiddenStates(tokens: tokens, batchSize: sequences.count, valid: valid)
            return head.scores(hidden, rows: rows)
        }
    }
}
