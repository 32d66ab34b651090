import ArgumentParser
import Foundation
import LatheData
import LatheEval
import LatheModels

/// `lathe eval`: measures answers and models.
public struct EvalCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Evaluate generated answers (metrics) or a model on multiple-choice questions (choice).",
        subcommands: [EvalMetricsCommand.self, EvalChoiceCommand.self, EvalPerplexityCommand.self, EvalCompareCommand.self,
                      EvalJudgeCommand.self, EvalPreferenceCommand.self],
        // `lathe eval --model M --adapter A --baseline --input F` is the comparison.
        defaultSubcommand: EvalCompareCommand.self)
    public init() {}
}

/// `--resamples`, `--confidence` and `--seed` of the bootstrap intervals.
public struct BootstrapFlags: ParsableArguments {
    @Option(help: "Bootstrap resamples for confidence intervals.") public var resamples: Int = 1000
    @Option(help: "Confidence level of the intervals, between 0 and 1.") public var confidence: Double = 0.95
    @Option(help: "Random seed (bootstrap resampling and few-shot draws).") public var seed: UInt64 = 0
    public init() {}

    public func validate() throws {
        guard resamples >= 1 else { throw ValidationError("--resamples must be at least 1, got \(resamples)") }
        guard confidence > 0, confidence < 1 else { throw ValidationError("--confidence must be between 0 and 1, got \(confidence)") }
    }

    var bootstrap: Bootstrap { Bootstrap(resamples: resamples, level: confidence, seed: seed) }
}

/// `lathe eval metrics`: exact match, F1, BLEU and ROUGE of predictions against references.
public struct EvalMetricsCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Score predictions against references: exact match, token F1, BLEU, ROUGE-1/2/L.",
        discussion: """
            Each input line is {"prediction": "...", "reference": "..." or ["...", ...]}, optionally with a "schema" \
            (JSON Schema subset) the prediction must follow. Exact match and F1 use SQuAD v1.1's answer normalisation \
            (lowercase, drop punctuation and the articles a/an/the, collapse whitespace) and the best reference; BLEU is \
            sacrebleu's corpus BLEU (13a tokens, 0-100); ROUGE is rouge-score's F-measure (no stemming), best reference, \
            averaged over pairs. With --json, one JSON object with exactly exact_match, f1, bleu, rouge1, rouge2, rougeL \
            and count (plus json_valid/schema_match and regex_match when a schema or --regex is given).
            """)
    @Option(help: "A JSONL file of {\"prediction\", \"reference\"} lines.") public var input: String
    @Flag(help: "Print one JSON object instead of a table.") public var json = false
    @Flag(name: .customLong("keep-case"), help: "Exact match and F1: do not lowercase.") public var keepCase = false
    @Flag(name: .customLong("keep-punctuation"), help: "Exact match and F1: do not remove punctuation.") public var keepPunctuation = false
    @Flag(name: .customLong("keep-articles"), help: "Exact match and F1: do not remove a/an/the.") public var keepArticles = false
    @Option(help: "A JSON Schema file every prediction must follow (a line's own \"schema\" takes precedence).")
    public var schema: String?
    @Option(help: "A regular expression (Swift Regex, Perl-like syntax) the predictions should match (reported as regex_match).") public var regex: String?
    @Option(name: .customLong("regex-mode"), help: "full: the whole prediction must match; search: any part of it.")
    public var regexMode: String = "full"
    @OptionGroup public var bootstrap: BootstrapFlags
    public init() {}

    public func validate() throws {
        guard TextPattern.Mode(rawValue: regexMode) != nil else {
            throw ValidationError("--regex-mode must be full or search, got \(regexMode)")
        }
    }

    public func run() throws {
        var options = GenerationMetricOptions(normalization: AnswerNormalization(
            lowercase: !keepCase, removePunctuation: !keepPunctuation, removeArticles: !keepArticles))
        if let schema {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: schema)) } catch {
                throw EvalError.invalidInput("\(schema): cannot read the schema file (\(error.localizedDescription))")
            }
            let value: JSONValue
            do { value = try JSONValue.parse(data) } catch { throw EvalError.invalidInput("\(schema): the schema is not valid JSON") }
            options.schema = try JSONSchema(value, source: schema)
        }
        if let regex { options.pattern = try TextPattern(regex, mode: TextPattern.Mode(rawValue: regexMode) ?? .fullMatch) }
        let pairs = try GenerationPair.read(try JSONLines.read(URL(fileURLWithPath: input)))
        let report = GenerationReport(pairs: pairs, options: options)

        let means: [(String, KeyPath<ExampleScores, Double>)] = [
            ("exact_match", \.exactMatch), ("f1", \.f1), ("rouge1", \.rouge1), ("rouge2", \.rouge2), ("rougeL", \.rougeL)]
        var optional: [(String, Double)] = []
        if let value = report.mean(\.schemaMatch) { optional += [("json_valid", report.mean(\.jsonValid)), ("schema_match", value)] }
        if let value = report.mean(\.regexMatch) { optional.append(("regex_match", value)) }

        if json {
            var object: [String: JSONValue] = ["count": .number(Double(report.count)), "bleu": .number(report.bleu)]
            for (name, metric) in means { object[name] = .number(report.mean(metric)) }
            for (name, value) in optional { object[name] = .number(value) }
            printLine(try jsonLine(object))
            return
        }
        let level = Int((bootstrap.confidence * 100).rounded())
        var rows = [("metric", "value", "\(level)% interval")]
        for (name, metric) in means {
            let interval = bootstrap.bootstrap.mean(report.examples.map { $0[keyPath: metric] })
            rows.append((name, format(interval.estimate), "\(format(interval.lower)) – \(format(interval.upper))"))
        }
        rows.insert(("bleu", String(format: "%.2f", report.bleu), "(corpus, 0-100)"), at: 3)
        for (name, value) in optional { rows.append((name, format(value), "")) }
        rows.append(("count", "\(report.count)", ""))
        printTable(rows)
    }

    private func format(_ value: Double) -> String { String(format: "%.4f", value) }
}

