import Foundation
import LatheModels
import XCTest

/// Gemma 3 270M's Q4_K_M GGUF, the optional second model: `$LATHE_GEMMA3_GGUF`, else the known model
/// "gemma3-270m" (`scripts/setup --gemma3` installs it). A test that needs it is skipped, saying how to install
/// it, when it is absent.
public enum Gemma3ModelFile {
    public static func url() throws -> URL {
        if let path = ProcessInfo.processInfo.environment["LATHE_GEMMA3_GGUF"] {
            guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("LATHE_GEMMA3_GGUF=\(path): no such file") }
            return URL(fileURLWithPath: path)
        }
        do { return try ModelLocator.resolve("gemma3-270m") } catch ModelError.modelNotFound(let message) {
            throw XCTSkip(message + " (or set LATHE_GEMMA3_GGUF to the file)")
        }
    }
}
