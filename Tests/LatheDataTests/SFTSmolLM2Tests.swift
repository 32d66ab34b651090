import Foundation
import LatheData
import LatheModels
import LatheTemplates
import LatheTestSupport
import XCTest

/// The renderer on the real SmolLM2-135M-Instruct (skipped when the model is not installed), against
/// transformers' `apply_chat_template(..., return_assistant_tokens_mask=True)` with TRL-style generation markers
/// (fixtures from scripts/reference/sft.py).
final class SFTSmolLM2Tests: XCTestCase {
    static let model: Result<LanguageModel, Error> = Result { try LanguageModel.load(try DefaultModelFile.url().path) }

    func renderer() throws -> SFTRenderer {
        SFTRenderer(model: try Self.model.get(), options: try SFTOptions(maxLength: 512))
    }

    func testTwoTurnConversationSupervisesTheAnswersAndTheirEndOfTurn() throws {
        let r = try renderer()
        let messages = [ChatMessage(role: "user", content: "What is 2+2?"), ChatMessage(role: "assistant", content: "4."),
                        ChatMessage(role: "user", content: "And 3+3?"), ChatMessage(role: "assistant", content: "It is 6.")]
        let example = try r.render(messages: messages, source: "chat.jsonl:1")
        XCTAssertEqual(supervisedSpans(example, r.model), ["4.<|im_end|>\n", "It is 6.<|im_end|>\n"])
        // <|im_end|> is SmolLM2's EOS: the tuned model learns to stop.
        let eos = try XCTUnwrap(r.model.tokenizer.eosTokenID)
        XCTAssertEqual(r.model.tokenizer.tokenText(eos), "<|im_end|>")
        XCTAssertEqual(zip(example.ids, example.supervised).filter { $0.0 == eos && $0.1 }.count, 2)
    }

    func testMasksEqualTransformersAssistantTokenMasks() throws {
        let r = try renderer()
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/sft/smollm2_masks.json")
        let fixture = try JSONValue.parse(Data(contentsOf: url))
        let cases = try XCTUnwrap(fixture["cases"]?.array)
        XCTAssertEqual(cases.count, 3)
        for (index, testCase) in cases.enumerated() {
            let messages = try XCTUnwrap(testCase["messages"]?.array).map {
                ChatMessage(role: $0["role"]?.string ?? "", content: $0["content"]?.string ?? "")
            }
            let ids = try XCTUnwrap(testCase["ids"]?.array).compactMap(\.int)
            let supervised = try XCTUnwrap(testCase["supervised"]?.array).compactMap(\.bool)
            let example = try r.render(messages: messages, source: "fixture:\(index + 1)")
            XCTAssertEqual(example.ids, ids, "case \(index): token ids")
            let differing = zip(example.supervised, supervised).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
            XCTAssertEqual(example.supervised, supervised, "case \(index): masks differ at token positions \(differing)")
        }
    }
}
