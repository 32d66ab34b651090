import ArgumentParser
import Foundation
import LatheData
import LatheFormats
import LatheModels
import LatheRemote

/// `lathe data`: make a dataset ready for training (check, stats, convert, dedup, split, balance).
public struct DataCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Validate, measure, convert, deduplicate, split, balance and preview datasets.",
        subcommands: [DataCheckCommand.self, DataStatsCommand.self, DataConvertCommand.self, DataDedupCommand.self,
                      DataSplitCommand.self, DataBalanceCommand.self, DataPreviewCommand.self, DataSynthCommand.self])
    public init() {}
}

extension DatasetFormat: ExpressibleByArgument {}

/// Writes one line to standard error (reports, so that standard output stays machine-readable).
func printReport(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// `lathe data check F.jsonl`: every problem as `F.jsonl:LINE: message`; exit 1 on errors.
public struct DataCheckCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Report every problem of each file as FILE:LINE: message (exit 1 on errors).")
    @Argument(help: "JSONL files (or CSV with a header).") public var files: [String]
    @Option(help: "Read every row as this format instead of detecting it.") public var format: DatasetFormat?
    @Flag(help: "Also fail on warnings.") public var strict = false
    public init() {}

    public func run() throws {
        var failed = false
        for path in files {
            let report = try DatasetChecker.check(URL(fileURLWithPath: path), format: format)
            for problem in report.problems {
                // Problems name the file as the user wrote it.
                printLine(DatasetProblem(file: path, line: problem.line, field: problem.field, severity: problem.severity,
                                         message: problem.message).description)
            }
            printReport("\(path): \(report.rowCount) rows (\(report.format?.rawValue ?? "unknown format")), "
                        + "\(report.errorCount) errors, \(report.warningCount) warnings")
            if report.errorCount > 0 || (strict && report.warningCount > 0) { failed = true }
        }
        if failed { throw ExitCode(1) }
    }
}

/// `lathe data stats F.jsonl`: counts, lengths per field, labels and quality flags.
public struct DataStatsCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Counts, token lengths per field, label distribution and quality flags.")
    @Argument(help: "A JSONL file (or CSV with a header).") public var file: String
    @Option(help: "Measure in this model's tokens (a .gguf file, a Hugging Face folder or a known name); characters without it.")
    public var model: String?
    @Option(name: .customLong("max-length"), help: "Count the rows longer than this.") public var maxLength: Int?
    @Option(help: "Count the rows per value of this field.") public var label: String?
    @Option(help: "Read every row as this format instead of detecting it.") public var format: DatasetFormat?
    @Flag(help: "Print the statistics as one JSON object.") public var json = false
    public init() {}

    public func validate() throws {
        if let maxLength, maxLength < 1 { throw ValidationError("--max-length must be at least 1, got \(maxLength)") }
    }

    public func run() throws {
        let url = URL(fileURLWithPath: file)
        let stats: DatasetStats
        if let model {
            let lm = try LanguageModel.load(model)
            stats = try DatasetStatistics.compute(
                url, format: format, unit: "tokens", measure: { lm.tokenizer.encode($0, addSpecialTokens: false).count },
                renderConversation: lm.chatTemplate == nil ? nil : { try lm.renderChat($0, addGenerationPrompt: false) },
                maxLength: maxLength, labelField: label)
        } else {
            stats = try DatasetStatistics.compute(url, format: format, unit: "characters", measure: { $0.count },
                                                  maxLength: maxLength, labelField: label)
        }
        if json {
            printLine(try jsonLine(stats))
            return
        }
        printLine("\(file): \(stats.rows) rows, format \(stats.format ?? "unknown"), \(stats.invalidRows) invalid (see lathe data check)")
        func row(_ name: String, _ s: LengthSummary) -> String {
            name.padding(toLength: 12, withPad: " ", startingAt: 0)
                + "min \(s.min)  median \(s.median)  p95 \(s.p95)  max \(s.max)  (\(s.count) values)"
        }
        printLine("lengths in \(stats.unit):")
        for field in stats.fields { printLine("  " + row(field.field, field.lengths)) }
        if let total = stats.total { printLine("  " + row("total", total)) }
        if let turns = stats.turns { printLine("  " + row("turns", turns)) }
        if let maxLength = stats.maxLength, let over = stats.overMaxLength {
            printLine("\(over) rows longer than \(maxLength) \(stats.unit)")
        }
        if let field = stats.labelField {
            printLine("\(field):")
            for label in stats.labels { printLine("  \(label.label): \(label.count)") }
        }
        func flag(_ name: String, _ lines: [Int]) {
            let shown = lines.prefix(10).map(String.init).joined(separator: ", ")
            printLine("  \(name): \(lines.count)" + (lines.isEmpty ? "" : " (lines \(shown)\(lines.count > 10 ? ", ..." : ""))"))
        }
        printLine("quality flags:")
        flag("empty answers", stats.flags.emptyAnswers)
        flag("answer repeats the prompt", stats.flags.answerRepeatsPrompt)
        flag("very short answers", stats.flags.veryShortAnswers)
        flag("very long rows", stats.flags.veryLongRows)
    }
}

