import Foundation
import XCTest
@testable import LatheTemplates

/// Real chat templates (SmolLM2, Qwen2.5, Llama 3.1/3.2, Mistral v0.1/v0.3, Qwen3, DeepSeek-R1-Distill,
/// Phi-3.5) rendered over several conversations, compared byte for byte with transformers' renderer
/// (fixtures from scripts/reference/templates.py).
final class ReferenceTemplateTests: XCTestCase {
    private static let fixtureURL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/templates/templates.json")

    private struct Fixture {
        var templates: TemplateDictionary
        var cases: [TemplateValue]
        /// The local time `strftime_now` saw when the fixtures were rendered.
        var now: Date
    }

    private func loadFixture() throws -> Fixture {
        let text = try String(contentsOf: Self.fixtureURL, encoding: .utf8)
        guard case .dictionary(let root) = try TemplateValue(jsonText: text),
              case .dictionary(let templates)? = root["templates"],
              case .array(let cases)? = root["cases"],
              case .string(let stamp)? = root["now"] else {
            XCTFail("fixture \(Self.fixtureURL.path) lacks 'templates', 'cases' or 'now'")
            throw CocoaError(.fileReadCorruptFile)
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone.current
        formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        guard let now = formatter.date(from: stamp) else {
            XCTFail("fixture date \(stamp) is not yyyy-MM-ddTHH:mm:ss")
            throw CocoaError(.fileReadCorruptFile)
        }
        return Fixture(templates: templates, cases: cases, now: now)
    }

    private func expectedOutput(_ fixture: Fixture, case name: String) -> String? {
        for testCase in fixture.cases {
            if case .dictionary(let fields) = testCase, case .string(name)? = fields["name"],
               case .string(let expected)? = fields["expected"] {
                return expected
            }
        }
        return nil
    }

    /// The first position where two strings differ, with some context, for failure messages.
    private func firstDifference(_ actual: String, _ expected: String) -> String {
        let a = Array(actual.unicodeScalars), e = Array(expected.unicodeScalars)
        var index = 0
        while index < min(a.count, e.count), a[index] == e[index] { index += 1 }
        func window(_ scalars: [Unicode.Scalar]) -> String {
            let slice = scalars[max(0, index - 20)..<min(scalars.count, index + 40)]
            return String(String.UnicodeScalarView(slice)).debugDescription
        }
        return "first difference at scalar \(index) (lengths \(a.count) vs \(e.count)): got \(window(a)), expected \(window(e))"
    }

    func testEveryFixtureCaseMatchesTransformers() throws {
        let fixture = try loadFixture()
        XCTAssertGreaterThanOrEqual(fixture.cases.count, 40, "fixture should hold the reference cases")
        var parsed: [String: ChatTemplate] = [:]
        for (name, source) in fixture.templates.pairs {
            guard case .string(let text) = source else { XCTFail("template \(name) is not a string"); continue }
            do {
                parsed[name] = try ChatTemplate(source: text)
            } catch {
                XCTFail("template \(name) failed to parse: \(error)")
            }
        }
        XCTAssertEqual(parsed.count, fixture.templates.count, "every reference template should parse")
        XCTAssertGreaterThanOrEqual(parsed.count, 9)
        var checked = 0
        for testCase in fixture.cases {
            guard case .dictionary(let fields) = testCase,
                  case .string(let caseName)? = fields["name"],
                  case .string(let templateName)? = fields["template"],
                  case .dictionary(let contextDictionary)? = fields["context"] else {
                XCTFail("malformed fixture case \(testCase.pythonRepr)")
                continue
            }
            guard let template = parsed[templateName] else { continue }
            var context: [String: TemplateValue] = [:]
            for (key, value) in contextDictionary.pairs { context[key] = value }
            let now = fixture.now
            do {
                let rendered = try template.render(context: context, now: now)
                if case .string(let expected)? = fields["expected"] {
                    XCTAssertEqual(rendered, expected, "\(caseName): \(firstDifference(rendered, expected))")
                } else {
                    XCTFail("\(caseName): rendered but transformers raised \(fields["error"]?.printed ?? "?")")
                }
            } catch let error as TemplateError {
                if case .string(let expectedError)? = fields["error"] {
                    XCTAssertEqual(error.kind, .raised, "\(caseName): \(error)")
                    XCTAssertEqual(error.message, expectedError, caseName)
                } else {
                    XCTFail("\(caseName): unexpected error \(error)")
                }
            }
            checked += 1
        }
        XCTAssertEqual(checked, fixture.cases.count, "every case should have been rendered")
    }

    /// The convenience API sets the same variables transformers does (tools and documents None).
    func testConvenienceRenderMatchesFixture() throws {
        let fixture = try loadFixture()
        guard case .string(let source)? = fixture.templates["llama3.2"],
              let expected = expectedOutput(fixture, case: "llama3.2/system_gen") else {
            return XCTFail("fixture lacks the llama3.2 template or its system_gen case")
        }
        let template = try ChatTemplate(source: source)
        let messages = [
            ChatMessage(role: "system", content: "  You are a terse assistant.\nAnswer in one line.  "),
            ChatMessage(role: "user", content: "Hello! What is 2+2?"),
        ]
        let rendered = try template.render(messages: messages, addGenerationPrompt: true, bosToken: "<|begin_of_text|>",
                                           eosToken: "<|eot_id|>", now: fixture.now)
        XCTAssertEqual(rendered, expected, firstDifference(rendered, expected))
    }
}
