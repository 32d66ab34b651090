import ArgumentParser
import Foundation
import LatheEval
import LatheModels
import LatheRemote

/// `lathe eval judge`: an LLM judge behind an OpenAI-compatible endpoint grades answers or compares base with tuned.
public struct EvalJudgeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "judge",
        abstract: "LLM-as-judge through an OpenAI-compatible endpoint: 1-10 grading, or base vs tuned with --pairwise.",
        discussion: """
            Each input line is {"prompt", "answer"}, or with --pairwise {"prompt", "base", "tuned"}. Grading asks for \
            "Rating: [[N]]" (1-10, as MT-Bench); pairwise asks twice with the answers' order swapped and counts a \
            verdict that flips with the order as a tie. --url is the API root: http://host:port, .../v1 or the full \
            .../chat/completions. Timeouts, connection errors, 429 (honouring Retry-After) and 5xx are retried with \
            exponential backoff; items that still fail, or whose reply has no rating or verdict, are reported apart \
            and left out of the scores. Requests use temperature 0 and send --seed as the endpoint's sampling seed (it \
            also seeds the bootstrap). The key is read from the variable --api-key-env names; none is sent when it is \
            unset. The exit status is 0 when at least one item was judged.
            """)
    @Option(help: "A JSONL file of {\"prompt\", \"answer\"} (or {\"prompt\", \"base\", \"tuned\"}) lines.") public var input: String
    @Option(help: "The endpoint's API root, e.g. http://127.0.0.1:8080/v1.") public var url: String
    @Option(name: .customLong("judge-model"), help: "The judge model's name as the endpoint knows it.") public var judgeModel: String
    @Option(name: .customLong("api-key-env"), help: "The environment variable holding the API key (none is sent when it is unset).")
    public var apiKeyEnv = "OPENAI_API_KEY"
    @Flag(help: "Compare base and tuned answers instead of grading single answers.") public var pairwise = false
    @Option(help: "A grading criterion sentence replacing the default one (helpfulness, relevance, accuracy, ...).")
    public var rubric: String?
    @Option(help: "Seconds without a reply before an attempt is abandoned and retried.") public var timeout: Double = 120
    @Option(help: "Retries of a failed request.") public var retries = 4
    @Option(name: .customLong("retry-delay"), help: "Seconds before the first retry; each later one waits twice as long.")
    public var retryDelay: Double = 1
    @Option(name: .customLong("max-tokens"), help: "Token limit of each judge reply.") public var maxTokens: Int?
    @Flag(help: "Print one JSON object instead of a summary.") public var json = false
    @OptionGroup public var bootstrap: BootstrapFlags
    public init() {}

    public func validate() throws {
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), scheme == "http" || scheme == "https",
              parsed.host != nil else {
            throw ValidationError("--url must be an http or https URL such as http://127.0.0.1:8080/v1, got \(url)")
        }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive, got \(timeout)") }
        guard retries >= 0 else { throw ValidationError("--retries must be at least 0, got \(retries)") }
        guard retryDelay >= 0 else { throw ValidationError("--retry-delay must be at least 0, got \(retryDelay)") }
        if let maxTokens, maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1, got \(maxTokens)") }
    }

    struct Output<Report: Encodable>: Encodable {
        let mode: String, endpoint: String, judge_model: String, requests: ChatCompletionCounts, report: Report
    }

    public func run() throws {
        let lines = try JSONLines.read(URL(fileURLWithPath: input))
        guard let baseURL = URL(string: url) else { throw ValidationError("--url is not a URL: \(url)") }
        let client = ChatCompletionClient(baseURL: baseURL, model: judgeModel, apiKey: ProcessInfo.processInfo.environment[apiKeyEnv],
                                          timeout: timeout, retry: RetryPolicy(maxRetries: retries, initialDelay: retryDelay))
        // The bootstrap seed doubles as the endpoint's sampling seed, so one flag repeats a whole run.
        let judge = Judge(backend: client, rubric: rubric ?? JudgePrompts.defaultRubric, seed: Int(truncatingIfNeeded: bootstrap.seed),
                          maxTokens: maxTokens)
        let showProgress = isatty(STDERR_FILENO) != 0
        func progress(_ total: Int) -> (Int) -> Void {
            { done in if showProgress { FileHandle.standardError.write(Data("\rjudged \(done)/\(total)\(done == total ? "\n" : "")".utf8)) } }
        }
        let judged: Int
        if pairwise {
            let items = try JudgePairItem.read(lines)
            let report = judge.compare(items, bootstrap: bootstrap.bootstrap, progress: progress(items.count))
            judged = report.pairs.count
            if json {
                printLine(try jsonLine(Output(mode: "pairwise", endpoint: client.endpoint.absoluteString, judge_model: judgeModel,
                                              requests: client.counts, report: report)))
            } else {
                printPairwise(report)
                printFailures(report.failures, counts: client.counts)
            }
        } else {
            let items = try JudgeGradingItem.read(lines)
            let report = judge.grade(items, bootstrap: bootstrap.bootstrap, progress: progress(items.count))
            judged = report.ratings.count
            if json {
                printLine(try jsonLine(Output(mode: "grading", endpoint: client.endpoint.absoluteString, judge_model: judgeModel,
                                              requests: client.counts, report: report)))
            } else {
                let mean = report.meanRating, level = Int((mean.level * 100).rounded())
                printLine(String(format: "mean rating %.3f (%d%% interval %.3f – %.3f) over %d answers",
                                 mean.estimate, level, mean.lower, mean.upper, report.ratings.count))
                printFailures(report.failures, counts: client.counts)
            }
        }
        guard judged > 0 || lines.isEmpty else {
            throw EvalError.invalidInput("the judge scored none of the \(lines.count) items (see the failures above)")
        }
    }

    private func printPairwise(_ report: JudgePairwiseReport) {
        let judged = report.pairs.count, level = Int((report.winRate.level * 100).rounded())
        func rate(_ count: Int) -> String { judged == 0 ? "-" : String(format: "%.3f", Double(count) / Double(judged)) }
        printLine("tuned vs base over \(judged) judged pairs (each asked in both orders)")
        printLine("  win   \(report.wins)  \(rate(report.wins))  \(level)% interval "
                  + String(format: "%.3f – %.3f", report.winRate.lower, report.winRate.upper))
        printLine("  tie   \(report.ties)  \(rate(report.ties))  (\(report.inconsistent) of them flipped with the order)")
        printLine("  loss  \(report.losses)  \(rate(report.losses))")
        printLine(String(format: "  score (wins + ties/2) %.3f, %d%% interval %.3f – %.3f",
                         report.score.estimate, level, report.score.lower, report.score.upper))
    }

    private func printFailures(_ failures: [JudgeFailure], counts: ChatCompletionCounts) {
        printLine("requests \(counts.requests), attempts \(counts.attempts), retries \(counts.retries), failed requests \(counts.failures)")
        guard !failures.isEmpty else { return }
        printLine("\(failures.count) item\(failures.count == 1 ? "" : "s") not judged (left out of the scores):")
        for failure in failures { printLine("  \(failure.source): \(failure.reason)") }
    }
}