/// `lathe data convert`: rewrite rows in another format.
public struct DataConvertCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "convert", abstract: "Convert rows to messages, prompt_completion, alpaca or text; preference pairs to kto.")
    @Option(help: "A JSONL file (or CSV with a header).") public var input: String
    @Option(help: "The JSONL file to write.") public var output: String
    @Option(help: "The target format: messages, prompt_completion, alpaca, text or kto (pairs unpaired as TRL does).") public var to: DatasetFormat
    @Option(help: "Read every row as this format instead of detecting it.") public var from: DatasetFormat?
    @Flag(name: .customLong("keep-fields"), help: "Keep the fields that are not content (ids, sources...).")
    public var keepFields = false
    @Option(help: "The model whose chat template turns conversations into text (for --to text).") public var model: String?
    public init() {}

    public func validate() throws {
        guard DatasetConverter.targets.contains(to) else {
            throw ValidationError("--to must be one of " + DatasetConverter.targets.map(\.rawValue).joined(separator: ", "))
        }
    }

    public func run() throws {
        let rows = try DatasetReader.read(URL(fileURLWithPath: input), format: from)
        let lm = try model.map { try LanguageModel.load($0) }
        let render: (([ChatMessage]) throws -> String)? = lm.map { lm in { try lm.renderChat($0, addGenerationPrompt: false) } }
        let converted = try DatasetConverter.convert(rows, to: to, keepFields: keepFields, renderConversation: render)
        try DatasetJSON.write(converted.map(DatasetJSON.encode), to: URL(fileURLWithPath: output))
        printReport("wrote \(converted.count) \(to.rawValue) rows to \(output)")
    }
}

