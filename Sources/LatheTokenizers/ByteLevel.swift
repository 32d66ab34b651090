/// GPT-2's reversible map from the 256 byte values to printable Unicode scalars, so that every byte string
/// can be spelled with vocabulary characters (space becomes `Ġ`, newline `Ċ`).
enum ByteLevel {
    /// `scalarForByte[b]` is the printable scalar that stands for byte `b`.
    static let scalarForByte: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var nextUnprintable: UInt32 = 256
        for byte in 0..<256 {
            // Printable Latin-1 stands for itself; the rest are moved up past U+00FF in byte order.
            let printable = (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte)
            let value = printable ? UInt32(byte) : nextUnprintable
            if !printable { nextUnprintable += 1 }
            table[byte] = Unicode.Scalar(value) ?? " "
        }
        return table
    }()

    /// The inverse of `scalarForByte`, keyed by scalar value.
    static let byteForScalar: [UInt32: UInt8] = {
        var inverse: [UInt32: UInt8] = [:]
        for (byte, scalar) in scalarForByte.enumerated() { inverse[scalar.value] = UInt8(byte) }
        return inverse
    }()

    /// The byte-level spelling of `text`'s UTF-8 bytes.
    static func encode(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var mapped: [Unicode.Scalar] = []
        mapped.reserveCapacity(text.count + text.count / 2)
        for scalar in text {
            if scalar.value < 128 {
                mapped.append(scalarForByte[Int(scalar.value)])
            } else if let encoded = UTF8.encode(scalar) {  // never nil for a scalar
                for byte in encoded { mapped.append(scalarForByte[Int(byte)]) }
            }
        }
        return mapped
    }

    /// The bytes a token's text stands for, or nil when a scalar is outside the byte alphabet (as Hugging Face,
    /// the caller then uses the token's own UTF-8).
    static func decode(_ token: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(token.unicodeScalars.count)
        for scalar in token.unicodeScalars {
            guard let byte = byteForScalar[scalar.value] else { return nil }
            bytes.append(byte)
        }
        return bytes
    }
}
