import Foundation

/// Reads tokenizer.json's BPE `model.vocab` and `model.merges` keeping every token exactly as written.
/// Foundation's JSON parser gives a Swift dictionary, whose `String` keys compare by canonical equivalence
/// ("য়" U+09DF and "য" + U+09BC, two tokens of Gemma's vocabulary, would become one key), and it drops U+FEFF
/// inside strings (another Gemma token).
enum ExactJSON {
    struct BPEModel {
        var vocabulary: [(token: String, id: Int)] = []
        var merges: [(String, String)] = []
    }

    /// `model.vocab` as (token, id) pairs and `model.merges` ("left right" or ["left", "right"]).
    static func bpeModel(in data: Data, file: String) throws -> BPEModel {
        try data.withUnsafeBytes { raw in
            var scanner = Scanner(bytes: raw.bindMemory(to: UInt8.self), file: file)
            return try scanner.bpeModel()
        }
    }

    private struct Scanner {
        let bytes: UnsafeBufferPointer<UInt8>
        let file: String
        var offset = 0

        init(bytes: UnsafeBufferPointer<UInt8>, file: String) {
            self.bytes = bytes
            self.file = file
        }

        func failure(_ what: String) -> TokenizerError {
            .malformedJSON(file: file, detail: "\(what) at byte \(offset)")
        }

        mutating func skipWhitespace() {
            while offset < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[offset]) { offset += 1 }
        }

        mutating func expect(_ byte: UInt8) throws {
            skipWhitespace()
            guard offset < bytes.count, bytes[offset] == byte else {
                throw failure("expected '\(Character(Unicode.Scalar(byte)))'")
            }
            offset += 1
        }

        /// Calls `body` with the index of each member of the object or array at `offset` (between `open` and
        /// `close`), which must read the member.
        mutating func forEachMember(open: Character, close: Character, _ body: (inout Scanner, Int) throws -> Void) throws {
            let (open, close) = (open.asciiValue ?? 0, close.asciiValue ?? 0)
            try expect(open)
            skipWhitespace()
            if offset < bytes.count, bytes[offset] == close { offset += 1; return }
            var index = 0
            while true {
                try body(&self, index)
                index += 1
                skipWhitespace()
                guard offset < bytes.count else { throw failure("unfinished object or array") }
                let separator = bytes[offset]
                offset += 1
                if separator == close { return }
                guard separator == UInt8(ascii: ",") else { throw failure("expected ',' or '\(Character(Unicode.Scalar(close)))'") }
            }
        }

        /// Calls `body` with each key of the object at `offset`, which must read (or skip) the value.
        mutating func forEachKey(_ body: (inout Scanner, String) throws -> Void) throws {
            try forEachMember(open: "{", close: "}") { scanner, _ in
                scanner.skipWhitespace()
                let key = try scanner.string()
                try scanner.expect(UInt8(ascii: ":"))
                try body(&scanner, key)
            }
        }

        /// Calls `body` with the index of each element of the array at `offset`, which must read the element.
        mutating func forEachElement(_ body: (inout Scanner, Int) throws -> Void) throws {
            try forEachMember(open: "[", close: "]", body)
        }

        mutating func bpeModel() throws -> BPEModel {
            var model = BPEModel()
            try forEachKey { scanner, key in
                guard key == "model" else { return try scanner.skipValue() }
                try scanner.forEachKey { scanner, key in
                    switch key {
                    case "vocab":
                        try scanner.forEachKey { scanner, token in model.vocabulary.append((token, try scanner.integer())) }
                    case "merges":
                        try scanner.forEachElement { scanner, index in
                            scanner.skipWhitespace()
                            if scanner.offset < scanner.bytes.count, scanner.bytes[scanner.offset] == UInt8(ascii: "[") {
                                var parts: [String] = []
                                try scanner.forEachElement { scanner, _ in parts.append(try scanner.string()) }
                                guard parts.count == 2 else { throw scanner.failure("model.merges[\(index)] is not a pair") }
                                model.merges.append((parts[0], parts[1]))
                            } else {
                                let line = try scanner.string()
                                // Split on the space scalar: a space before a combining mark is one Swift character.
                                let parts = line.unicodeScalars.split(separator: " ", omittingEmptySubsequences: false)
                                guard parts.count == 2 else {
                                    throw TokenizerError.malformedMerge(source: "\(scanner.file): model.merges",
                                                                        index: index, merge: line)
                                }
                                model.merges.append((String(String.UnicodeScalarView(parts[0])),
                                                     String(String.UnicodeScalarView(parts[1]))))
                            }
                        }
                    default:
                        try scanner.skipValue()
                    }
                }
            }
            return model
        }

        mutating func integer() throws -> Int {
            skipWhitespace()
            let start = offset
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "-") { offset += 1 }
            while offset < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[offset]) { offset += 1 }
            guard let value = Int(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<offset]), as: UTF8.self)) else {
                throw failure("expected an integer")
            }
            return value
        }

        /// A JSON string, escapes decoded, every scalar kept as written.
        mutating func string() throws -> String {
            try expect(UInt8(ascii: "\""))
            var scalars = String.UnicodeScalarView()
            var runStart = offset
            func flush(_ end: Int) {
                scalars.append(contentsOf: String(decoding: UnsafeBufferPointer(rebasing: bytes[runStart..<end]),
                                                  as: UTF8.self).unicodeScalars)
            }
            while offset < bytes.count {
                let byte = bytes[offset]
                if byte == UInt8(ascii: "\"") {
                    flush(offset)
                    offset += 1
                    return String(scalars)
                }
                guard byte == UInt8(ascii: "\\") else { offset += 1; continue }
                flush(offset)
                offset += 1
                guard offset < bytes.count else { break }
                let escape = bytes[offset]
                offset += 1
                switch escape {
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "u"):
                    var value = try hex4()
                    // A surrogate pair spells one scalar above U+FFFF.
                    if (0xD800..<0xDC00).contains(value), offset + 1 < bytes.count,
                       bytes[offset] == UInt8(ascii: "\\"), bytes[offset + 1] == UInt8(ascii: "u") {
                        offset += 2
                        let low = try hex4()
                        value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
                    }
                    scalars.append(Unicode.Scalar(value) ?? "\u{FFFD}")
                default: scalars.append(Unicode.Scalar(escape))   // \" \\ \/
                }
                runStart = offset
            }
            throw failure("unfinished string")
        }

        mutating func hex4() throws -> UInt32 {
            guard offset + 4 <= bytes.count,
                  let value = UInt32(String(decoding: UnsafeBufferPointer(rebasing: bytes[offset..<offset + 4]),
                                            as: UTF8.self), radix: 16) else { throw failure("bad \\u escape") }
            offset += 4
            return value
        }

        mutating func skipValue() throws {
            skipWhitespace()
            guard offset < bytes.count else { throw failure("missing value") }
            switch bytes[offset] {
            case UInt8(ascii: "\""): _ = try string()
            case UInt8(ascii: "{"): try forEachKey { scanner, _ in try scanner.skipValue() }
            case UInt8(ascii: "["): try forEachElement { scanner, _ in try scanner.skipValue() }
            default:
                // Numbers, true, false, null: up to the next delimiter.
                while offset < bytes.count, ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x0A, 0x0D, 0x09]
                    .contains(bytes[offset]) { offset += 1 }
            }
        }
    }
}