/// `lathe data dedup --input F.jsonl --output G.jsonl --near 0.8`.
public struct DataDedupCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "dedup", abstract: "Drop exact and near-duplicate rows (MinHash + LSH), within the file and against others.")
    @Option(help: "A JSONL file (or CSV with a header).") public var input: String
    @Option(help: "The JSONL file of kept rows (byte for byte as in the input).") public var output: String
    @Option(help: "Also drop rows whose word-shingle Jaccard similarity with a kept row is at least this (0-1).")
    public var near: Double?
    @Option(help: "Drop rows that duplicate a row of this file (e.g. the test set); repeatable.")
    public var against: [String] = []
    @Option(help: "Compare these fields (comma-separated) instead of the format's content fields.")
    public var fields: String?
    @Option(help: "Write the dropped rows to this JSONL file.") public var dropped: String?
    @Option(help: "Words per shingle.") public var shingle: Int = 3
    @Option(help: "MinHash permutations.") public var permutations: Int = 128
    @Option(help: "LSH bands (with --rows); by default chosen so that pairs at the threshold are found 99% of the time.")
    public var bands: Int?
    @Option(help: "MinHash values per LSH band (with --bands).") public var rows: Int?
    @Option(help: "Seed of the MinHash functions.") public var seed: UInt64 = 0
    @Option(name: .customLong("show-clusters"), help: "Print at most this many clusters.") public var showClusters: Int = 20
    public init() {}

    public func validate() throws {
        if let near, !(near > 0 && near <= 1) { throw ValidationError("--near must be in (0, 1], got \(near)") }
        guard shingle >= 1 else { throw ValidationError("--shingle must be at least 1, got \(shingle)") }
        guard permutations >= 1 else { throw ValidationError("--permutations must be at least 1, got \(permutations)") }
        guard (bands == nil) == (rows == nil) else { throw ValidationError("give --bands and --rows together") }
        if let bands, let rows, bands < 1 || rows < 1 || bands * rows > permutations {
            throw ValidationError("--bands × --rows must be between 1 and --permutations (\(permutations)), got \(bands) × \(rows)")
        }
    }

    public func run() throws {
        let file = try DatasetFile.read(URL(fileURLWithPath: input))
        let others = try against.map { try DatasetFile.read(URL(fileURLWithPath: $0)) }
        let fieldList = fields.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
        let result = try Deduplicator.deduplicate(file, against: others, options: DedupOptions(
            nearThreshold: near, fields: fieldList, shingleSize: shingle, permutations: permutations, seed: seed,
            lsh: bands.flatMap { bands in rows.map { LSHParameters(bands: bands, rows: $0) } }))
        try DatasetJSON.write(result.kept.map { file.texts[$0] }, to: URL(fileURLWithPath: output))
        if let dropped { try DatasetJSON.write(result.dropped.map { file.texts[$0] }, to: URL(fileURLWithPath: dropped)) }
        printLine("kept \(result.kept.count) of \(file.lines.count) rows: dropped \(result.exactDuplicates) exact duplicates, "
                  + "\(result.nearDuplicates) near-duplicates" + (near.map { " (Jaccard >= \($0))" } ?? "")
                  + (against.isEmpty ? "" : ", \(result.againstDuplicates) duplicating \(against.joined(separator: ", "))"))
        for cluster in result.clusters.prefix(showClusters) {
            let members = cluster.members.map { "\($0.line)" + ($0.exact ? " (exact)" : String(format: " (%.2f)", $0.similarity)) }
            printLine("  kept \(cluster.representative); dropped line \(members.joined(separator: ", line "))")
        }
        if result.clusters.count > showClusters { printLine("  ... \(result.clusters.count - showClusters) more clusters") }
    }
}

