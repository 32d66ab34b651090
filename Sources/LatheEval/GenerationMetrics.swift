import Foundation
import LatheModels

/// One generated answer and the reference answers it is scored against.
public struct GenerationPair: Sendable, Equatable {
    public var prediction: String
    public var references: [String]
    /// A JSON Schema the prediction must follow (from the line's `schema` field), if any.
    public var schema: JSONSchema?

    public init(prediction: String, references: [String], schema: JSONSchema? = nil) {
        self.prediction = prediction; self.references = references; self.schema = schema
    }

    /// Reads `{"prediction": "...", "reference": "..." or ["...", ...], "schema": {...}?}` lines; errors name the
    /// file, line and field.
    public static func read(_ lines: [JSONLine]) throws -> [GenerationPair] {
        try lines.map { line in
            guard let object = line.value.object else { throw line.error("expected a JSON object, got \(line.value.summary)") }
            guard let predictionValue = object["prediction"] else { throw line.error("missing field \"prediction\"") }
            guard let prediction = predictionValue.string else {
                throw line.error("field \"prediction\" must be a string, got \(predictionValue.summary)")
            }
            guard let referenceValue = object["reference"] else { throw line.error("missing field \"reference\"") }
            let references: [String]
            if let single = referenceValue.string {
                references = [single]
            } else if let list = referenceValue.array {
                guard !list.isEmpty else { throw line.error("field \"reference\" is an empty list; give at least one reference") }
                references = try list.enumerated().map { index, item in
                    guard let text = item.string else {
                        throw line.error("field \"reference\"[\(index)] must be a string, got \(item.summary)")
                    }
                    return text
                }
            } else {
                throw line.error("field \"reference\" must be a string or a list of strings, got \(referenceValue.summary)")
            }
            let schema = try object["schema"].map { try JSONSchema($0, source: "\(line.file):\(line.line): field \"schema\"") }
            return GenerationPair(prediction: prediction, references: references, schema: schema)
        }
    }
}

/// What to compute besides the standard metrics, and how.
public struct GenerationMetricOptions: Sendable {
    public var normalization: AnswerNormalization
    /// A schema for every prediction (a line's own `schema` field takes precedence).
    public var schema: JSONSchema?
    public var pattern: TextPattern?

    public init(normalization: AnswerNormalization = .squad, schema: JSONSchema? = nil, pattern: TextPattern? = nil) {
        self.normalization = normalization; self.schema = schema; self.pattern = pattern
    }
}

/// The scores of one pair; ROUGE is the best F-measure over the references (rouge-score's `score_multi`).
public struct ExampleScores: Sendable, Equatable {
    public let exactMatch: Double
    public let f1: Double
    public let rouge1: Double
    public let rouge2: Double
    public let rougeL: Double
    public let jsonValid: Double
    /// nil when the pair has no schema.
    public let schemaMatch: Double?
    /// nil without a pattern.
    public let regexMatch: Double?
}

/// Corpus-level generation metrics: means of per-example scores, with corpus BLEU.
public struct GenerationReport: Sendable {
    public let count: Int
    public let examples: [ExampleScores]
    /// Corpus BLEU on 0–100 (sacrebleu's `corpus_bleu`).
    public let bleu: Double

    public init(pairs: [GenerationPair], options: GenerationMetricOptions = GenerationMetricOptions()) {
        count = pairs.count
        examples = pairs.map { pair in
            let rouge = pair.references.map { ROUGE.scores(prediction: pair.prediction, reference: $0) }
            let schema = pair.schema ?? options.schema
            return ExampleScores(
                exactMatch: AnswerMetrics.exactMatch(pair.prediction, references: pair.references, normalization: options.normalization),
                f1: AnswerMetrics.tokenF1(pair.prediction, references: pair.references, normalization: options.normalization),
                rouge1: rouge.map(\.rouge1.fMeasure).max() ?? 0,
                rouge2: rouge.map(\.rouge2.fMeasure).max() ?? 0,
                rougeL: rouge.map(\.rougeL.fMeasure).max() ?? 0,
                jsonValid: StructuredOutput.jsonValidity(pair.prediction),
                schemaMatch: schema.map { StructuredOutput.schemaMatch(pair.prediction, schema: $0) },
                regexMatch: options.pattern.map { StructuredOutput.regexMatch(pair.prediction, pattern: $0) })
        }
        bleu = BLEU.corpusScore(hypotheses: pairs.map(\.prediction), references: pairs.map(\.references))
    }

    public func mean(_ metric: KeyPath<ExampleScores, Double>) -> Double { Bootstrap.average(examples.map { $0[keyPath: metric] }) }

    /// The mean of an optional per-example metric over the examples that have it; nil when none has.
    public func mean(_ metric: KeyPath<ExampleScores, Double?>) -> Double? {
        let values = examples.compactMap { $0[keyPath: metric] }
        return values.isEmpty ? nil : Bootstrap.average(values)
    }
}
