import Foundation

/// A preference pair as TRL's DPOTrainer tokenizes it: prompt ids, then each completion's ids (ending with EOS).
public struct PreferenceExample: Equatable, Sendable {
    public var prompt: [Int]
    public var chosen: [Int]
    public var rejected: [Int]
    public var source: String
    public var truncated: Bool

    public init(prompt: [Int], chosen: [Int], rejected: [Int], source: String, truncated: Bool = false) {
        self.prompt = prompt; self.chosen = chosen; self.rejected = rejected; self.source = source; self.truncated = truncated
    }
}

/// KTO's unpaired row: a completion labelled desirable or not.
public struct UnpairedExample: Equatable, Sendable {
    public var prompt: [Int]
    public var completion: [Int]
    public var label: Bool
    public var source: String
    public var truncated: Bool

    public init(prompt: [Int], completion: [Int], label: Bool, source: String, truncated: Bool = false) {
        self.prompt = prompt; self.completion = completion; self.label = label; self.source = source; self.truncated = truncated
    }
}
