import Foundation
import XCTest
@testable import LatheEval
import LatheModels
import LatheTensors

final class StructuredOutputTests: XCTestCase {
    func schema(_ text: String) throws -> JSONSchema { try JSONSchema(JSONValue.parse(Data(text.utf8)), source: "test") }

    func testJSONValidity() {
        XCTAssertEqual(StructuredOutput.jsonValidity(#" {"a": [1, 2.5, null, true]} "#), 1)
        XCTAssertEqual(StructuredOutput.jsonValidity("[1, 2]"), 1)
        XCTAssertEqual(StructuredOutput.jsonValidity(#"{"a": 1,}"#), 0)
        XCTAssertEqual(StructuredOutput.jsonValidity(#"{"a": 1} trailing"#), 0)
        XCTAssertEqual(StructuredOutput.jsonValidity("```json\n{}\n```"), 0)
        XCTAssertEqual(StructuredOutput.jsonValidity(""), 0)
        // Strict RFC 8259 syntax, where Foundation's decoder is lenient.
        XCTAssertEqual(StructuredOutput.jsonValidity(#"[1,]"#), 0)
        XCTAssertEqual(StructuredOutput.jsonValidity(#"{"a" 1}"#), 0)
        XCTAssertEqual(StructuredOutput.jsonValidity("01"), 0)
        XCTAssertEqual(StructuredOutput.jsonValidity("1."), 0)
        XCTAssertEqual(StructuredOutput.jsonValidity(".5"), 0)
        XCTAssertEqual(StructuredOutput.jsonValidity("{'a': 1}"), 0)
        XCTAssertEqual(StructuredOutput.jsonValidity("\"tab\there\""), 0)
        XCTAssertEqual(StructuredOutput.jsonValidity(#""\q""#), 0)
        XCTAssertEqual(StructuredOutput.jsonValidity(#"["\u00e9\n", -0.5e+3, 1E2, 0, "é🙂"]"#), 1)
        XCTAssertEqual(StructuredOutput.jsonValidity(String(repeating: "[", count: 600) + String(repeating: "]", count: 600)), 0)
    }

    func testSchemaSubset() throws {
        let person = try schema("""
            {"type": "object", "required": ["name", "age"], "additionalProperties": false,
             "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                            "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
                            "nick": {"type": ["string", "null"]}}}
            """)
        XCTAssertEqual(StructuredOutput.schemaMatch(#"{"name": "Ada", "age": 36, "tags": ["a", "b"], "nick": null}"#, schema: person), 1)
        XCTAssertEqual(StructuredOutput.schemaMatch(#"{"name": "Ada", "age": 36.5}"#, schema: person), 0)
        XCTAssertEqual(StructuredOutput.schemaMatch(#"{"name": "Ada"}"#, schema: person), 0)
        XCTAssertEqual(StructuredOutput.schemaMatch(#"{"name": "Ada", "age": 1, "extra": 1}"#, schema: person), 0)
        XCTAssertEqual(StructuredOutput.schemaMatch(#"{"name": "Ada", "age": 1, "tags": ["c"]}"#, schema: person), 0)
        XCTAssertEqual(StructuredOutput.schemaMatch(#"{"name": "Ada", "age": 1, "nick": 3}"#, schema: person), 0)
        XCTAssertEqual(StructuredOutput.schemaMatch("not json", schema: person), 0)
        XCTAssertEqual(person.violations(of: try JSONValue.parse(Data(#"{"name": 1, "age": 2, "x": 0}"#.utf8))),
                       ["$.name: expected string, got 1", "$: property 'x' is not allowed"])
        // Without additionalProperties false, extra properties are fine; a boolean is not a number.
        let open = try schema(#"{"type": "object", "properties": {"n": {"type": "number"}}}"#)
        XCTAssertEqual(StructuredOutput.schemaMatch(#"{"n": 2, "x": 1}"#, schema: open), 1)
        XCTAssertEqual(StructuredOutput.schemaMatch(#"{"n": true}"#, schema: open), 0)
    }

    func testUnsupportedSchemasAreRejected() {
        XCTAssertThrowsError(try schema(#"{"type": "object", "minProperties": 1}"#)) { error in
            XCTAssertTrue("\(error)".contains("keyword 'minProperties' is not supported"), "\(error)")
        }
        XCTAssertThrowsError(try schema(#"{"properties": {"a": {"type": "text"}}}"#)) { error in
            XCTAssertTrue("\(error)".hasPrefix("test: schema.properties.a: 'type' must be one of"), "\(error)")
        }
        XCTAssertThrowsError(try schema(#"{"additionalProperties": {"type": "string"}}"#))
        XCTAssertThrowsError(try schema(#"{"required": "a"}"#))
    }

    func testRegexFullMatchAndSearch() throws {
        let full = try TextPattern(#"\d{3}-\d{4}"#, mode: .fullMatch)
        let search = try TextPattern(#"\d{3}-\d{4}"#, mode: .search)
        XCTAssertEqual(StructuredOutput.regexMatch("555-1234", pattern: full), 1)
        XCTAssertEqual(StructuredOutput.regexMatch("call 555-1234 now", pattern: full), 0)
        XCTAssertEqual(StructuredOutput.regexMatch("call 555-1234 now", pattern: search), 1)
        XCTAssertEqual(StructuredOutput.regexMatch("call me", pattern: search), 0)
        XCTAssertTrue(try TextPattern("(?i)yes|no", mode: .fullMatch).matches("YES"))
        XCTAssertThrowsError(try TextPattern("(unclosed", mode: .search)) { error in
            XCTAssertTrue("\(error)".contains("'(unclosed' does not compile"), "\(error)")
        }
    }

    func testReportCountsSchemaAndRegexOnlyWhenAsked() throws {
        let pairs = [GenerationPair(prediction: #"{"a": 1}"#, references: ["x"]),
                     GenerationPair(prediction: "nope", references: ["x"]),
                     GenerationPair(prediction: #"{"a": "s"}"#, references: ["x"], schema: try schema(#"{"type": "object"}"#))]
        let withSchema = GenerationReport(pairs: pairs, options: GenerationMetricOptions(
            schema: try schema(#"{"properties": {"a": {"type": "integer"}}}"#), pattern: try TextPattern("\\{.*\\}", mode: .fullMatch)))
        XCTAssertEqual(withSchema.mean(\.jsonValid), 2.0 / 3, accuracy: 1e-12)
        // Pair 3 uses its own schema (any object), so it matches although "a" is a string.
        XCTAssertEqual(try XCTUnwrap(withSchema.mean(\.schemaMatch)), 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(withSchema.mean(\.regexMatch)), 2.0 / 3, accuracy: 1e-12)
        let plain = GenerationReport(pairs: Array(pairs.prefix(2)))
        XCTAssertNil(plain.mean(\.schemaMatch))
        XCTAssertNil(plain.mean(\.regexMatch))
    }
}

final class BootstrapTests: XCTestCase {
    func testPercentileInterpolatesLikeNumpy() {
        // numpy.percentile([1, 2, 3, 4], [2.5, 50, 97.5]) = [1.075, 2.5, 3.925]
        XCTAssertEqual(Bootstrap.percentile([1, 2, 3, 4], 0.025), 1.075, accuracy: 1e-12)
        XCTAssertEqual(Bootstrap.percentile([1, 2, 3, 4], 0.5), 2.5, accuracy: 1e-12)
        XCTAssertEqual(Bootstrap.percentile([1, 2, 3, 4], 0.975), 3.925, accuracy: 1e-12)
    }

    func testIntervalsAreSeededAndBracketTheMean() {
        var random = SeededGeneratorSource(seed: 7)
        let scores = (0..<200).map { _ in random.bit() }
        let mean = scores.reduce(0, +) / 200
        let a = Bootstrap(resamples: 500, seed: 3).mean(scores)
        XCTAssertEqual(a, Bootstrap(resamples: 500, seed: 3).mean(scores), "same seed, same interval")
        XCTAssertNotEqual(a, Bootstrap(resamples: 500, seed: 4).mean(scores))
        XCTAssertEqual(a.estimate, mean, accuracy: 1e-12)
        XCTAssertLessThan(a.lower, mean)
        XCTAssertGreaterThan(a.upper, mean)
        // A binomial mean's 95% interval is about ±1.96·sqrt(p(1-p)/n); the bootstrap should be near it.
        let halfWidth = 1.96 * (mean * (1 - mean) / 200).squareRoot()
        XCTAssertEqual((a.upper - a.lower) / 2, halfWidth, accuracy: 0.25 * halfWidth, "interval \(a), normal approximation ±\(halfWidth)")
        let constant = Bootstrap().mean([0.5, 0.5, 0.5])
        XCTAssertEqual(constant, ConfidenceInterval(estimate: 0.5, lower: 0.5, upper: 0.5, level: 0.95))
    }

    func testPairedDifferenceKeepsThePairing() throws {
        // b is a plus a constant: every resample of the difference is exactly that constant.
        let a = (0..<50).map { Double($0 % 7) / 7 }
        let b = a.map { $0 + 0.1 }
        let difference = try Bootstrap(resamples: 200, seed: 1).pairedDifference(b, a)
        XCTAssertEqual(difference.estimate, 0.1, accuracy: 1e-12)
        XCTAssertEqual(difference.lower, 0.1, accuracy: 1e-12)
        XCTAssertEqual(difference.upper, 0.1, accuracy: 1e-12)
        XCTAssertThrowsError(try Bootstrap().pairedDifference([1], [1, 2]))
    }

    /// Corpus BLEU's interval from resampled segment statistics, the use the general form is for.
    func testIntervalOfACorpusStatistic() {
        let hypotheses = ["the cat sat on the mat", "a dog ran", "hello world", "it rains today", "good morning all"]
        let references = [["the cat sat on a mat"], ["the dog ran"], ["hello world"], ["it is raining today"], ["good morning everyone"]]
        let statistics = zip(hypotheses, references).map { BLEUStatistics(hypothesis: $0, references: $1) }
        let bootstrap = Bootstrap(resamples: 300, seed: 2)
        let corpus = BLEU.corpusScore(hypotheses: hypotheses, references: references)
        let interval = bootstrap.interval(estimate: corpus, count: statistics.count) { indices in
            BLEU.score(indices.reduce(BLEUStatistics()) { $0 + statistics[$1] })
        }
        XCTAssertEqual(interval.estimate, BLEU.score(statistics.reduce(BLEUStatistics(), +)), accuracy: 1e-12)
        XCTAssertLessThan(interval.lower, corpus)
        XCTAssertGreaterThan(interval.upper, corpus)
        // With the mean as the statistic, the general form is `mean`.
        let scores = [0.0, 1, 1, 0.5, 0.25]
        XCTAssertEqual(bootstrap.interval(estimate: 0.55, count: 5) { $0.reduce(0.0) { $0 + scores[$1] } / 5 }, bootstrap.mean(scores))
    }
}

/// Coin flips for the tests, from the project's seeded generator.
struct SeededGeneratorSource {
    var generator: SeededGenerator
    init(seed: UInt64) { generator = SeededGenerator(seed: seed) }
    mutating func bit() -> Double { generator.next() & 1 == 1 ? 1 : 0 }
}