/// `lathe eval choice`: multiple-choice accuracy by log-likelihood, as lm-evaluation-harness computes it.
public struct EvalChoiceCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "choice",
        abstract: "Multiple-choice accuracy (acc, acc_norm) by the log-likelihood of each choice.",
        discussion: """
            Each input line is lettered, MMLU-style {"question", "choices", "answer": index or letter, "subject"?} or \
            a continuation, HellaSwag-style {"context", "endings", "label"}. acc picks the choice with the highest \
            summed log-likelihood; acc_norm divides it by the choice's length in characters first.
            """)
    @OptionGroup public var model: ModelOptions
    @Option(help: "A JSONL file of multiple-choice items.") public var input: String
    @Option(help: "Solved examples to put before each question.") public var shots: Int = 0
    @Option(name: .customLong("fewshot-input"), help: "A JSONL file of items the few-shot examples are drawn from.")
    public var fewShotInput: String?
    @Flag(help: "Print one JSON object instead of a table.") public var json = false
    @OptionGroup public var bootstrap: BootstrapFlags
    public init() {}

    public func validate() throws {
        guard shots >= 0 else { throw ValidationError("--shots must be at least 0, got \(shots)") }
        guard shots == 0 || fewShotInput != nil else { throw ValidationError("--shots \(shots) needs --fewshot-input (the pool to draw from)") }
    }

    struct Output: Encodable {
        let acc: Double, acc_norm: Double, acc_interval: [Double], acc_norm_interval: [Double], confidence: Double, count: Int
    }

    public func run() throws {
        let items = try MultipleChoiceItem.read(try JSONLines.read(URL(fileURLWithPath: input)))
        let pool = try fewShotInput.map { try MultipleChoiceItem.read(try JSONLines.read(URL(fileURLWithPath: $0))) } ?? []
        let lm = try model.load()
        // Progress goes to a terminal only, so that redirected output stays clean.
        let showProgress = isatty(STDERR_FILENO) != 0
        let report = try MultipleChoiceReport.evaluate(items, scorer: LogLikelihoodScorer(lm: lm), fewShotPool: pool,
                                                       shots: shots, seed: bootstrap.seed, bootstrap: bootstrap.bootstrap) { done in
            if showProgress { FileHandle.standardError.write(Data("\rscored \(done)/\(items.count)\(done == items.count ? "\n" : "")".utf8)) }
        }
        let acc = report.accuracy, norm = report.normalizedAccuracy
        if json {
            printLine(try jsonLine(Output(acc: acc.estimate, acc_norm: norm.estimate, acc_interval: [acc.lower, acc.upper],
                                          acc_norm_interval: [norm.lower, norm.upper], confidence: acc.level, count: items.count)))
            return
        }
        let level = Int((bootstrap.confidence * 100).rounded())
        printTable([("metric", "value", "\(level)% interval"),
                    ("acc", String(format: "%.4f", acc.estimate), String(format: "%.4f – %.4f", acc.lower, acc.upper)),
                    ("acc_norm", String(format: "%.4f", norm.estimate), String(format: "%.4f – %.4f", norm.lower, norm.upper)),
                    ("count", "\(items.count)", "")])
    }
}

