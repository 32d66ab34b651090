import Foundation
import XCTest
import LatheData
import LatheFormats
import LatheModels
import LatheTestSupport
@testable import LatheTraining

/// The preference objectives against TRL 1.16.0 itself (scripts/reference/preference.py runs TRL's `_compute_loss`
/// / `get_batch_loss_metrics` on given log-probabilities, and a real DPOTrainer on SmolLM2 with a PEFT adapter).
final class TRLPreferenceReferenceTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("preference")

    func json(_ name: String) throws -> JSONValue { try JSONValue.parse(Data(contentsOf: Self.folder.appendingPathComponent(name))) }

    func matrix(_ value: JSONValue?) -> [[Double]] { value?.array?.map { $0.array?.compactMap(\.double) ?? [] } ?? [] }

    /// TRL's options from a case's `params`.
    func options(_ params: JSONValue?) -> PreferenceOptions {
        var o = PreferenceOptions()
        if let beta = params?["beta"]?.double { o.beta = beta }
        if let types = params?["loss_type"]?.array?.compactMap(\.string) { o.lossType = types.compactMap(DPOLossType.init) }
        if let weights = params?["loss_weights"]?.array?.compactMap(\.double) { o.lossWeights = weights }
        if let smoothing = params?["label_smoothing"]?.double { o.labelSmoothing = smoothing }
        if let gamma = params?["simpo_gamma"]?.double ?? params?["gamma"]?.double { o.gamma = gamma }
        if let alpha = params?["cpo_alpha"]?.double { o.cpoAlpha = alpha }
        if let w = params?["desirable_weight"]?.double { o.desirableWeight = w }
        if let w = params?["undesirable_weight"]?.double { o.undesirableWeight = w }
        return o
    }

    func testEveryObjectiveEqualsTRLOnGivenLogProbabilities() throws {
        let cases = try json("objectives.json")["cases"]?.array ?? []
        XCTAssertGreaterThanOrEqual(cases.count, 10)
        for c in cases {
            let name = c["name"]?.string ?? "?"
            guard let method = c["objective"]?.string.flatMap(PreferenceMethod.init) else { XCTFail("\(name): objective"); continue }
            let logps = matrix(c["logps"]), completion = matrix(c["completion_mask"]), nll = matrix(c["nll_mask"])
            let rows = logps.count, length = logps.first?.count ?? 0
            let items = method.isUnpaired ? rows : rows / 2
            var kinds: [TargetKind] = [], targets: [[Int]] = []
            for r in 0..<rows {
                var row: [Int] = []
                for t in 0..<length {
                    let kind: TargetKind = completion[r][t] == 1 ? .completion : (r < nll.count && nll[r][t] == 1 ? .prompt : .none)
                    kinds.append(kind)
                    row.append(kind == .none ? -1 : 0)
                }
                targets.append(row)
            }
            let sequences = Batch(rows: Array(repeating: Array(repeating: 0, count: length), count: rows), targets: targets)
            let labels = c["label"]?.array?.compactMap(\.bool)
            let batch = PreferenceBatch(sequences: sequences, kinds: kinds, items: items, completionsPerItem: method.isUnpaired ? 1 : 2,
                                        labels: labels, sources: Array(repeating: name, count: items))
            // KTO's mismatched rows enter as sums (no gradient flows through them).
            let klLogps = matrix(c["kl_logps"]), klMask = matrix(c["kl_completion_mask"])
            let klSums = zip(klLogps, klMask).map { zip($0, $1).reduce(0.0) { $0 + $1.0 * $1.1 } }
            let result = try PreferenceObjective(method: method, options: options(c["params"])).evaluate(ObjectiveInput(
                batch: batch, logProbabilities: logps.flatMap { $0.map(Float.init) },
                reference: c["ref_logps"]?.array?.compactMap(\.double),
                mismatchedPolicy: klSums.isEmpty ? nil : klSums,
                mismatchedReference: c["ref_kl_logps"]?.array?.compactMap(\.double)))
            let loss = c["loss"]?.double ?? .nan
            XCTAssertEqual(result.loss, loss, accuracy: 1e-5 * max(1, abs(loss)), "\(name): loss")
            let grad = matrix(c["grad"]).flatMap { $0 }
            for (i, (mine, theirs)) in zip(result.gradient, grad).enumerated() where kinds[i] != .none || theirs != 0 {
                XCTAssertEqual(Double(mine), theirs, accuracy: 1e-6 + 1e-5 * abs(theirs), "\(name): d loss/d logp at \(i)")
            }
            for (key, value) in c["metrics"]?.object ?? [:] {
                guard let value = value.double else { continue }
                XCTAssertEqual(result.metrics[key] ?? .nan, value, accuracy: 1e-5 * max(1, abs(value)), "\(name): \(key)")
            }
        }
    }

    /// Rows of ids (right-padded to one length with EOS, 2) and, per row, which tokens are completion tokens and which
    /// are real: the batch whose target at t is token t + 1, a completion target where that token is one, and (where
    /// `scoresPrompt` says, per row) a prompt target for the other real tokens.
    func batch(ids: [[Int]], real: [[Bool]], completion: [[Bool]], scoresPrompt: [Bool]) -> (Batch, [TargetKind]) {
        let length = ids.map(\.count).max() ?? 0
        func pad<T>(_ row: [T], _ value: T) -> [T] { row + Array(repeating: value, count: length - row.count) }
        let ids = ids.map { pad($0, 2) }, real = real.map { pad($0, false) }, completion = completion.map { pad($0, false) }
        var kinds: [TargetKind] = []
        let targets = ids.indices.map { r in
            (0..<length).map { t -> Int in
                let next = t + 1
                let kind: TargetKind = next < length && real[r][next] ? (completion[r][next] ? .completion : scoresPrompt[r] ? .prompt : .none) : .none
                kinds.append(kind)
                return kind == .none ? -1 : ids[r][next]
            }
        }
        return (Batch(rows: ids, targets: targets, valid: real), kinds)
    }

    /// Runs a TRL model-level fixture's batch on SmolLM2 (float32) with the fixture's PEFT LoRA (q/v, B non-zero),
    /// reference = adapter off; checks the loss, the metrics and the LoRA gradients the fixture holds.
    func assertEqualsTRL(_ fixtureName: String, method: PreferenceMethod, file: StaticString = #filePath, line: UInt = #line,
                         makeBatch: (JSONValue) -> PreferenceBatch) throws {
        let lm = try LanguageModel.load(try DefaultModelFile.url().path, weightFormat: .float32)
        try PEFTAdapter.load(Self.folder.appendingPathComponent("smollm2_lora"), into: lm.model)
        let parameters = lm.model.adapters.flatMap(\.parameters)
        for p in parameters { p.trainable = true; p.zeroGradient() }
        let fixture = try json("smollm2_\(fixtureName)_batch.json")
        let batch = makeBatch(fixture)
        let s = batch.sequences
        let activations = TrainingActivations(config: lm.model.config, batchSize: s.batchSize, length: s.length)
        let result = try PreferenceScorer(model: lm.model, reference: .adaptersOff)
            .lossAndGradient(PreferenceObjective(method: method, options: options(fixture["params"])), batch, scale: 1,
                             activations: activations)
        XCTAssertEqual(result.loss, fixture["loss"]?.double ?? .nan, accuracy: 2e-4 * max(1, abs(result.loss)),
                       "\(fixtureName): loss", file: file, line: line)
        for (key, value) in fixture["metrics"]?.object ?? [:] {
            guard let value = value.double, let mine = result.metrics[key] else { continue }  // entropy, logits/…: not computed
            XCTAssertEqual(mine, value, accuracy: 2e-3 * max(1, abs(value)), "\(fixtureName): \(key)", file: file, line: line)
        }
        let gradients = try SafetensorsFile(url: Self.folder.appendingPathComponent("smollm2_\(fixtureName).safetensors"))
        var worst = 0.0, checked = 0
        for p in parameters {
            guard let info = gradients.tensor(named: "grad:" + p.name) else { continue }  // ORPO, KTO: layers 0 and 29
            let theirs = try gradients.floats(of: info), mine = p.gradient!.array
            let norm = theirs.reduce(0.0) { $0 + Double($1 * $1) }.squareRoot()
            let difference = zip(mine, theirs).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }.squareRoot()
            worst = max(worst, difference / max(norm, 1e-12))
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 8, "\(fixtureName): gradients compared", file: file, line: line)
        XCTAssertLessThan(worst, 2e-3, "\(fixtureName): largest relative L2 error of a LoRA gradient", file: file, line: line)
    }

    func ints(_ value: JSONValue?) -> [[Int]] { matrix(value).map { $0.map { Int($0) } } }
    func flags(_ value: JSONValue?) -> [[Bool]] { matrix(value).map { $0.map { $0 == 1 } } }

    /// A real DPOTrainer (its collator: rows chosen then rejected, completion masks) on SmolLM2; all 120 gradients.
    func testDPOLossAndLoRAGradientsOnSmolLM2EqualTRLWithPEFT() throws {
        try assertEqualsTRL("dpo", method: .dpo) { f in
            let ids = ints(f["input_ids"])
            let (s, kinds) = batch(ids: ids, real: flags(f["attention_mask"]), completion: flags(f["completion_mask"]),
                                   scoresPrompt: ids.map { _ in false })
            return PreferenceBatch(sequences: s, kinds: kinds, items: ids.count / 2, completionsPerItem: 2, sources: ["dpo", "dpo"])
        }
    }

    /// A real ORPOTrainer: its own tokenization (BOS first), the NLL over the whole chosen rows.
    func testORPOLossAndLoRAGradientsOnSmolLM2EqualTRL() throws {
        try assertEqualsTRL("orpo", method: .orpo) { f in
            let ids = ints(f["chosen_input_ids"]) + ints(f["rejected_input_ids"])
            let labels = ints(f["chosen_labels"]) + ints(f["rejected_labels"])
            let items = ids.count / 2
            let (s, kinds) = batch(ids: ids, real: flags(f["chosen_attention_mask"]) + flags(f["rejected_attention_mask"]),
                                   completion: labels.map { $0.map { $0 != -100 } }, scoresPrompt: ids.indices.map { $0 < items })
            return PreferenceBatch(sequences: s, kinds: kinds, items: items, completionsPerItem: 2, sources: ["orpo", "orpo"])
        }
    }

    /// A real KTOTrainer: labelled rows, the KL estimate from its mismatched rows (prompt i, completion i − 1).
    func testKTOLossAndLoRAGradientsOnSmolLM2EqualTRL() throws {
        try assertEqualsTRL("kto", method: .kto) { f in
            let ids = ints(f["input_ids"]), kl = ints(f["KL_input_ids"])
            let (s, kinds) = batch(ids: ids, real: flags(f["attention_mask"]), completion: flags(f["completion_mask"]),
                                   scoresPrompt: ids.map { _ in false })
            let (mismatched, _) = batch(ids: kl, real: flags(f["KL_attention_mask"]), completion: flags(f["KL_completion_mask"]),
                                        scoresPrompt: kl.map { _ in false })
            return PreferenceBatch(sequences: s, kinds: kinds, items: ids.count, completionsPerItem: 1,
                                   labels: f["label"]?.array?.compactMap(\.bool), mismatched: mismatched,
                                   sources: ids.map { _ in "kto" })
        }
    }
}
