import Foundation

/// How supervised fine-tuning examples are rendered and laid out: the length limit, which tokens carry the
/// loss, which end of an over-long example is cut, and whether several examples share one sequence.
///
/// Decoded from a config with the keys `max_length`, `loss_on` (`completion` or `all`), `truncation`
/// (`right` or `left`) and `packing`; missing keys take the defaults, unknown keys and bad values are errors
/// that name the key.
public struct SFTOptions: Codable, Equatable, Sendable {
    /// Which tokens the loss includes.
    public enum LossOn: String, Codable, Sendable, CaseIterable {
        /// The completion of a prompt/completion row, the assistant turns (with their end-of-turn tokens) of a
        /// conversation, every token of plain text.
        case completion
        /// Every token but the first, whatever its role.
        case all
    }

    /// Which end of an over-long example is kept.
    public enum TruncationSide: String, Codable, Sendable, CaseIterable {
        /// Keep the first `maxLength` tokens (the default, as TRL's `keep_start`).
        case right
        /// Keep the last `maxLength` tokens (TRL's `keep_end`).
        case left
    }

    /// The longest example, in tokens; with packing, also the length of each packed row.
    public var maxLength: Int
    public var lossOn: LossOn
    public var truncation: TruncationSide
    /// Packs several examples into each row (attention kept within each example) instead of padding.
    public var packing: Bool

    public init(maxLength: Int = 1024, lossOn: LossOn = .completion, truncation: TruncationSide = .right,
                packing: Bool = false) throws {
        self.maxLength = maxLength
        self.lossOn = lossOn
        self.truncation = truncation
        self.packing = packing
        try validate()
    }

    /// Rejects values that cannot make a training example.
    public func validate() throws {
        // Two tokens is the shortest sequence with something to predict.
        guard maxLength >= 2 else {
            throw SFTOptionsError(key: CodingKeys.maxLength.rawValue, message: "must be at least 2, got \(maxLength)")
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case maxLength = "max_length"
        case lossOn = "loss_on"
        case truncation
        case packing
    }

    /// Any key, to name the unknown ones.
    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: Decoder) throws {
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        let all = try decoder.container(keyedBy: AnyKey.self)
        if let unknown = all.allKeys.map(\.stringValue).filter({ !known.contains($0) }).sorted().first {
            throw SFTOptionsError(key: unknown, message:
                "is not an SFT option (known: \(CodingKeys.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ type: T.Type, _ key: CodingKeys, _ expected: String) throws -> T? {
            do { return try container.decodeIfPresent(type, forKey: key) } catch {
                throw SFTOptionsError(key: key.rawValue, message: "must be \(expected)")
            }
        }
        func choice<T: RawRepresentable & CaseIterable>(_ type: T.Type, _ key: CodingKeys) throws -> T?
            where T.RawValue == String {
            let names = T.allCases.map(\.rawValue)
            guard let name = try value(String.self, key, "one of \(names.joined(separator: ", "))") else { return nil }
            guard let parsed = T(rawValue: name) else {
                throw SFTOptionsError(key: key.rawValue, message: "must be one of \(names.joined(separator: ", ")), got '\(name)'")
            }
            return parsed
        }
        try self.init(maxLength: try value(Int.self, .maxLength, "an integer") ?? 1024,
                      lossOn: try choice(LossOn.self, .lossOn) ?? .completion,
                      truncation: try choice(TruncationSide.self, .truncation) ?? .right,
                      packing: try value(Bool.self, .packing, "true or false") ?? false)
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(maxLength, forKey: .maxLength)
        try container.encode(lossOn, forKey: .lossOn)
        try container.encode(truncation, forKey: .truncation)
        try container.encode(packing, forKey: .packing)
    }
}

/// A bad SFT option, naming its key.
public struct SFTOptionsError: Error, CustomStringConvertible, Equatable {
    public let key: String
    public let message: String
    public var description: String { "SFT option '\(key)' \(message)" }
}
