import Foundation
import XCTest
@testable import LatheTemplates

/// Small templates that pin down the jinja2 behaviour chat templates depend on, each compared
/// exactly with jinja2 as transformers configures it (the "semantics" fixture cases from
/// scripts/reference/templates.py), plus error positions checked by hand.
final class JinjaSemanticsTests: XCTestCase {
    private static let fixtureURL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/templates/templates.json")

    private func render(_ source: String, _ context: [String: TemplateValue] = [:]) throws -> String {
        try ChatTemplate(source: source).render(context: context)
    }

    private func templateError(_ source: String, _ context: [String: TemplateValue] = [:],
                               file: StaticString = #filePath, line: UInt = #line) -> TemplateError? {
        do {
            _ = try render(source, context)
            XCTFail("expected an error for \(source.debugDescription)", file: file, line: line)
        } catch let error as TemplateError {
            return error
        } catch {
            XCTFail("expected a TemplateError, got \(error)", file: file, line: line)
        }
        return nil
    }

    func testSemanticsFixtureMatchesJinja2() throws {
        let text = try String(contentsOf: Self.fixtureURL, encoding: .utf8)
        guard case .dictionary(let root) = try TemplateValue(jsonText: text),
              case .array(let cases)? = root["semantics"], case .string(let stamp)? = root["now"] else {
            return XCTFail("fixture lacks 'semantics' or 'now'")
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone.current
        formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        let now = try XCTUnwrap(formatter.date(from: stamp))
        XCTAssertGreaterThanOrEqual(cases.count, 60)
        for testCase in cases {
            guard case .dictionary(let fields) = testCase, case .string(let name)? = fields["name"],
                  case .string(let source)? = fields["source"], case .dictionary(let contextDictionary)? = fields["context"] else {
                XCTFail("malformed semantics case \(testCase.pythonRepr)")
                continue
            }
            var context: [String: TemplateValue] = [:]
            for (key, value) in contextDictionary.pairs { context[key] = value }
            do {
                let rendered = try ChatTemplate(source: source).render(context: context, now: now)
                if case .string(let expected)? = fields["expected"] {
                    XCTAssertEqual(rendered, expected, name)
                } else {
                    XCTFail("\(name): rendered \(rendered.debugDescription) but jinja2 raised \(fields["error"]?.printed ?? "?")")
                }
            } catch let error as TemplateError {
                guard case .string(let expectedError)? = fields["error"] else {
                    XCTFail("\(name): unexpected error \(error)")
                    continue
                }
                if expectedError.hasPrefix("TemplateError: ") {
                    XCTAssertEqual(error.kind, .raised, name)
                    XCTAssertEqual(error.message, String(expectedError.dropFirst("TemplateError: ".count)), name)
                } else {
                    XCTAssertNotEqual(error.kind, .raised, name)
                    XCTAssertNotNil(error.line, "\(name): error should carry a line: \(error)")
                }
            }
        }
    }

    // MARK: - Errors with positions

    func testUnclosedForNamesBlockAndPosition() {
        let error = templateError("line one\n  {% for x in y %}\n{{ x }}", ["y": .array([])])
        XCTAssertEqual(error?.kind, .syntax)
        XCTAssertEqual(error?.line, 2)
        XCTAssertEqual(error?.column, 3)
        XCTAssertTrue(error?.message.contains("for") == true, error?.message ?? "")
    }

    func testUnclosedTagsReportTheirOpener() {
        let variable = templateError("ab\ncd {{ x \n\nmore")
        XCTAssertEqual(variable?.kind, .syntax)
        XCTAssertEqual(variable?.line, 2)
        XCTAssertEqual(variable?.column, 4)
        let comment = templateError("x {# never closed")
        XCTAssertEqual(comment?.line, 1)
        XCTAssertEqual(comment?.column, 3)
        let string = templateError("{{ 'open }}")
        XCTAssertEqual(string?.kind, .syntax)
    }

    func testStrayEndTagIsAnError() {
        let error = templateError("{% if true %}x{% endfor %}{% endif %}")
        XCTAssertEqual(error?.kind, .syntax)
        XCTAssertEqual(error?.column, 15)
        XCTAssertNotNil(templateError("{% endif %}"))
    }

    func testLoopControlsOutsideLoopAreSyntaxErrors() {
        XCTAssertEqual(templateError("{% if true %}{% break %}{% endif %}")?.kind, .syntax)
        XCTAssertEqual(templateError("{% for x in [] %}{% endfor %}\n{% continue %}")?.line, 2)
    }

    func testUnsupportedConstructsAreNamed() {
        for (source, construct, column) in [
            ("{% include 'x.jinja' %}", "include", 1),
            ("a\n{% extends 'base' %}", "extends", 1),
            ("{{ messages | frobnicate }}", "frobnicate", 13),
            ("{{ x is frobnicated }}", "frobnicated", 6),
            ("{% for x in y recursive %}{% endfor %}", "recursive", 1),
        ] {
            let error = templateError(source)
            XCTAssertEqual(error?.kind, .unsupported, source)
            XCTAssertTrue(error?.message.contains(construct) == true, "\(source): \(error?.message ?? "")")
            XCTAssertEqual(error?.column, column, source)
        }
    }

    func testRuntimeErrorsCarryPosition() {
        let error = templateError("ok\n{{ missing.attribute }}")
        XCTAssertEqual(error?.kind, .runtime)
        XCTAssertEqual(error?.line, 2)
        XCTAssertEqual(error?.column, 4)
        XCTAssertEqual(error?.message, "'missing' is undefined")
        let raised = templateError("{{ raise_exception('Only user and assistant roles') }}")
        XCTAssertEqual(raised?.kind, .raised)
        XCTAssertEqual(raised?.description, "Only user and assistant roles")
    }

    // MARK: - Values

    func testTojsonKeepsKeyOrderAndUnicode() throws {
        let value = try TemplateValue(jsonText: #"{"z": 1, "a": {"é": "🌍\n"}, "m": [1.5, 2, true, null]}"#)
        XCTAssertEqual(try value.pythonJSON(indent: nil), #"{"z": 1, "a": {"é": "🌍\n"}, "m": [1.5, 2, true, null]}"#)
        XCTAssertEqual(try render("{{ v | tojson(indent=1) }}", ["v": value]),
                       "{\n \"z\": 1,\n \"a\": {\n  \"é\": \"🌍\\n\"\n },\n \"m\": [\n  1.5,\n  2,\n  true,\n  null\n ]\n}")
    }

    func testPythonNumberPrinting() throws {
        XCTAssertEqual(try render("{{ a }} {{ b }} {{ c }} {{ d }} {{ e }}",
                                  ["a": .int(3), "b": .double(3), "c": .double(0.1), "d": .double(1e-5), "e": .double(2.5e16)]),
                       "3 3.0 0.1 1e-05 2.5e+16")
    }

    func testMixedTypeEqualityAndOrdering() throws {
        XCTAssertEqual(TemplateValue.int(1), TemplateValue.double(1))
        XCTAssertEqual(TemplateValue.bool(true), TemplateValue.int(1))
        XCTAssertNotEqual(TemplateValue.string("1"), TemplateValue.int(1))
        XCTAssertNotEqual(TemplateValue.undefined, TemplateValue.none)
        XCTAssertEqual(try render("{{ 2 < 10 }} {{ '2' < '10' }}"), "True False")
        XCTAssertEqual(templateError("{{ none < 1 }}")?.kind, .runtime)
    }

    func testNamespaceSurvivesLoopScope() throws {
        let source = "{% set ns = namespace(last='') %}{% for m in ms %}{% set ns.last = m %}{% set local = m %}{% endfor %}{{ ns.last }}[{{ local }}]"
        XCTAssertEqual(try render(source, ["ms": .array([.string("a"), .string("b")])]), "b[]")
    }
}

final class TemplateValueLiteralTests: XCTestCase {
    func testLiteralsBuildOrderedValues() throws {
        let tool: TemplateValue = ["name": "f", "parameters": ["b": 1, "a": [true, .none, 2.5]]]
        XCTAssertEqual(try tool.pythonJSON(indent: nil), #"{"name": "f", "parameters": {"b": 1, "a": [true, null, 2.5]}}"#)
        let template = try ChatTemplate(source: "{{ messages[0].content }}|{{ tools | length }}|{{ tools }}|{{ documents }}")
        let rendered = try template.render(messages: [ChatMessage(role: "user", content: "hi")], addGenerationPrompt: false,
                                           bosToken: "", eosToken: "", extra: ["tools": [tool]])
        XCTAssertEqual(rendered, "hi|1|[{'name': 'f', 'parameters': {'b': 1, 'a': [True, None, 2.5]}}]|None")
    }
}
