import Foundation
import LatheData
import LatheFormats
import LatheModels
import LatheTemplates
import LatheTestSupport
import XCTest

/// The tiny test model (byte-level tokenizer, ChatML template, EOS `<|im_end|>`), written once per test run.
enum TinySFTModel {
    static let shared: Result<LanguageModel, Error> = Result {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-sft-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let url = folder.appendingPathComponent("tiny.gguf")
        try TinyModel.write(to: url)
        return try LanguageModel.load(url.path)
    }

    /// The same model with `tokenizer.ggml.add_bos_token` true, so that its tokenizer adds `<|im_start|>` as BOS.
    static let addingBOS: Result<LanguageModel, Error> = Result {
        let source = try GGUFFile(url: try shared.get().files.url)
        var writer = try GGUFWriter()
        for key in source.metadataKeys where key != "general.alignment" {
            guard let value = source.metadata[key] else { continue }
            try writer.setValue(key == "tokenizer.ggml.add_bos_token" ? .bool(true) : value, forKey: key)
        }
        for tensor in source.tensors {
            try writer.addTensor(name: tensor.name, dimensions: tensor.dimensions, values: try source.floats(of: tensor), type: .f32)
        }
        let url = source.url.deletingLastPathComponent().appendingPathComponent("tiny-bos.gguf")
        try writer.write(to: url)
        return try LanguageModel.load(url.path)
    }

    static func load() throws -> LanguageModel { try shared.get() }
}

/// The decoded text of each maximal run of supervised tokens.
func supervisedSpans(_ example: SFTExample, _ model: LanguageModel) -> [String] {
    var spans: [[Int]] = []
    var inSpan = false
    for (id, supervised) in zip(example.ids, example.supervised) {
        if supervised {
            if !inSpan { spans.append([]) }
            spans[spans.count - 1].append(id)
        }
        inSpan = supervised
    }
    return spans.map { model.tokenizer.decode($0) }
}

final class SFTRendererTests: XCTestCase {
    func renderer(_ options: SFTOptions? = nil, template: ChatTemplate? = nil) throws -> SFTRenderer {
        SFTRenderer(model: try TinySFTModel.load(), options: try options ?? SFTOptions(maxLength: 256), chatTemplate: template)
    }

    let conversation = [
        ChatMessage(role: "system", content: "Be brief."),
        ChatMessage(role: "user", content: "question 1"),
        ChatMessage(role: "assistant", content: "answer 1"),
        ChatMessage(role: "user", content: "question 2"),
        ChatMessage(role: "assistant", content: "answer 2"),
    ]

    func testTextSupervisesEveryTokenButTheFirstAndEndsWithEOS() throws {
        let r = try renderer()
        let example = try r.render(text: "the cat", source: "t.jsonl:1")
        let eos = try XCTUnwrap(r.model.tokenizer.eosTokenID)
        // The tiny tokenizer adds no BOS (add_bos_token false), so the ids are the text's and EOS.
        XCTAssertEqual(example.ids, r.model.tokenizer.encode("the cat", addSpecialTokens: false) + [eos])
        XCTAssertEqual(example.supervised, [false] + Array(repeating: true, count: example.ids.count - 1))
        XCTAssertEqual(example.source, "t.jsonl:1")
        XCTAssertFalse(example.truncated)
        // A text that already ends with EOS gets no second one, as TRL's add_eos.
        XCTAssertEqual(try r.render(text: "the cat<|im_end|>", source: "t.jsonl:2").ids, example.ids)
    }

    func testTokenizerBOSStartsTextAndPromptAndIsNeverSupervised() throws {
        let model = try TinySFTModel.addingBOS.get()
        let bos = try XCTUnwrap(model.tokenizer.bosTokenID)
        XCTAssertEqual(model.tokenizer.prefixIDs, [bos])
        let r = SFTRenderer(model: model, options: try SFTOptions(maxLength: 64))
        let text = try r.render(text: "the", source: "t:1")
        XCTAssertEqual(text.ids, [bos] + model.tokenizer.encode("the", addSpecialTokens: false) + [model.tokenizer.eosTokenID ?? -1])
        XCTAssertEqual(text.supervised, [false] + Array(repeating: true, count: text.ids.count - 1))
        let pair = try r.render(prompt: "a", completion: "b", source: "p:1")
        XCTAssertEqual(model.tokenizer.decode(pair.ids), "<|im_start|>ab<|im_end|>")
        XCTAssertEqual(pair.supervised, [false, false, true, true])
    }

