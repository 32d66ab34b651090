import Foundation

/// A coding key for any name: unknown keys in configurations, and validation errors placed at their field.
public struct ConfigurationKey: CodingKey {
    public let stringValue: String
    public var intValue: Int? { nil }
    public init(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}

/// Throws a decoding error naming the first key of the object that is not in `known` (catches misspelled fields
/// that would otherwise silently fall back to defaults).
public func rejectUnknownKeys(in decoder: Decoder, known: [String]) throws {
    let container = try decoder.container(keyedBy: ConfigurationKey.self)
    let knownSet = Set(known)
    if let unknown = container.allKeys.map(\.stringValue).sorted().first(where: { !knownSet.contains($0) }) {
        throw DecodingError.dataCorrupted(DecodingError.Context(
            codingPath: decoder.codingPath + [ConfigurationKey(stringValue: unknown)],
            debugDescription: "unknown field \"\(unknown)\"; expected one of \(known.joined(separator: ", "))"))
    }
}
