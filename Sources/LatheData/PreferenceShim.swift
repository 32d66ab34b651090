import Foundation
// TEMPORARY until the preference data layer lands: string rows only.
public struct PreferenceReport: CustomStringConvertible { public var rows = 0; public var description: String { "\(rows) rows" } }
public struct PreferenceRenderer {
    let model: LanguageModel; let maxLength: Int?
    public init(model: LanguageModel, maxLength: Int?) { self.model = model; self.maxLength = maxLength }
    func ids(_ text: String) -> [Int] { model.tokenizer.encode(text, addSpecialTokens: false) }
}
public enum PreferenceDataset {
    public static func loadPairs(_ url: URL, renderer: PreferenceRenderer) throws -> (examples: [PreferenceExample], report: PreferenceReport) {
        let rows = try DatasetReader.read(url)
        let eos = renderer.model.tokenizer.eosTokenID.map { [$0] } ?? []
        let examples: [PreferenceExample] = rows.compactMap { row in
            guard case .preference(let p, let c, let r) = row.record else { return nil }
            return PreferenceExample(prompt: renderer.ids(p), chosen: renderer.ids(c) + eos, rejected: renderer.ids(r) + eos, source: "\(row.line.file):\(row.line.line)")
        }
        return (examples, PreferenceReport(rows: rows.count))
    }
    public static func loadUnpaired(_ url: URL, renderer: PreferenceRenderer) throws -> (examples: [UnpairedExample], report: PreferenceReport) {
        let rows = try DatasetReader.read(url)
        let eos = renderer.model.tokenizer.eosTokenID.map { [$0] } ?? []
        let examples: [UnpairedExample] = rows.compactMap { row in
            guard case .kto(let p, let c, let l) = row.record else { return nil }
            return UnpairedExample(prompt: renderer.ids(p), completion: renderer.ids(c) + eos, label: l, source: "\(row.line.file):\(row.line.line)")
        }
        return (examples, PreferenceReport(rows: rows.count))
    }
}
