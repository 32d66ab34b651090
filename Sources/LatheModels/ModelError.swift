/// What went wrong loading or running a model, worded for the user: it names the file or field and how to fix it.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case invalidConfiguration(file: String, message: String)
    case missingWeight(file: String, name: String)
    case wrongShape(file: String, name: String, expected: [Int], found: [Int])
    case unusedWeight(file: String, name: String, count: Int)
    case modelNotFound(String)
    case invalidInput(String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let file, let message): return "\(file): \(message)"
        case .missingWeight(let file, let name): return "\(file): the model needs the weight '\(name)', which the file does not have"
        case .wrongShape(let file, let name, let expected, let found):
            return "\(file): weight '\(name)' has shape \(found), the configuration needs \(expected)"
        case .unusedWeight(let file, let name, let count):
            return "\(file): weight '\(name)'\(count > 1 ? " and \(count - 1) more" : "") is not used by the model; is the configuration right for this file?"
        case .modelNotFound(let message): return message
        case .invalidInput(let message): return message
        }
    }
}
