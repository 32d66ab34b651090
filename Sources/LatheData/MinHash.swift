import Foundation
import LatheTensors

/// Word shingles of a text: the hashes of every run of `size` consecutive words (after `TextNormalizer`), sorted and unique. A text shorter than `size` words is one shingle.
public enum WordShingles {
    public static func hashes(_ text: String, size: Int = 3) -> [UInt64] {
        // After normalising, words are separated by exactly one space.
        let words = Array(TextNormalizer.normalize(text).utf8).split(separator: UInt8(ascii: " "))
        guard !words.isEmpty else { return [] }
        let width = min(size, words.count)
        var hashes: [UInt64] = []
        hashes.reserveCapacity(words.count - width + 1)
        for start in 0...(words.count - width) {
            var hash = FNV1a()
            for (offset, word) in words[start..<(start + width)].enumerated() {
                if offset > 0 { hash.add(UInt8(ascii: " ")) }
                for byte in word { hash.add(byte) }
            }
            hashes.append(hash.value)
        }
        hashes.sort()
        var unique: [UInt64] = []
        unique.reserveCapacity(hashes.count)
        for hash in hashes where unique.last != hash { unique.append(hash) }
        return unique
    }

    /// |a ∩ b| / |a ∪ b| of two sorted unique hash lists (1 for two empty lists).
    public static func jaccard(_ a: [UInt64], _ b: [UInt64]) -> Double {
        if a.isEmpty && b.isEmpty { return 1 }
        var i = 0, j = 0, shared = 0
        while i < a.count && j < b.count {
            if a[i] == b[j] { shared += 1; i += 1; j += 1 } else if a[i] < b[j] { i += 1 } else { j += 1 }
        }
        return Double(shared) / Double(a.count + b.count - shared)
    }
}

/// 64-bit FNV-1a: a fixed hash, unlike Swift's per-process seeded `Hasher`, so runs are repeatable.
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func add(_ byte: UInt8) {
        value ^= UInt64(byte)
        value = value &* 0x0000_0100_0000_01b3
    }
    mutating func add(word: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { add(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
    }
}

/// MinHash signatures: for each of `permutations` seeded hash functions, the least hash over a set's shingles.
/// Two signatures agree at one position with probability equal to the sets' Jaccard similarity.
public struct MinHasher: Sendable {
    public let permutations: Int
    private let multipliers: [UInt64]
    private let offsets: [UInt64]

    public init(permutations: Int = 128, seed: UInt64 = 0) {
        self.permutations = permutations
        var generator = SeededGenerator(seed: seed)
        // Odd multipliers make each x ↦ a·x + b a permutation of the 64-bit words.
        multipliers = (0..<permutations).map { _ in generator.next() | 1 }
        offsets = (0..<permutations).map { _ in generator.next() }
    }

    public func signature(_ shingles: [UInt64]) -> [UInt64] {
        var signature = [UInt64](repeating: .max, count: permutations)
        for shingle in shingles {
            for i in 0..<permutations {
                let hash = multipliers[i] &* shingle &+ offsets[i]
                if hash < signature[i] { signature[i] = hash }
            }
        }
        return signature
    }
}

/// How an LSH index cuts signatures: `bands` bands of `rows` values; two sets become candidates when any
/// band agrees, which happens with probability 1 - (1 - J^rows)^bands at Jaccard similarity J.
public struct LSHParameters: Sendable, Equatable, Codable {
    public let bands: Int
    public let rows: Int

    public init(bands: Int, rows: Int) {
        self.bands = bands
        self.rows = rows
    }

    /// The probability that two sets of Jaccard similarity `jaccard` share a band.
    public func candidateProbability(_ jaccard: Double) -> Double {
        1 - pow(1 - pow(jaccard, Double(rows)), Double(bands))
    }

    /// The most rows per band (fewest false candidates) that still make pairs at the threshold candidates with
    /// probability ≥ `recall`; candidates are then verified by their exact Jaccard similarity.
    public static func forThreshold(_ threshold: Double, permutations: Int = 128, recall: Double = 0.99) -> LSHParameters {
        var best = LSHParameters(bands: permutations, rows: 1)
        for rows in 1...permutations {
            let candidate = LSHParameters(bands: permutations / rows, rows: rows)
            if candidate.candidateProbability(threshold) >= recall { best = candidate }
        }
        return best
    }
}

/// Buckets of signatures per band, for finding candidate near-duplicates without comparing every pair.
struct LSHIndex {
    let parameters: LSHParameters
    private var buckets: [[UInt64: [Int]]]

    init(parameters: LSHParameters) {
        self.parameters = parameters
        buckets = Array(repeating: [:], count: parameters.bands)
    }

    private func keys(_ signature: [UInt64]) -> [UInt64] {
        (0..<parameters.bands).map { band in
            var hash = FNV1a()
            for value in signature[(band * parameters.rows)..<((band + 1) * parameters.rows)] { hash.add(word: value) }
            return hash.value
        }
    }

    mutating func insert(_ signature: [UInt64], id: Int) {
        for (band, key) in keys(signature).enumerated() { buckets[band][key, default: []].append(id) }
    }

    /// The ids sharing at least one band with the signature, each once, in insertion order.
    func candidates(_ signature: [UInt64]) -> [Int] {
        var found = Set<Int>()
        for (band, key) in keys(signature).enumerated() {
            for id in buckets[band][key] ?? [] { found.insert(id) }
        }
        return found.sorted()
    }
}