/// Prints rows as aligned columns, the first row as the header.
private func printTable(_ rows: [(String, String, String)]) {
    let first = rows.map(\.0.count).max() ?? 0, second = rows.map(\.1.count).max() ?? 0
    for row in rows {
        let line = row.0.padding(toLength: first, withPad: " ", startingAt: 0) + "  "
            + String(repeating: " ", count: second - row.1.count) + row.1 + "  " + row.2
        printLine(line.trimmingCharacters(in: .whitespaces))
    }
}

/// `lathe eval perplexity`: exp of the mean token loss on held-out data, by the training loss code.
public struct EvalPerplexityCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity on held-out rows: over completions / assistant turns, or whole texts (sliding window).")
    @OptionGroup public var model: ModelOptions
    @Option(help: "A JSONL (or CSV) dataset in any training format.") public var input: String
    @Option(help: "Tokens per window; longer texts slide by half a window.") public var window = 1024
    @Flag(name: .customLong("loss-on-all"), help: "Score every token, not only completions.") public var lossOnAll = false
    @Flag(help: "Print one JSON object.") public var json = false
    public init() {}

    public func run() throws {
        let lm = try model.load()
        // No truncation here: the sliding window covers long examples.
        let options = try SFTOptions(maxLength: Int(Int32.max), lossOn: lossOnAll ? .all : .completion)
        let report = try PerplexityReport.evaluate(rows: try DatasetReader.read(URL(fileURLWithPath: input)),
                                                   renderer: SFTRenderer(model: lm, options: options), window: window)
        if json { printLine(try jsonLine(report)) } else {
            print(String(format: "perplexity %.4f (mean loss %.4f over %d tokens of %d examples)",
                         report.perplexity, report.meanLoss, report.tokens, report.examples))
        }
    }
}

/// `lathe eval preference`: pairwise accuracy and mean margin of DPO's implicit rewards on held-out pairs.
public struct EvalPreferenceCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "preference",
        abstract: "Held-out preference accuracy: how often the tuned model's implicit reward prefers the chosen answer.",
        discussion: """
            The reward of a completion is beta·(log π(y|x) − log π_ref(y|x)), π being the model with --adapter and \
            π_ref the base, or the --reference-adapter (e.g. the SFT adapter a DPO run started from). Prints the share \
            of pairs whose chosen reward is higher and the mean margin, with bootstrap intervals.
            """)
    @OptionGroup public var model: ModelOptions
    @Option(name: .customLong("reference-adapter"), help: "The reference: this adapter on the base (default: the base alone).")
    public var referenceAdapter: String?
    @Option(help: "Held-out preference pairs (JSONL or CSV: prompt, chosen, rejected).") public var input: String
    @Option(help: "The reward scale.") public var beta = 0.1
    @Option(name: .customLong("max-length"), help: "Longest prompt + completion in tokens, as in training.") public var maxLength = 1024
    @Flag(help: "Print one JSON object.") public var json = false
    @OptionGroup public var bootstrap: BootstrapFlags
    public init() {}

    public func run() throws {
        let lm = try model.load()
        if let referenceAdapter { try PEFTAdapter.load(URL(fileURLWithPath: referenceAdapter), into: lm.model, adapterName: "reference") }
        let (pairs, report) = try PreferenceDataset.loadPairs(URL(fileURLWithPath: input),
                                                              renderer: PreferenceRenderer(model: lm, maxLength: maxLength))
        log("\(input): \(report)")
        let result = try PreferenceAccuracy.evaluate(pairs, model: lm.model, beta: beta,
                                                     policy: { $0.adapterName == "default" },
                                                     reference: { $0.adapterName == "reference" }, bootstrap: bootstrap.bootstrap)
        if json { printLine(try jsonLine(result)); return }
        let level = Int((result.accuracy.level * 100).rounded())
        print(String(format: "reward accuracy %.3f [%.3f, %.3f], margin %.4f [%.4f, %.4f] (%d%% intervals, %d pairs, beta %g)",
                     result.accuracy.estimate, result.accuracy.lower, result.accuracy.upper,
                     result.margin.estimate, result.margin.lower, result.margin.upper, level, result.pairs, result.beta))
    }
}
