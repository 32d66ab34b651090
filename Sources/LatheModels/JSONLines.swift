import Foundation

/// One line of a JSON Lines file, parsed, with where it came from.
public struct JSONLine: Sendable {
    public let file: String
    public let line: Int
    public let value: JSONValue

    /// "file:line: message", the shape of every complaint about a line.
    public func error(_ message: String) -> JSONLinesError { JSONLinesError(file: file, line: line, message: message) }
}

/// A problem with one line of a JSON Lines file.
public struct JSONLinesError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let line: Int
    public let message: String
    public var description: String { "\(file):\(line): \(message)" }
}

/// Reads JSON Lines: one JSON value per non-blank line, with errors that name the file and line.
public enum JSONLines {
    public static func read(_ url: URL) throws -> [JSONLine] {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw JSONLinesError(file: url.path, line: 0, message: "cannot read the file (\(error.localizedDescription))")
        }
        return try parse(data, file: url.path)
    }

    public static func parse(_ data: Data, file: String) throws -> [JSONLine] {
        var lines: [JSONLine] = []
        var number = 0
        for slice in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            number += 1
            var bytes = Data(slice)
            if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            guard String(data: bytes, encoding: .utf8) != nil else {
                throw JSONLinesError(file: file, line: number, message: "the line is not valid UTF-8")
            }
            do {
                lines.append(JSONLine(file: file, line: number, value: try JSONValue.parse(bytes)))
            } catch {
                throw JSONLinesError(file: file, line: number, message: "invalid JSON (\(Self.reason(error)))")
            }
        }
        return lines
    }

    private static func reason(_ error: Error) -> String {
        if case DecodingError.dataCorrupted(let context) = error {
            return (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String ?? context.debugDescription
        }
        return "\(error)"
    }
}
