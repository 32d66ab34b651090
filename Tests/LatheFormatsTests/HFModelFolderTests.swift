import XCTest
@testable import LatheFormats

/// A sharded Hugging Face folder written with the Python safetensors library (fixture sharded_model/).
final class HFModelFolderTests: XCTestCase {
    func copyOfShardedFolder() throws -> URL {
        let destination = try Fixtures.temporaryFolder(for: self).appendingPathComponent("model")
        try FileManager.default.copyItem(at: Fixtures.url("sharded_model"), to: destination)
        return destination
    }

    func testReadsShardedFolder() throws {
        let expected = try Fixtures.decode(SafetensorsTests.Expected.self, from: "safetensors.json").sharded
        let folder = try HFModelFolder(url: Fixtures.url("sharded_model"))
        XCTAssertEqual(folder.config["model_type"] as? String, "llama")
        XCTAssertEqual(folder.weightFiles.count, 2)
        XCTAssertEqual(folder.tensorNames, expected.keys.sorted())
        XCTAssertEqual(folder.tokenizerConfigURL?.lastPathComponent, "tokenizer_config.json")
        XCTAssertNil(folder.tokenizerURL)
        XCTAssertNil(folder.generationConfigURL)
        for (name, tensor) in expected {
            let (file, info) = try XCTUnwrap(folder.tensor(named: name))
            XCTAssertTrue(file.url.lastPathComponent.hasPrefix("model-0000"))
            XCTAssertEqual(info.dimensions, tensor.shape)
            assertBitIdentical(try folder.floats(named: name), Fixtures.floats(fromBits: tensor.values), name)
        }
        assertFormatError(["sharded_model", "no tensor named x"]) { _ = try folder.floats(named: "x") }
    }

    func testSingleFileFolder() throws {
        let folder = try Fixtures.temporaryFolder(for: self)
        try Data(#"{"model_type": "llama"}"#.utf8).write(to: folder.appendingPathComponent("config.json"))
        try Data("{}".utf8).write(to: folder.appendingPathComponent("tokenizer.json"))
        try FileManager.default.copyItem(at: Fixtures.url("single.safetensors"), to: folder.appendingPathComponent("model.safetensors"))
        let model = try HFModelFolder(url: folder)
        XCTAssertEqual(model.weightFiles.count, 1)
        XCTAssertEqual(model.tensorNames, ["d", "model.a", "model.b", "model.c"])
        XCTAssertEqual(try model.floats(named: "d"), [1.5, -2.0])
        XCTAssertNotNil(model.tokenizerURL)
    }

    func testMissingFilesAreNamed() throws {
        let empty = try Fixtures.temporaryFolder(for: self)
        assertFormatError([empty.lastPathComponent, "config.json"]) { _ = try HFModelFolder(url: empty) }
        try Data("{}".utf8).write(to: empty.appendingPathComponent("config.json"))
        assertFormatError([empty.lastPathComponent, "model.safetensors"]) { _ = try HFModelFolder(url: empty) }

        let missingShard = try copyOfShardedFolder()
        try FileManager.default.removeItem(at: missingShard.appendingPathComponent("model-00002-of-00002.safetensors"))
        assertFormatError([missingShard.path, "model-00002-of-00002.safetensors"]) { _ = try HFModelFolder(url: missingShard) }
    }

    func testIndexedTensorMissingFromShard() throws {
        let folder = try copyOfShardedFolder()
        let index = #"{"weight_map": {"model.embed.weight": "model-00001-of-00002.safetensors", "ghost.weight": "model-00002-of-00002.safetensors"}}"#
        try Data(index.utf8).write(to: folder.appendingPathComponent("model.safetensors.index.json"))
        assertFormatError(["model-00002-of-00002.safetensors", "ghost.weight", "not in it"]) { _ = try HFModelFolder(url: folder) }

        let escaping = #"{"weight_map": {"w": "../outside.safetensors"}}"#
        try Data(escaping.utf8).write(to: folder.appendingPathComponent("model.safetensors.index.json"))
        assertFormatError(["../outside.safetensors", "leaves the model folder"]) { _ = try HFModelFolder(url: folder) }
    }
}
