import Foundation

/// Writes JSON values as single lines: keys sorted, slashes and non-ASCII text unescaped.
public enum DatasetJSON {
    public static func encode(_ value: JSONValue) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding a JSONValue cannot fail: it holds only strings, finite numbers, booleans, arrays and objects.
        guard let data = try? encoder.encode(value) else { return value.summary }
        return String(decoding: data, as: UTF8.self)
    }

    /// Writes lines to a file, each followed by a newline.
    public static func write(_ lines: [String], to url: URL) throws {
        var text = lines.joined(separator: "\n")
        if !lines.isEmpty { text += "\n" }
        do { try Data(text.utf8).write(to: url) } catch {
            throw DatasetError(file: url.path, line: 0, message: "cannot write the file (\(error.localizedDescription))")
        }
    }

    /// A field's value as text, for keys and labels: strings as they are, anything else as JSON.
    static func text(of value: JSONValue) -> String {
        if case .string(let s) = value { return s }
        return encode(value)
    }
}