/// `lathe data split --input F.jsonl --by FIELD --test-fraction 0.2 --seed S --output-dir D`.
public struct DataSplitCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "split", abstract: "Write DIR/train.jsonl and DIR/test.jsonl, randomly, by key, by date or stratified.")
    @Option(help: "A JSONL file (or CSV with a header).") public var input: String
    @Option(name: .customLong("output-dir"), help: "The folder for train.jsonl and test.jsonl.") public var outputDir: String
    @Option(name: .customLong("test-fraction"), help: "The share of rows held out.") public var testFraction: Double = 0.1
    @Option(help: "Seed of the random choice.") public var seed: UInt64 = 0
    @Option(help: "Keep the rows of each value of this field on one side (with --cutoff: a date field).")
    public var by: String?
    @Option(help: "With --by DATE_FIELD: rows before this ISO date train, the others test.") public var cutoff: String?
    @Option(help: "Hold out the same share of each value of this field (a label).") public var stratify: String?
    public init() {}

    public func validate() throws {
        guard testFraction > 0 && testFraction < 1 else {
            throw ValidationError("--test-fraction must be between 0 and 1, got \(testFraction)")
        }
        if cutoff != nil && by == nil { throw ValidationError("--cutoff needs --by with the date field") }
        if by != nil && stratify != nil { throw ValidationError("give --by or --stratify, not both") }
    }

    public func run() throws {
        let file = try DatasetFile.read(URL(fileURLWithPath: input))
        let strategy: SplitStrategy
        if let by, let cutoff { strategy = .byDate(field: by, cutoff: cutoff) }
        else if let by { strategy = .byKey(field: by) }
        else if let stratify { strategy = .stratified(field: stratify) }
        else { strategy = .random }
        let result = try DatasetSplitter.split(file, strategy: strategy, testFraction: testFraction, seed: seed)
        let folder = URL(fileURLWithPath: outputDir)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try DatasetJSON.write(result.train.map { file.texts[$0] }, to: folder.appendingPathComponent("train.jsonl"))
        try DatasetJSON.write(result.test.map { file.texts[$0] }, to: folder.appendingPathComponent("test.jsonl"))
        printLine(result.summary)
        guard result.leakedKeys.isEmpty else {
            printReport("error: leakage between train and test: \(result.leakedKeys.prefix(10).joined(separator: ", "))")
            throw ExitCode(1)
        }
    }
}

/// `lathe data balance --input F --output G --by FIELD --max-per-class N` (or `--target uniform`).
public struct DataBalanceCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "balance", abstract: "Cap or up-sample the rows of each category of a field.")
    @Option(help: "A JSONL file (or CSV with a header).") public var input: String
    @Option(help: "The JSONL file to write.") public var output: String
    @Option(help: "The category field.") public var by: String
    @Option(name: .customLong("max-per-class"), help: "Keep at most this many rows per category.") public var maxPerClass: Int?
    @Option(help: "uniform: repeat random rows until every category is as large as the largest.") public var target: String?
    @Option(help: "Seed of the random choices.") public var seed: UInt64 = 0
    public init() {}

    public func validate() throws {
        guard maxPerClass != nil || target != nil else { throw ValidationError("give --max-per-class N and/or --target uniform") }
        if let target, target != "uniform" { throw ValidationError("--target must be uniform, got \(target)") }
        if let maxPerClass, maxPerClass < 1 { throw ValidationError("--max-per-class must be at least 1, got \(maxPerClass)") }
    }

    public func run() throws {
        let file = try DatasetFile.read(URL(fileURLWithPath: input))
        let result = try DatasetBalancer.balance(file, by: by, options: BalanceOptions(maxPerClass: maxPerClass,
                                                                                        uniform: target == "uniform"), seed: seed)
        try DatasetJSON.write(result.rows.map { file.texts[$0] }, to: URL(fileURLWithPath: output))
        printLine("\(by): before -> after")
        for count in result.counts { printLine("  \(count.category): \(count.before) -> \(count.after)") }
        printLine("wrote \(result.rows.count) of \(file.lines.count) rows to \(output)")
    }
}

/// `lathe data preview`: examples exactly as training sees them — template applied, ids, the tokens that carry loss.
public struct DataPreviewCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "preview", abstract: "Show examples as training sees them: ids and the tokens that carry loss (green, or [[...]]).")
    @OptionGroup public var model: ModelOptions
    @Option(help: "A JSONL (or CSV) dataset.") public var input: String
    @Option(name: .shortAndLong, help: "How many rows to show.") public var count = 3
    @Option(name: .customLong("max-length"), help: "Longest example in tokens, as in training.") public var maxLength = 512
    @Flag(name: .customLong("loss-on-all"), help: "Loss on every token, as `lathe sft --loss-on-all`.") public var lossOnAll = false
    @Flag(help: "One JSON object per example: source, ids, tokens, supervised, truncated, answers_end_with_eos.") public var json = false
    public init() {}

    public func run() throws {
        let lm = try model.load()
        let options = try SFTOptions(maxLength: maxLength, lossOn: lossOnAll ? .all : .completion)
        let rows = Array(try DatasetReader.read(URL(fileURLWithPath: input)).prefix(count))
        let previews = try SFTPreview.make(rows: rows, renderer: SFTRenderer(model: lm, options: options))
        for preview in previews {
            if json { printLine(try jsonLine(preview)); continue }
            print("── \(preview.source): \(preview.ids.count) tokens, \(preview.supervised.filter { $0 }.count) with loss"
                  + (preview.truncated ? ", truncated" : "")
                  + (preview.answersEndWithEOS ? "" : " — WARNING: a supervised answer does not end with EOS"))
            print(preview.rendered(colour: isatty(STDOUT_FILENO) != 0))
            print("ids: \(preview.ids)")
        }
    }
}

