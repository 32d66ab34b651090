import Foundation

/// One problem found in a dataset row, with the file, line and field it concerns.
public struct DatasetProblem: Sendable, Equatable, CustomStringConvertible {
    /// Errors make `lathe data check` fail; warnings only with `--strict`.
    public enum Severity: String, Sendable { case error, warning }

    public let file: String
    public let line: Int
    /// The field concerned, e.g. `messages[2].role`; nil for problems of the whole line.
    public let field: String?
    public let severity: Severity
    /// What is wrong and how to fix it; names the field when there is one.
    public let message: String

    public init(file: String, line: Int, field: String?, severity: Severity, message: String) {
        self.file = file
        self.line = line
        self.field = field
        self.severity = severity
        self.message = message
    }

    /// `file:line: message`, with `warning: ` before the message of warnings.
    public var description: String {
        "\(file):\(line): \(severity == .warning ? "warning: " : "")\(message)"
    }
}

/// An error about a dataset file or one of its lines: `file:line: message` (line 0 for the whole file).
public struct DatasetError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let line: Int
    public let message: String

    public init(file: String, line: Int, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { line > 0 ? "\(file):\(line): \(message)" : "\(file): \(message)" }
}
