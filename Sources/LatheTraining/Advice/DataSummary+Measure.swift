import Foundation
import LatheData
import LatheModels

extension DataSummary {
    /// Rows rendered to check that answers end with a stop token (the first ones of the file).
    public static let eosCheckLimit = 1000
    /// The Jaccard similarity of word shingles at which two rows count as near-duplicates (`lathe data dedup --near`).
    public static let nearDuplicateThreshold = 0.8

    /// Measures `url` (and the held-out file `evalData`): its format and kind, rows, lengths in `model`'s tokens
    /// (the conversation rendered with its chat template), or characters ÷ `charactersPerToken` without a model;
    /// duplicates; held-out rows that repeat training rows; SFT answers that do not end with a stop token, rendered
    /// by the trainer's own `SFTRenderer`.
    public static func measure(_ url: URL, evalData: URL? = nil, model: LanguageModel?) throws -> DataSummary {
        for (flag, file) in [("--data", url), ("--eval-data", evalData)] {
            if let file, !FileManager.default.fileExists(atPath: file.path) {
                throw AdviceError(field: flag, problem: "\(file.path): no such file")
            }
        }
        let tokens: (String) -> Int
        if let model {
            tokens = { model.tokenizer.encode($0, addSpecialTokens: false).count }
        } else {
            tokens = { Int((Double($0.count) / charactersPerToken).rounded(.up)) }
        }
        let render: (([ChatMessage]) throws -> String)? = model.flatMap { lm in
            lm.chatTemplate == nil ? nil : { try lm.renderChat($0, addGenerationPrompt: false) }
        }
        let stats = try DatasetStatistics.compute(url, unit: model == nil ? "estimated tokens" : "tokens", measure: tokens,
                                                  renderConversation: render)
        guard let name = stats.format, let format = DatasetFormat(rawValue: name) else {
            throw AdviceError(field: "--data", problem: "\(url.path): no row is in a format Lathe trains on (text, prompt/completion, messages, Alpaca, ShareGPT, preference, KTO); see lathe data check \(url.path)")
        }
        let file = try DatasetFile.read(url)
        let options = DedupOptions(nearThreshold: nearDuplicateThreshold)
        let duplicates = try Deduplicator.deduplicate(file, options: options)
        var evalRows: Int?, overlap: Int?
        if let evalData {
            let held = try DatasetFile.read(evalData)
            evalRows = held.lines.count
            overlap = try Deduplicator.deduplicate(held, against: [file], options: options).againstDuplicates
        }
        let kind = DataKind(format)
        var missing: Int?, checked = 0
        if let model, kind == .sft || kind == .rawText {
            // Long enough that no answer is cut before its end (a cut answer has no stop token by construction).
            let renderer = SFTRenderer(model: model, options: try SFTOptions(maxLength: 1 << 20))
            let rows = try DatasetReader.read(url, format: format).prefix(eosCheckLimit)
            var count = 0
            for row in rows {
                // Rows the renderer skips (nothing supervised) are counted by `lathe data check`, not here.
                guard let preview = try? SFTPreview.make(rows: [row], renderer: renderer).first else { continue }
                checked += 1
                if !preview.answersEndWithEOS { count += 1 }
            }
            missing = count
        }
        return DataSummary(file: url.path, kind: kind, format: format.rawValue, rows: stats.rows, invalidRows: stats.invalidRows,
                           lengths: stats.total, totalTokens: stats.total?.sum ?? 0, tokenized: model != nil,
                           exactDuplicates: duplicates.exactDuplicates, nearDuplicates: duplicates.nearDuplicates,
                           evalRows: evalRows, evalOverlap: overlap, rowsWithoutStopToken: missing, eosCheckedRows: checked)
    }
}
