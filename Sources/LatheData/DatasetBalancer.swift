import Foundation
import LatheTensors

/// How `lathe data balance` evens out the categories of a field.
public struct BalanceOptions: Sendable, Equatable {
    /// Keep at most this many rows of each category (a seeded random choice).
    public var maxPerClass: Int?
    /// Up-sample every category to the size of the largest (after any cap) by repeating random rows.
    public var uniform: Bool

    public init(maxPerClass: Int? = nil, uniform: Bool = false) {
        self.maxPerClass = maxPerClass
        self.uniform = uniform
    }
}

/// The rows chosen and the counts per category before and after.
public struct BalanceResult: Sendable {
    /// Indices into the input rows: the kept rows in input order, then the up-sampled repeats.
    public let rows: [Int]
    /// Category counts (category, before, after), largest first before.
    public let counts: [(category: String, before: Int, after: Int)]
}

/// Caps or up-samples each category of a field, with a seed.
public enum DatasetBalancer {
    public static func balance(_ file: DatasetFile, by field: String, options: BalanceOptions,
                               seed: UInt64 = 0) throws -> BalanceResult {
        if let cap = options.maxPerClass, cap < 1 {
            throw DatasetError(file: file.url.path, line: 0, message: "the cap per category must be at least 1, got \(cap)")
        }
        var generator = SeededGenerator(seed: seed)
        let labels = try file.values(of: field, required: true)
        var groups: [String: [Int]] = [:]
        for (i, label) in labels.enumerated() { groups[label ?? "", default: []].append(i) }
        let categories = groups.keys.sorted()
        var chosen: [String: [Int]] = [:]
        for category in categories {
            var members = groups[category] ?? []
            if let cap = options.maxPerClass, members.count > cap {
                members.shuffle(using: &generator)
                members = Array(members.prefix(cap)).sorted()
            }
            chosen[category] = members
        }
        let kept = Set(chosen.values.joined())
        var repeats: [Int] = []
        if options.uniform {
            let target = chosen.values.map(\.count).max() ?? 0
            for category in categories {
                let members = chosen[category] ?? []
                guard !members.isEmpty else { continue }
                for _ in members.count..<target {
                    let pick = members[Int.random(in: 0..<members.count, using: &generator)]
                    repeats.append(pick)
                    chosen[category, default: []].append(pick)
                }
            }
        }
        let rows = (0..<file.lines.count).filter { kept.contains($0) } + repeats
        let counts = categories.map { (category: $0, before: groups[$0]?.count ?? 0, after: chosen[$0]?.count ?? 0) }
            .sorted { ($0.before, $1.category) > ($1.before, $0.category) }
        return BalanceResult(rows: rows, counts: counts)
    }
}
