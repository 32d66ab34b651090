import Foundation
import XCTest
import LatheTestSupport
@testable import LatheData

/// `lathe data preview` shows what the trainer trains on.
final class PreviewTests: TinyModelTestCase {
    func rows(_ lines: [String]) throws -> [DatasetRow] {
        let url = tiny.file("rows-\(UUID().uuidString).jsonl")
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return try DatasetReader.read(url)
    }

    func testPreviewIdsAndMaskAreTheTrainersAndAnswersEndWithEOS() throws {
        let renderer = SFTRenderer(model: lm, options: try SFTOptions(maxLength: 64))
        // One file per format: a dataset holds one format.
        let data = try rows([#"{"messages": [{"role": "user", "content": "the tea"}, {"role": "assistant", "content": "then the inn"}]}"#])
            + rows([#"{"prompt": "an inn", "completion": " on the river"}"#])
        let previews = try SFTPreview.make(rows: data, renderer: renderer)
        for (preview, row) in zip(previews, data) {
            let example = try renderer.render(row)
            XCTAssertEqual(preview.ids, example.ids)
            XCTAssertEqual(preview.supervised, example.supervised)
            XCTAssertTrue(preview.answersEndWithEOS, preview.rendered(colour: false))
        }
        XCTAssertTrue(previews[0].rendered(colour: false).contains("[[then the inn<|im_end|>"), previews[0].rendered(colour: false))
        // Put the loss on the prompt only, and the check sees an answer without EOS.
        XCTAssertFalse(SFTPreview.answersEndWithStopToken(ids: previews[1].ids, supervised: previews[1].supervised.map { !$0 },
                                                          model: lm))
    }
}
