/// A problem with what an evaluation was given.
public enum EvalError: Error, CustomStringConvertible, Equatable {
    case invalidInput(String)

    public var description: String {
        switch self {
        case .invalidInput(let message): return message
        }
    }
}