/// `lathe data synth`: new examples from seed examples (Self-Instruct), checked and deduplicated before writing.
public struct DataSynthCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Generate new {\"messages\"} examples from seed examples with a model (Self-Instruct), then check and deduplicate them.")
    @OptionGroup public var model: ModelOptions
    @Option(help: "Seed examples (messages or prompt/completion JSONL).") public var seeds: String
    @Option(help: "Where to write the new examples (JSONL).") public var output: String
    @Option(help: "How many examples to keep.") public var count = 10
    @Option(help: "Seed examples shown per request.") public var shots = 3
    @Option(help: "Word-shingle Jaccard from which a new task is a near-duplicate of a seed or an earlier one.") public var near = 0.7
    @Option(help: "Random seed.") public var seed: UInt64 = 0
    @Option(name: .customLong("max-tokens"), help: "Longest generated task or answer.") public var maxTokens = 256
    @Option(help: "An OpenAI-compatible endpoint to ask instead of the local model (e.g. http://127.0.0.1:8000/v1).")
    public var url: String?
    @Option(name: .customLong("remote-model"), help: "The model name to ask the endpoint for.") public var remoteModel: String?
    @Option(name: .customLong("api-key-env"), help: "Environment variable holding the endpoint's API key.")
    public var apiKeyEnv = "OPENAI_API_KEY"
    public init() {}

    public func validate() throws {
        guard count > 0, shots > 0 else { throw ValidationError("--count and --shots must be positive") }
        guard (url == nil) == (remoteModel == nil) else { throw ValidationError("give --url and --remote-model together") }
        if let url, URL(string: url)?.scheme == nil { throw ValidationError("--url must be a URL such as http://127.0.0.1:8000/v1, got \(url)") }
        guard near > 0 && near <= 1 else { throw ValidationError("--near must be in (0, 1], got \(near)") }
    }

    public func run() throws {
        let rows = try DatasetReader.read(URL(fileURLWithPath: seeds))
        let completer: ChatCompleting
        if let url, let remoteModel, let endpoint = URL(string: url) {
            completer = ChatCompletionClient(baseURL: endpoint, model: remoteModel,
                                             apiKey: ProcessInfo.processInfo.environment[apiKeyEnv])
        } else {
            completer = LocalChatCompleter(model: try model.load(), maxTokens: maxTokens)
        }
        var options = Synthesizer.Options(count: count)
        options.examplesPerPrompt = shots
        options.seed = seed
        options.nearDuplicate = near
        let (generated, report) = try Synthesizer(completer: completer, options: options).generate(seeds: rows)
        let lines = try generated.map { try jsonLine($0) }
        try AtomicFileWriter.write(Data((lines.joined(separator: "\n") + (lines.isEmpty ? "" : "\n")).utf8),
                                   to: URL(fileURLWithPath: output))
        // The same checks as any dataset: a bad generated row is reported like a bad hand-written one.
        let check = try DatasetChecker.check(URL(fileURLWithPath: output), format: .messages)
        for problem in check.problems { printReport(problem.description) }
        printReport("\(output): \(report)")
    }
}
