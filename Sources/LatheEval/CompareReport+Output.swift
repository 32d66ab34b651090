import Foundation
import LatheFormats
import LatheModels

extension ComparisonReport {
    /// One object: each metric as `{base, tuned, delta, ci_low, ci_high}`, plus `count` and `settings`.
    public var json: JSONValue {
        var object: [String: JSONValue] = ["count": .number(Double(examples.count))]
        for metric in metrics {
            object[metric.name] = .object([
                "base": .number(metric.base), "tuned": .number(metric.tuned), "delta": .number(metric.delta),
                "ci_low": .number(metric.interval.lower), "ci_high": .number(metric.interval.upper)])
        }
        object["settings"] = .object([
            "max_tokens": .number(Double(settings.maxTokens)), "batch_size": .number(Double(settings.batchSize)),
            "seed": .number(Double(settings.sampling.seed)), "temperature": .number(Double(settings.sampling.temperature)),
            "resamples": .number(Double(settings.bootstrap.resamples)), "confidence": .number(settings.bootstrap.level)])
        return .object(object)
    }

    /// The side-by-side table as aligned text lines: metric, base, tuned, delta, interval of the delta.
    public var tableLines: [String] {
        let level = Int((settings.bootstrap.level * 100).rounded())
        var rows = [["metric", "base", "tuned", "delta", "\(level)% interval of delta"]]
        for metric in metrics {
            rows.append([metric.name, Self.format(metric.base), Self.format(metric.tuned), Self.format(metric.delta, signed: true),
                         "\(Self.format(metric.interval.lower, signed: true)) … \(Self.format(metric.interval.upper, signed: true))"])
        }
        rows.append(["count", "\(examples.count)", "", "", ""])
        let widths = (0..<5).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                let pad = String(repeating: " ", count: widths[column] - cell.count)
                return column == 0 || column == 4 ? cell + pad : pad + cell
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
    }

    /// A self-contained HTML page: the table, then every example with its prompt, reference, both answers and
    /// their F1. Every piece of text is escaped.
    public var html: String {
        let level = Int((settings.bootstrap.level * 100).rounded())
        var page = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>Lathe: base versus tuned</title>
            <style>
            body { font-family: system-ui, sans-serif; margin: 2em; }
            table { border-collapse: collapse; margin-bottom: 2em; }
            th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; text-align: left; }
            td.number { text-align: right; font-variant-numeric: tabular-nums; }
            td.text { white-space: pre-wrap; max-width: 30em; }
            .better { background: #e6f4e6; } .worse { background: #fbe9e9; }
            </style></head><body>
            <h1>Base versus tuned</h1>
            <p>\(examples.count) examples; greedy or sampled with seed \(settings.sampling.seed) (temperature \(settings.sampling.temperature)), \
            at most \(settings.maxTokens) tokens; \(level)% bootstrap intervals of the paired difference over \(settings.bootstrap.resamples) resamples.</p>
            <table id="metrics"><tr><th>metric</th><th>base</th><th>tuned</th><th>delta</th><th>\(level)% interval of delta</th></tr>

            """
        for metric in metrics {
            page += "<tr><td>\(Self.escape(metric.name))</td><td class=\"number\">\(Self.format(metric.base))</td>"
                + "<td class=\"number\">\(Self.format(metric.tuned))</td><td class=\"number\">\(Self.format(metric.delta, signed: true))</td>"
                + "<td class=\"number\">\(Self.format(metric.interval.lower, signed: true)) … \(Self.format(metric.interval.upper, signed: true))</td></tr>\n"
        }
        page += """
            </table>
            <h2>Examples</h2>
            <table id="examples"><tr><th>#</th><th>source</th><th>prompt</th><th>reference</th><th>base answer</th><th>base F1</th>\
            <th>tuned answer</th><th>tuned F1</th></tr>

            """
        for (i, example) in examples.enumerated() {
            let baseF1 = base.scores.examples[i].f1, tunedF1 = tuned.scores.examples[i].f1
            let change = tunedF1 > baseF1 ? " class=\"better\"" : tunedF1 < baseF1 ? " class=\"worse\"" : ""
            page += "<tr\(change)><td class=\"number\">\(i + 1)</td><td>\(Self.escape(example.source))</td>"
                + "<td class=\"text\">\(Self.escape(example.promptText))</td>"
                + "<td class=\"text\">\(Self.escape(example.references.joined(separator: "\n— or —\n")))</td>"
                + "<td class=\"text\">\(Self.escape(base.answers[i]))</td><td class=\"number\">\(Self.format(baseF1))</td>"
                + "<td class=\"text\">\(Self.escape(tuned.answers[i]))</td><td class=\"number\">\(Self.format(tunedF1))</td></tr>\n"
        }
        page += "</table>\n</body></html>\n"
        return page
    }

    /// Writes `html` to `url` atomically.
    public func writeHTML(to url: URL) throws {
        try AtomicFileWriter.write(Data(html.utf8), to: url)
    }

    /// Text made safe inside HTML elements and attribute values.
    public static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    static func format(_ value: Double, signed: Bool = false) -> String {
        String(format: signed ? "%+.4f" : "%.4f", value)
    }
}
