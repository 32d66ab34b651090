import Foundation
import LatheTensors

/// How `lathe data split` chooses the held-out rows.
public enum SplitStrategy: Sendable, Equatable {
    /// A seeded random share of the rows.
    case random
    /// Whole groups of rows sharing the field's value, so that no value is on both sides.
    case byKey(field: String)
    /// Rows whose ISO-8601 date field is before the cut-off train, the others test.
    case byDate(field: String, cutoff: String)
    /// The same share of each value of the field (a label) held out.
    case stratified(field: String)
}

/// The two sides of a split and the leakage check.
public struct SplitResult: Sendable {
    /// Indices into the input rows, in input order.
    public let train: [Int]
    public let test: [Int]
    /// Key (or date) values on both sides; empty for a sound key or date split.
    public let leakedKeys: [String]
    /// Test rows whose content (normalised) also appears in train: duplicates that leak answers.
    public let duplicatedAcross: Int
    /// A one-paragraph account for the terminal.
    public let summary: String
}

/// Splits a dataset into train and test with a seed, by key, by date or stratified, and verifies that no key
/// (or date) is on both sides.
public enum DatasetSplitter {
    public static func split(_ file: DatasetFile, strategy: SplitStrategy, testFraction: Double = 0.1,
                             seed: UInt64 = 0) throws -> SplitResult {
        guard testFraction > 0, testFraction < 1 else {
            throw DatasetError(file: file.url.path, line: 0, message: "the test fraction must be between 0 and 1, got \(testFraction)")
        }
        var generator = SeededGenerator(seed: seed)
        let count = file.lines.count
        var isTest = [Bool](repeating: false, count: count)
        var keys: [String?] = Array(repeating: nil, count: count)
        switch strategy {
        case .random:
            var order = Array(0..<count)
            order.shuffle(using: &generator)
            for i in order.prefix(Int((Double(count) * testFraction).rounded())) { isTest[i] = true }
        case .byKey(let field):
            keys = try file.values(of: field, required: true)
            var groups: [String: [Int]] = [:]
            var keyOrder: [String] = []
            for (i, key) in keys.enumerated() {
                let key = key ?? ""
                if groups[key] == nil { keyOrder.append(key) }
                groups[key, default: []].append(i)
            }
            keyOrder.shuffle(using: &generator)
            // Whole groups go to test while each brings the test size closer to the target.
            let target = Double(count) * testFraction
            var testCount = 0
            for key in keyOrder {
                let size = groups[key]?.count ?? 0
                if abs(Double(testCount + size) - target) < abs(Double(testCount) - target) {
                    testCount += size
                    for i in groups[key] ?? [] { isTest[i] = true }
                }
            }
        case .byDate(let field, let cutoff):
            guard isISODate(cutoff) else {
                throw DatasetError(file: file.url.path, line: 0, message: "the cut-off must be an ISO-8601 date (YYYY-MM-DD), got \"\(cutoff)\"")
            }
            keys = try file.values(of: field, required: true)
            for (i, line) in file.lines.enumerated() {
                guard let date = keys[i], isISODate(date) else {
                    throw line.error("field \"\(field)\" must be an ISO-8601 date (YYYY-MM-DD...), got \(line.value[field]?.summary ?? "nothing")")
                }
                isTest[i] = date >= cutoff
            }
        case .stratified(let field):
            let labels = try file.values(of: field, required: true)
            var groups: [String: [Int]] = [:]
            for (i, label) in labels.enumerated() { groups[label ?? "", default: []].append(i) }
            for label in groups.keys.sorted() {
                var members = groups[label] ?? []
                members.shuffle(using: &generator)
                for i in members.prefix(Int((Double(members.count) * testFraction).rounded())) { isTest[i] = true }
            }
        }
        let train = (0..<count).filter { !isTest[$0] }
        let test = (0..<count).filter { isTest[$0] }
        return try verify(file, train: train, test: test, keys: keys, strategy: strategy)
    }

    /// Counts keys on both sides (and, for dates, test rows not after every train row) and duplicated content.
    static func verify(_ file: DatasetFile, train: [Int], test: [Int], keys: [String?],
                       strategy: SplitStrategy) throws -> SplitResult {
        var leaked: [String] = []
        var keyReport = ""
        switch strategy {
        case .byKey(let field):
            let trainKeys = Set(train.compactMap { keys[$0] }), testKeys = Set(test.compactMap { keys[$0] })
            leaked = trainKeys.intersection(testKeys).sorted()
            keyReport = " \(field): \(trainKeys.count) keys in train, \(testKeys.count) in test, \(leaked.count) on both sides."
        case .byDate(let field, let cutoff):
            let latestTrain = train.compactMap { keys[$0] }.max(), earliestTest = test.compactMap { keys[$0] }.min()
            if let latestTrain, let earliestTest, latestTrain >= earliestTest { leaked = [latestTrain, earliestTest] }
            keyReport = " \(field): train up to \(latestTrain ?? "-"), test from \(earliestTest ?? "-") (cut-off \(cutoff)), "
                + (leaked.isEmpty ? "no overlap." : "OVERLAP.")
        case .random, .stratified:
            break
        }
        var trainContent = Set<String>()
        var duplicated = 0
        if let texts = try? Deduplicator.contentTexts(file, fields: nil) {
            for i in train { trainContent.insert(texts[i]) }
            duplicated = test.filter { trainContent.contains(texts[$0]) }.count
        }
        let summary = "\(train.count) train rows, \(test.count) test rows." + keyReport
            + (test.isEmpty || train.isEmpty ? " Warning: one side is empty (a few keys hold most rows?)." : "")
            + (duplicated == 0 ? " No test row repeats a train row."
                : " Warning: \(duplicated) test rows repeat a train row's content (run lathe data dedup --against).")
        return SplitResult(train: train, test: test, leakedKeys: leaked, duplicatedAcross: duplicated, summary: summary)
    }

    /// Whether a text starts with a YYYY-MM-DD date, so that dates compare correctly as text.
    static func isISODate(_ text: String) -> Bool {
        let bytes = Array(text.utf8.prefix(10))
        guard bytes.count == 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-") else { return false }
        return bytes.enumerated().allSatisfy { i, b in i == 4 || i == 7 || (b >= 0x30 && b <= 0x39) }
    }
}
