import Foundation
import XCTest
@testable import LatheTemplates

/// Hostile or broken templates must end in a `TemplateError`, never a crash or a hang.
final class MalformedTemplateTests: XCTestCase {
    private let context: [String: TemplateValue] = [
        "messages": .array([
            .dictionary(TemplateDictionary([("role", .string("user")), ("content", .string("hi"))])),
        ]),
        "n": .int(Int.min), "big": .int(Int.max), "text": .string("abc"),
    ]

    /// Renders `source`; returns the error kind, or nil if it rendered.
    private func outcome(_ source: String) throws -> TemplateError.Kind? {
        do {
            _ = try ChatTemplate(source: source).render(context: context)
            return nil
        } catch let error as TemplateError {
            return error.kind
        }
    }

    func testArithmeticEdgesThrowInsteadOfTrapping() throws {
        for source in ["{{ -n }}", "{{ n // -1 }}", "{{ n % -1 }}", "{{ n | abs }}", "{{ big + 1 }}", "{{ big * 2 }}",
                       "{{ 2 ** 64 }}", "{{ 1e300 | int }}", "{{ range(n, big) | length }}", "{{ 'ab' * big }}",
                       "{{ [1] * big }}", "{{ 1 / 0 }}", "{{ 1 // 0 }}", "{{ 1.5 % 0 }}"] {
            XCTAssertEqual(try outcome(source), .runtime, source)
        }
        XCTAssertNil(try outcome("{{ 1 ** 1000000000000 }}{{ text[::big] }}{{ text[n:big] }}{{ 'x' | indent(-5) }}"))
    }

    func testDeepNestingIsRefused() throws {
        let parentheses = String(repeating: "(", count: 5_000) + "1" + String(repeating: ")", count: 5_000)
        XCTAssertEqual(try outcome("{{ \(parentheses) }}"), .unsupported)
        XCTAssertEqual(try outcome("{{ " + String(repeating: "not ", count: 5_000) + "1 }}"), .unsupported)
        let blocks = String(repeating: "{% if true %}", count: 5_000) + String(repeating: "{% endif %}", count: 5_000)
        XCTAssertEqual(try outcome(blocks), .unsupported)
        let recursive = "{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}"
        XCTAssertEqual(try outcome(recursive), .runtime)
        XCTAssertThrowsError(try TemplateValue(jsonText: String(repeating: "[", count: 10_000)))
    }

    /// Random splices of template syntax: each must parse and render or throw a TemplateError.
    func testRandomFragmentsNeverCrash() throws {
        let fragments = ["{{", "}}", "{%", "%}", "{#", "#}", "-", "+", "if", "for", "in", "endif", "endfor", "else",
                         "elif", "set", "x", "=", "messages", "[", "]", "(", ")", "{", "}", ".", "role", ":", ",",
                         "'s'", "\"t\"", "1", "2.5", "|", "length", "tojson", "is", "not", "defined", "and", "or",
                         "~", "*", "/", "//", "%", "**", "loop", "index", "macro", "endmacro", "raw", "endraw",
                         "break", "continue", "namespace", "ns", "\n", " ", "  ", "\\", "'", "\"", "n", "text"]
        let seed = UInt64(20_241_122)
        var generator = SplitMix64(seed: seed)
        var outcomes: [String: Int] = [:]
        for iteration in 0..<20_000 {
            let count = Int(generator.next() % 24) + 1
            let body = (0..<count).map { _ in fragments[Int(generator.next() % UInt64(fragments.count))] }.joined(separator: " ")
            // Mostly inside a tag, so expressions and statements get exercised, not just text.
            let source = ["{{ \(body) }}", "{% \(body) %}", "x {% for m in messages %}{{ \(body) }}{% endfor %}", body][Int(generator.next() % 4)]
            let key: String
            do {
                key = try outcome(source).map { "\($0)" } ?? "rendered"
            } catch {
                return XCTFail("seed \(seed) iteration \(iteration): non-template error \(error) for \(source.debugDescription)")
            }
            outcomes[key, default: 0] += 1
        }
        // Most random splices are malformed; the test is meaningful only if every outcome occurs.
        XCTAssertGreaterThan(outcomes["syntax", default: 0], 100, "outcomes: \(outcomes)")
        XCTAssertGreaterThan(outcomes["rendered", default: 0], 100, "outcomes: \(outcomes)")
        XCTAssertGreaterThan(outcomes["runtime", default: 0], 10, "outcomes: \(outcomes)")
    }
}

/// A tiny seeded generator so failures can be replayed from the printed seed.
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
