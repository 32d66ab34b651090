/// Why a template could not be parsed or rendered, and where (1-based line and column in the
/// template source when known).
public struct TemplateError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Equatable {
        /// Malformed template text: unclosed tag, unbalanced block, bad expression.
        case syntax
        /// Valid jinja2 that this interpreter does not implement (`include`, an unknown filter...).
        case unsupported
        /// An error while rendering (undefined attribute, type mismatch...).
        case runtime
        /// The template called `raise_exception(message)`; `message` is the template's text.
        case raised
    }

    public let kind: Kind
    public let message: String
    public var line: Int?
    public var column: Int?

    init(_ kind: Kind, _ message: String, line: Int? = nil, column: Int? = nil) {
        self.kind = kind
        self.message = message
        self.line = line
        self.column = column
    }

    init(_ kind: Kind, _ message: String, at position: SourcePosition) {
        self.init(kind, message, line: position.line, column: position.column)
    }

    /// Adds a position to an error that has none yet (errors raised deep in value code).
    func located(at position: SourcePosition) -> TemplateError {
        guard line == nil else { return self }
        var copy = self
        copy.line = position.line
        copy.column = position.column
        return copy
    }

    public var description: String {
        if kind == .raised { return message }
        guard let line, let column else { return message }
        return "\(message) (template line \(line), column \(column))"
    }
}

/// A place in the template source, 1-based.
struct SourcePosition: Equatable {
    var line: Int
    var column: Int
}