    func testPromptCompletionSupervisesTheCompletionAndEOS() throws {
        let r = try renderer()
        let example = try r.render(prompt: "Q: the", completion: " answer", source: "p.jsonl:3")
        XCTAssertEqual(supervisedSpans(example, r.model), [" answer<|im_end|>"])
        let promptCount = r.model.tokenizer.encode("Q: the", addSpecialTokens: false).count
        XCTAssertEqual(r.model.tokenizer.decode(Array(example.ids[..<promptCount])), "Q: the")
        XCTAssertEqual(Array(example.supervised[..<promptCount]), Array(repeating: false, count: promptCount))
        XCTAssertEqual(example.ids.last, r.model.tokenizer.eosTokenID)

        let all = try renderer(SFTOptions(maxLength: 256, lossOn: .all)).render(prompt: "Q: the", completion: " answer", source: "p.jsonl:3")
        XCTAssertEqual(all.ids, example.ids)
        XCTAssertEqual(all.supervised, [false] + Array(repeating: true, count: all.ids.count - 1))

        let noPrompt = try r.render(prompt: "", completion: "ab", source: "p.jsonl:4")
        XCTAssertEqual(noPrompt.supervised, [false, true, true], "the first token is never supervised")
    }

    func testConversationSupervisesEachAssistantTurnWithItsEndOfTurn() throws {
        let r = try renderer()
        let example = try r.render(messages: conversation, source: "c.jsonl:1")
        XCTAssertEqual(r.model.tokenizer.decode(example.ids), try r.model.renderChat(conversation, addGenerationPrompt: false))
        // The content, <|im_end|> (the EOS) and the template's newline after it, as TRL's ChatML training templates.
        XCTAssertEqual(supervisedSpans(example, r.model), ["answer 1<|im_end|>\n", "answer 2<|im_end|>\n"])
        let imEnd = try XCTUnwrap(r.model.tokenizer.id(of: "<|im_end|>"))
        let supervisedEnds = zip(example.ids, example.supervised).filter { $0.0 == imEnd && $0.1 }.count
        XCTAssertEqual(supervisedEnds, 2, "the <|im_end|> closing each assistant turn is supervised, no other")
        // Nothing of the system and user turns, nor the assistant header, is supervised.
        let unsupervised = r.model.tokenizer.decode(zip(example.ids, example.supervised).filter { !$0.1 }.map(\.0))
        XCTAssertEqual(unsupervised, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nquestion 1<|im_end|>\n" +
                       "<|im_start|>assistant\n<|im_start|>user\nquestion 2<|im_end|>\n<|im_start|>assistant\n")

        let all = try renderer(SFTOptions(maxLength: 256, lossOn: .all)).render(messages: conversation, source: "c.jsonl:1")
        XCTAssertEqual(all.ids, example.ids)
        XCTAssertEqual(all.supervised, [false] + Array(repeating: true, count: all.ids.count - 1))
    }

    func testTruncatedConversationKeepsTheMasksOfWhatRemains() throws {
        let full = try renderer().render(messages: conversation, source: "c.jsonl:1")
        // Cut three tokens before the end: "<|im_end|>", "\n" and the "2" of the second answer go.
        let cut = try renderer(SFTOptions(maxLength: full.ids.count - 3)).render(messages: conversation, source: "c.jsonl:1")
        XCTAssertTrue(cut.truncated)
        let model = try TinySFTModel.load()
        XCTAssertEqual(supervisedSpans(cut, model), ["answer 1<|im_end|>\n", "answer "])
        let left = try renderer(SFTOptions(maxLength: 6, truncation: .left)).render(messages: conversation, source: "c.jsonl:1")
        XCTAssertEqual(model.tokenizer.decode(left.ids), "wer 2<|im_end|>\n")
        XCTAssertEqual(left.supervised, [false, true, true, true, true, true])
    }

