import Foundation

/// A row of a file, for reports.
public struct RowReference: Sendable, Equatable, Codable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public var description: String { "\(file):\(line)" }
}

/// A kept row and the rows dropped as its duplicates.
public struct DuplicateCluster: Sendable, Codable, Equatable {
    public struct Member: Sendable, Codable, Equatable {
        public let line: Int
        /// Jaccard similarity of the word shingles with the kept row (1 for exact duplicates).
        public let similarity: Double
        /// Equal to the kept row after normalising case and whitespace.
        public let exact: Bool
    }
    /// The row kept: the first of the cluster in the input, or a row of an `--against` file.
    public let representative: RowReference
    public var members: [Member]
}

/// What deduplication kept and dropped.
public struct DedupResult: Sendable {
    /// Indices into the input rows, in input order.
    public let kept: [Int]
    public let dropped: [Int]
    /// Clusters in the order of their first dropped member.
    public let clusters: [DuplicateCluster]
    public let exactDuplicates: Int
    public let nearDuplicates: Int
    /// Rows dropped for duplicating a row of an `--against` file (decontamination).
    public let againstDuplicates: Int
}

/// Settings of `lathe data dedup`.
public struct DedupOptions: Sendable {
    /// The Jaccard similarity of word shingles at or above which rows are near-duplicates; nil: exact only.
    public var nearThreshold: Double?
    /// The fields compared; nil: the content fields of the detected format.
    public var fields: [String]?
    public var shingleSize: Int
    public var permutations: Int
    public var seed: UInt64
    /// Bands and rows of the LSH index; nil: chosen for the threshold.
    public var lsh: LSHParameters?

    public init(nearThreshold: Double? = nil, fields: [String]? = nil, shingleSize: Int = 3, permutations: Int = 128,
                seed: UInt64 = 0, lsh: LSHParameters? = nil) {
        self.nearThreshold = nearThreshold
        self.fields = fields
        self.shingleSize = shingleSize
        self.permutations = permutations
        self.seed = seed
        self.lsh = lsh
    }
}

/// Removes exact duplicates (after normalising whitespace and case) and near-duplicates (MinHash with LSH over
/// word shingles, verified by exact Jaccard similarity) within a file and against other files. Only content
/// fields are compared, never ids or metadata; the first row of each cluster is kept whole.
public enum Deduplicator {
    public static func deduplicate(_ file: DatasetFile, against: [DatasetFile] = [],
                                   options: DedupOptions = DedupOptions()) throws -> DedupResult {
        let threshold = options.nearThreshold
        if let lsh = options.lsh, lsh.bands < 1 || lsh.rows < 1 || lsh.bands * lsh.rows > options.permutations {
            throw DatasetError(file: file.url.path, line: 0, message: "LSH bands × rows (\(lsh.bands) × \(lsh.rows)) must be "
                               + "between 1 and the number of permutations (\(options.permutations))")
        }
        let hasher = MinHasher(permutations: options.permutations, seed: options.seed)
        var index = LSHIndex(parameters: options.lsh ?? LSHParameters.forThreshold(threshold ?? 1, permutations: options.permutations))
        // Every row that can absorb later duplicates: rows of the --against files, then kept rows.
        var references: [RowReference] = []
        var shingleSets: [[UInt64]] = []
        var fromAgainst: [Bool] = []
        var exactOwner: [String: Int] = [:]

        func register(_ reference: RowReference, text: String, shingles: [UInt64]?, isAgainst: Bool) {
            let id = references.count
            references.append(reference)
            fromAgainst.append(isAgainst)
            if exactOwner[text] == nil { exactOwner[text] = id }
            shingleSets.append(shingles ?? [])
            if let shingles, !shingles.isEmpty { index.insert(hasher.signature(shingles), id: id) }
        }

        for other in against {
            for (line, text) in zip(other.lines, try contentTexts(other, fields: options.fields)) {
                let shingles = threshold == nil ? nil : WordShingles.hashes(text, size: options.shingleSize)
                register(RowReference(file: other.url.path, line: line.line), text: text, shingles: shingles, isAgainst: true)
            }
        }

        var kept: [Int] = [], dropped: [Int] = []
        var clusters: [DuplicateCluster] = []
        var clusterOfOwner: [Int: Int] = [:]
        var exactCount = 0, nearCount = 0, againstCount = 0
        for (position, (line, text)) in zip(file.lines, try contentTexts(file, fields: options.fields)).enumerated() {
            var owner: (id: Int, similarity: Double, exact: Bool)?
            if let id = exactOwner[text] {
                owner = (id, 1, true)
            }
            var shingles: [UInt64]?
            if owner == nil, let threshold {
                let hashes = WordShingles.hashes(text, size: options.shingleSize)
                shingles = hashes
                if !hashes.isEmpty {
                    for candidate in index.candidates(hasher.signature(hashes)) {
                        let similarity = WordShingles.jaccard(hashes, shingleSets[candidate])
                        if similarity >= threshold, similarity > (owner?.similarity ?? 0) { owner = (candidate, similarity, false) }
                    }
                }
            }
            guard let owner else {
                kept.append(position)
                register(RowReference(file: file.url.path, line: line.line), text: text, shingles: shingles, isAgainst: false)
                continue
            }
            dropped.append(position)
            if fromAgainst[owner.id] { againstCount += 1 } else if owner.exact { exactCount += 1 } else { nearCount += 1 }
            let member = DuplicateCluster.Member(line: line.line, similarity: owner.similarity, exact: owner.exact)
            if let cluster = clusterOfOwner[owner.id] {
                clusters[cluster].members.append(member)
            } else {
                clusterOfOwner[owner.id] = clusters.count
                clusters.append(DuplicateCluster(representative: references[owner.id], members: [member]))
            }
        }
        return DedupResult(kept: kept, dropped: dropped, clusters: clusters, exactDuplicates: exactCount,
                           nearDuplicates: nearCount, againstDuplicates: againstCount)
    }

    /// The text compared for each row, normalised: the given fields, or the content fields of the file's format
    /// (conversations as `role: content` lines).
    public static func contentTexts(_ file: DatasetFile, fields: [String]?) throws -> [String] {
        let chosen: [String]
        if file.lines.isEmpty {
            return []
        } else if let fields {
            chosen = fields
        } else {
            guard let format = file.detectedFormat else {
                throw DatasetError(file: file.url.path, line: file.lines.first?.line ?? 0,
                                   message: "no known dataset format: name the fields to compare with --fields")
            }
            chosen = format.contentFields
        }
        return file.lines.map { line in
            let parts = chosen.map { field in line.value[field].map(flatten) ?? "" }
            return TextNormalizer.normalize(parts.joined(separator: "\n"))
        }
    }

    /// A field's text: strings as they are, conversations as `role: content` lines, anything else as JSON.
    private static func flatten(_ value: JSONValue) -> String {
        switch value {
        case .string(let text): return text
        case .array(let elements):
            return elements.map { element -> String in
                if let object = element.object,
                   let content = (object["content"] ?? object["value"])?.string {
                    let role = (object["role"] ?? object["from"])?.string ?? ""
                    return "\(role): \(content)"
                }
                return flatten(element)
            }.joined(separator: "\n")
        default: return DatasetJSON.encode(value)
        }
    }
}
