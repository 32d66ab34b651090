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

    /// A real DPOTrainer step on SmolLM2 (float32) with a PEFT LoRA on q/v whose B is non-zero, reference = adapter off.
    func testDPOLossAndLoRAGradientsOnSmolLM2EqualTRLWithPEFT() throws {
        let lm = try LanguageModel.load(try DefaultModelFile.url().path, weightFormat: .float32)
        try PEFTAdapter.load(Self.folder.appendingPathComponent("smollm2_lora"), into: lm.model)
        let parameters = lm.model.adapters.flatMap(\.parameters)
        for p in parameters { p.trainable = true; p.zeroGradient() }
        let fixture = try json("smollm2_dpo_batch.json")
        let ids = matrix(fixture["input_ids"]).map { $0.map { Int($0) } }
        let attention = matrix(fixture["attention_mask"]), completion = matrix(fixture["completion_mask"])
        let length = ids[0].count
        // The prediction at t is of token t + 1, in the loss where that token is a completion token.
        let targets = ids.indices.map { r in (0..<length).map { t in t + 1 < length && completion[r][t + 1] == 1 ? ids[r][t + 1] : -1 } }
        let sequences = Batch(rows: ids, targets: targets, valid: attention.map { $0.map { $0 == 1 } })
        let batch = PreferenceBatch(sequences: sequences, kinds: sequences.targets.map { $0 >= 0 ? .completion : .none },
                                    items: ids.count / 2, completionsPerItem: 2, sources: ["fixture", "fixture"])
        let activations = TrainingActivations(config: lm.model.config, batchSize: ids.count, length: length)
        let objective = PreferenceObjective(method: .dpo, options: options(fixture["params"]))
        let result = try PreferenceScorer(model: lm.model, reference: .adaptersOff)
            .lossAndGradient(objective, batch, scale: 1, activations: activations)
        let loss = fixture["loss"]?.double ?? .nan
        XCTAssertEqual(result.loss, loss, accuracy: 1e-4, "loss")
        for key in ["rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"] {
            let value = fixture["metrics"]?[key]?.double ?? .nan
            XCTAssertEqual(result.metrics[key] ?? .nan, value, accuracy: 2e-3 * max(1, abs(value)), key)
        }
        let gradients = try SafetensorsFile(url: Self.folder.appendingPathComponent("smollm2_dpo.safetensors"))
        var worst = 0.0, checked = 0
        for p in parameters {
            guard let info = gradients.tensor(named: "grad:" + p.name) else { XCTFail("no gradient for \(p.name)"); continue }
            let theirs = try gradients.floats(of: info), mine = p.gradient!.array
            let norm = theirs.reduce(0.0) { $0 + Double($1 * $1) }.squareRoot()
            let difference = zip(mine, theirs).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }.squareRoot()
            worst = max(worst, difference / max(norm, 1e-12))
            checked += 1
        }
        XCTAssertEqual(checked, 120)
        XCTAssertLessThan(worst, 2e-3, "largest relative L2 error of a LoRA gradient")
    }
}
