import Foundation

/// An error reading or writing a model file: names the file, says what is wrong and, where it helps, how to fix it.
public struct FormatError: Error, CustomStringConvertible, Sendable {
    /// Path of the file or folder the problem is in.
    public let path: String
    /// What is wrong, in a sentence.
    public let problem: String
    /// How to fix it, when there is something useful to say.
    public let fix: String?

    public init(path: String, problem: String, fix: String? = nil) {
        self.path = path
        self.problem = problem
        self.fix = fix
    }

    public var description: String {
        var text = "\(path): \(problem)"
        if let fix { text += " — \(fix)" }
        return text
    }
}

extension FormatError: LocalizedError {
    public var errorDescription: String? { description }
}
