import ArgumentParser
import Foundation
import LatheEval
import LatheModels

/// `lathe eval compare`: the base model against the same model with its LoRA adapter, on the same prompts.
public struct EvalCompareCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare the base model with the model plus its --adapter: generation metrics and perplexity side by side.",
        discussion: """
            Each input line is {"prompt": "...", "reference": "..."} (the prompt goes through the chat template as one \
            user message when the model has one) or {"messages": [...], "reference": "..."}; a training file \
            (prompt/completion, or conversations ending with an assistant turn) is also accepted, its held-out answer \
            being the reference. The same prompts are generated in batches with the adapter off (base) and on (tuned), \
            in one load. Reported per system: exact match, F1, corpus BLEU, ROUGE-1/2/L and the perplexity of the \
            references; the delta is tuned - base, with a bootstrap interval of the paired difference. With --json, one \
            object: each metric as {base, tuned, delta, ci_low, ci_high}, plus count and settings.
            """)
    @OptionGroup public var model: ModelOptions
    @Option(help: "A JSONL (or CSV) file of prompts with references, or a training file.") public var input: String
    @Option(name: .customLong("max-tokens"), help: "The most tokens to generate per answer.") public var maxTokens = 128
    @Option(name: .customLong("batch-size"), help: "Prompts generated together in one forward pass.") public var batchSize = 4
    @Option(help: "Sampling temperature; 0 picks the most likely token (greedy).") public var temperature: Float = 0
    @Option(help: "Random seed of sampling and bootstrap resampling: the same seed gives the same report.") public var seed: UInt64 = 0
    @Option(help: "Bootstrap resamples for confidence intervals.") public var resamples = 1000
    @Option(help: "Confidence level of the intervals, between 0 and 1.") public var confidence = 0.95
    @Flag(help: "Print one JSON object instead of a table.") public var json = false
    @Flag(help: "Run the same set on the untuned base as well — what compare always does; accepted so that `lathe eval --baseline` reads as the task.")
    public var baseline = false
    @Option(help: "Also write a self-contained HTML report (table and every example) to this file.") public var html: String?
    public init() {}

    public func validate() throws {
        guard model.adapter != nil else { throw ValidationError("compare needs --adapter: the tuned model is the base plus this adapter") }
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1, got \(maxTokens)") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be at least 0, got \(temperature)") }
        guard resamples >= 1 else { throw ValidationError("--resamples must be at least 1, got \(resamples)") }
        guard confidence > 0, confidence < 1 else { throw ValidationError("--confidence must be between 0 and 1, got \(confidence)") }
    }

    public func run() throws {
        // Read the input before loading the model, so that a bad line fails fast.
        let examples = try CompareExample.read(URL(fileURLWithPath: input))
        let lm = try model.load()
        let settings = CompareSettings(maxTokens: maxTokens, batchSize: batchSize,
                                       sampling: SamplingOptions(temperature: temperature, seed: seed),
                                       bootstrap: Bootstrap(resamples: resamples, level: confidence, seed: seed))
        // Progress goes to a terminal only, so that redirected output stays clean.
        let showProgress = isatty(STDERR_FILENO) != 0
        let report = try ComparisonReport.evaluate(examples, lm: lm, settings: settings) { line in
            if showProgress { FileHandle.standardError.write(Data("\(line)\n".utf8)) }
        }
        if let html { try report.writeHTML(to: URL(fileURLWithPath: html)) }
        if json { printLine(try jsonLine(report.json)) } else { report.tableLines.forEach(printLine) }
    }
}