    func testConversationWithoutAssistantIsSkipped() throws {
        let messages = [ChatMessage(role: "user", content: "hello")]
        XCTAssertThrowsError(try renderer().render(messages: messages, source: "c.jsonl:7")) { error in
            XCTAssertEqual((error as? SFTSkip)?.reason, .noAssistantMessage)
            XCTAssertEqual((error as? SFTSkip)?.source, "c.jsonl:7")
        }
    }

    func testRightTruncationKeepsTheStartAndIsMarked() throws {
        let r = try renderer(SFTOptions(maxLength: 8))
        let full = try renderer().render(prompt: "ab", completion: "cdefghijkl", source: "p.jsonl:1")
        let example = try r.render(prompt: "ab", completion: "cdefghijkl", source: "p.jsonl:1")
        XCTAssertTrue(example.truncated)
        XCTAssertEqual(example.ids, Array(full.ids.prefix(8)))
        XCTAssertEqual(example.supervised, Array(full.supervised.prefix(8)))
    }

    func testLeftTruncationKeepsTheEndAndNeverSupervisesTheFirstToken() throws {
        let r = try renderer(SFTOptions(maxLength: 5, truncation: .left))
        let example = try r.render(text: "abcdefgh", source: "t.jsonl:1")
        XCTAssertTrue(example.truncated)
        XCTAssertEqual(r.model.tokenizer.decode(example.ids), "efgh<|im_end|>")
        XCTAssertEqual(example.supervised, [false, true, true, true, true])
    }

    func testTruncationThatLeavesNoSupervisedTokenIsASkip() throws {
        let r = try renderer(SFTOptions(maxLength: 4))
        XCTAssertThrowsError(try r.render(prompt: "a long prompt", completion: "x", source: "p.jsonl:9")) { error in
            XCTAssertEqual((error as? SFTSkip)?.reason, .noSupervisedTokenAfterTruncation)
            XCTAssertEqual("\(error)", "p.jsonl:9: skipped: no supervised token left after truncation")
        }
    }

    func testTemplateThatIsNotPrefixPreservingIsAnErrorNamingTheLine() throws {
        // Like Qwen3's reasoning removal: earlier assistant turns render differently once a later turn follows.
        let template = try ChatTemplate(source: """
            {% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}{% if m['role'] == 'assistant' and not loop.last %}\
            {{ 'past' }}{% else %}{{ m['content'] }}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}\
            {% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}
            """)
        let r = try renderer(template: template)
        XCTAssertThrowsError(try r.render(messages: conversation, source: "c.jsonl:4")) { error in
            let error = error as? RowRenderError
            XCTAssertEqual(error?.source, "c.jsonl:4")
            XCTAssertTrue(error?.message.contains("messages[2] (assistant)") == true, "\(String(describing: error))")
        }
        // A single assistant turn is fine with it; and loss on everything needs no spans.
        XCTAssertEqual(supervisedSpans(try r.render(messages: Array(conversation.prefix(3)), source: "c.jsonl:5"), r.model),
                       ["answer 1<|im_end|>\n"])
        XCTAssertNoThrow(try renderer(SFTOptions(maxLength: 256, lossOn: .all), template: template)
            .render(messages: conversation, source: "c.jsonl:4"))
    }

    func testTemplateFailureNamesTheLine() throws {
        let template = try ChatTemplate(source: "{{ raise_exception('roles must alternate') }}")
        XCTAssertThrowsError(try renderer(template: template).render(messages: conversation, source: "c.jsonl:2")) { error in
            let error = error as? RowRenderError
            XCTAssertEqual(error?.source, "c.jsonl:2")
            XCTAssertTrue(error?.message.contains("roles must alternate") == true, "\(String(describing: error))")
        }
    }
}
