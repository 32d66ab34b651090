import Foundation

/// Learns a byte-level BPE vocabulary and merge list from text, step for step as Hugging Face `tokenizers`'
/// `BpeTrainer` does for GPT-2-style models, so that both give the same merges on the same corpus.
///
/// Feed documents with `add(document:)` (each is pre-tokenized and its words counted), then call `train()`.
public struct BPETrainer {
    /// What to learn: the vocabulary size (special tokens included), the least frequency of a merged pair,
    /// the special tokens (ids 0, 1, … in this order) and how text is cut into words.
    public struct Options: Sendable, Equatable {
        public var vocabularySize: Int
        public var minimumFrequency: Int
        public var specialTokens: [String]
        /// Must end in a byte-level step, so that every word is spelled in the 256-symbol byte alphabet.
        public var preTokenizer: PreTokenizer

        public init(vocabularySize: Int, minimumFrequency: Int = 2,
                    specialTokens: [String] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                    preTokenizer: PreTokenizer = .smolLM) {
            self.vocabularySize = vocabularySize
            self.minimumFrequency = minimumFrequency
            self.specialTokens = specialTokens
            self.preTokenizer = preTokenizer
        }
    }

    public let options: Options
    /// Distinct words in order of first appearance, and how often each occurred.
    private var indexForWord: [[Unicode.Scalar]: Int] = [:]
    private var words: [[Unicode.Scalar]] = []
    private var wordCounts: [Int] = []
    public private(set) var documentCount = 0
    /// Words seen, counting repeats.
    public private(set) var wordTotal = 0

    /// Checks the options: a byte-level pre-tokenizer, room for the byte alphabet and the special tokens,
    /// distinct non-empty special tokens.
    public init(options: Options) throws {
        guard options.preTokenizer.steps.contains(where: { if case .byteLevel = $0 { return true } else { return false } }) else {
            throw BPETrainerError.preTokenizerNotByteLevel
        }
        var seen = Set<String>()
        for token in options.specialTokens {
            guard !token.isEmpty else { throw BPETrainerError.emptySpecialToken }
            guard seen.insert(token).inserted else { throw BPETrainerError.duplicateSpecialToken(token) }
        }
        let minimum = Tokenizer.byteLevelAlphabet.count + options.specialTokens.count
        guard options.vocabularySize >= minimum else {
            throw BPETrainerError.vocabularyTooSmall(requested: options.vocabularySize, minimum: minimum,
                                                     specialTokens: options.specialTokens.count)
        }
        guard options.minimumFrequency >= 0 else {
            throw BPETrainerError.negativeMinimumFrequency(options.minimumFrequency)
        }
        self.options = options
    }

    /// Pre-tokenizes one document and counts its words. Special tokens written in the text are not matched:
    /// as in Hugging Face's training, they are ordinary text here.
    public mutating func add(document: String) {
        documentCount += 1
        for word in options.preTokenizer.split(Array(document.unicodeScalars)) where !word.isEmpty {
            wordTotal += 1
            if let index = indexForWord[word] {
                wordCounts[index] += 1
            } else {
                indexForWord[word] = words.count
                words.append(word)
                wordCounts.append(1)
            }
        }
    }

    /// Runs the merges. `progress` is called now and then with (merges done, most merges possible).
    public func train(progress: ((Int, Int) -> Void)? = nil) throws -> TrainedBPE {
        guard !words.isEmpty else { throw BPETrainerError.emptyCorpus(documents: documentCount) }

        // Ids as Hugging Face gives them: special tokens first, then the byte alphabet in scalar order.
        var vocabulary: [String] = []
        var idForToken: [String: Int32] = [:]
        func addToken(_ token: String) -> Int32 {
            if let id = idForToken[token] { return id }
            let id = Int32(vocabulary.count)
            vocabulary.append(token)
            idForToken[token] = id
            return id
        }
        for token in options.specialTokens { _ = addToken(token) }
        var idForScalar: [UInt32: Int32] = [:]
        for scalar in ByteLevel.scalarForByte.sorted(by: { $0.value < $1.value }) {
            idForScalar[scalar.value] = addToken(String(scalar))
        }

        var symbols: [[Int32]] = []
        symbols.reserveCapacity(words.count)
        for word in words {
            // A ByteLevel step spells every word in the alphabet. A scalar outside it (only a step after ByteLevel
            // could make one) is dropped, where Hugging Face would add it to the alphabet.
            symbols.append(word.compactMap { idForScalar[$0.value] })
        }

        var pairCounts: [UInt64: Int] = [:]
        var wordsWithPair: [UInt64: Set<Int32>] = [:]
        for (index, word) in symbols.enumerated() where word.count >= 2 {
            for position in 0..<(word.count - 1) {
                let pair = BPEMerges.pairKey(word[position], word[position + 1])
                pairCounts[pair, default: 0] += wordCounts[index]
                wordsWithPair[pair, default: []].insert(Int32(index))
            }
        }
        var queue = MergeCandidateQueue()
        queue.push(newFrom: &wordsWithPair, pairCounts: pairCounts)

        var merges: [TrainedBPE.Merge] = []
        let mostMerges = options.vocabularySize - vocabulary.count
        while vocabulary.count < options.vocabularySize, var top = queue.pop() {
            let current = pairCounts[top.pair] ?? 0
            // A count changed since the candidate was queued: requeue it with the count it has now.
            if top.count != current {
                top.count = current
                queue.push(top)
                continue
            }
            if top.count < 1 || top.count < options.minimumFrequency { break }

            let left = Int32(truncatingIfNeeded: top.pair >> 32)
            let right = Int32(truncatingIfNeeded: top.pair)
            // Two different pairs can spell the same token ("a"+"bc", "ab"+"c"): the token keeps its first id.
            let merged = addToken(vocabulary[Int(left)] + vocabulary[Int(right)])
            merges.append(TrainedBPE.Merge(left: vocabulary[Int(left)], right: vocabulary[Int(right)],
                                           count: top.count))
            for index in queue.takePositions(of: top) {
                let count = wordCounts[Int(index)]
                Self.merge(&symbols[Int(index)], left: left, right: right, into: merged) { pair, change in
                    pairCounts[pair, default: 0] += change * count
                    if change > 0 { wordsWithPair[pair, default: []].insert(index) }
                }
            }
            queue.push(newFrom: &wordsWithPair, pairCounts: pairCounts)
            if let progress, merges.count % 256 == 0 { progress(merges.count, mostMerges) }
        }
        progress?(merges.count, mostMerges)

        return TrainedBPE(vocabulary: vocabulary, merges: Self.keepingLastOfEachPair(merges),
                          specialTokens: options.specialTokens, preTokenizer: options.preTokenizer)
    }

    /// Replaces each non-overlapping `left right`, left to right, by `merged`, reporting the pairs that
    /// disappear (-1) and appear (+1) next to each merge. The merged pair itself is not reported: its count
    /// is left as it was, as Hugging Face does (it is never a candidate again unless requeued).
    static func merge(_ word: inout [Int32], left: Int32, right: Int32, into merged: Int32,
                      change report: (UInt64, Int) -> Void) {
        var index = 0
        while index < word.count {
            if word[index] == left && index + 1 < word.count && word[index + 1] == right {
                if index > 0 {
                    report(BPEMerges.pairKey(word[index - 1], left), -1)
                    report(BPEMerges.pairKey(word[index - 1], merged), 1)
                }
                word[index] = merged
                word.remove(at: index + 1)
                if index + 1 < word.count {
                    report(BPEMerges.pairKey(right, word[index + 1]), -1)
                    report(BPEMerges.pairKey(merged, word[index + 1]), 1)
                }
            }
            index += 1
        }
    }

    /// Hugging Face stores merges in a map from pair to rank, so a pair merged twice keeps only its last rank.
    private static func keepingLastOfEachPair(_ merges: [TrainedBPE.Merge]) -> [TrainedBPE.Merge] {
        var lastIndex: [String: Int] = [:]
        for (index, merge) in merges.enumerated() { lastIndex[merge.left + " " + merge.right] = index }
        return merges.enumerated().filter { lastIndex[$1.left + " " + $1.right] == $0 }.map(\.element)
    }
}

/// The result of training: a vocabulary (id = index; special tokens first) and ranked merges, ready to save
/// as Hugging Face files or to load as a `Tokenizer`.
public struct TrainedBPE: Sendable, Equatable {
    /// One learned merge and how often its pair occurred when it was chosen.
    public struct Merge: Sendable, Equatable {
        public var left: String
        public var right: String
        public var count: Int
    }

    public var vocabulary: [String]
    public var merges: [Merge]
    public var specialTokens: [String]
    public var preTokenizer: PreTokenizer
}

/// Why training could not start or produced nothing; each case says how to fix it.
public enum BPETrainerError: Error, Equatable, CustomStringConvertible {
    case emptyCorpus(documents: Int)
    case vocabularyTooSmall(requested: Int, minimum: Int, specialTokens: Int)
    case preTokenizerNotByteLevel
    case emptySpecialToken
    case duplicateSpecialToken(String)
    case negativeMinimumFrequency(Int)

    public var description: String {
        switch self {
        case let .emptyCorpus(documents):
            return "the corpus has no words to learn from (\(documents) documents, all empty); give a non-empty text"
        case let .vocabularyTooSmall(requested, minimum, specialTokens):
            return "vocabulary size \(requested) is too small: it must be at least \(minimum) "
                + "(256 byte symbols + \(specialTokens) special tokens)"
        case .preTokenizerNotByteLevel:
            return "the pre-tokenizer has no ByteLevel step; byte-level BPE training needs one (e.g. smollm, gpt2)"
        case .emptySpecialToken:
            return "a special token is the empty string; give each special token some text"
        case let .duplicateSpecialToken(token):
            return "special token \(token.debugDescription) is given twice"
        case let .negativeMinimumFrequency(value):
            return "minimum frequency \(value) is negative; use 0 or more"
        }
    }
}

extension BPETrainerError: LocalizedError {
    public var errorDescription: String? { description }
}

/// Candidate merges, best first: highest count, then smallest (left id, right id), as Hugging Face's
/// `BinaryHeap<Merge>`. Each candidate carries the words its pair was seen in when it was queued; a pair can be
/// queued more than once (a merge that re-forms an existing token), and then each entry merges only its words.
struct MergeCandidateQueue {
    struct Candidate: Comparable {
        var count: Int
        var pair: UInt64
        /// Index into `wordSets`; also orders exact ties by queueing order so that runs are reproducible.
        var slot: Int32

        /// "Comes out first": the higher count, then the smaller pair, then the earlier queued.
        static func < (a: Candidate, b: Candidate) -> Bool {
            if a.count != b.count { return a.count > b.count }
            if a.pair != b.pair { return a.pair < b.pair }
            return a.slot < b.slot
        }
    }

    private var heap = BinaryHeap<Candidate>()
    private var wordSets: [[Int32]] = []

    /// The words a candidate was queued with, given up once: a merged candidate is never queued again.
    mutating func takePositions(of candidate: Candidate) -> [Int32] {
        defer { wordSets[Int(candidate.slot)] = [] }
        return wordSets[Int(candidate.slot)]
    }

    /// Queues every pair in `fresh` whose count is positive, with its words, in pair order, and empties `fresh`.
    mutating func push(newFrom fresh: inout [UInt64: Set<Int32>], pairCounts: [UInt64: Int]) {
        for pair in fresh.keys.sorted() {
            let count = pairCounts[pair] ?? 0
            guard count > 0, let words = fresh[pair] else { continue }
            wordSets.append(words.sorted())
            push(Candidate(count: count, pair: pair, slot: Int32(wordSets.count - 1)))
        }
        fresh.removeAll(keepingCapacity: true)
    }

    mutating func push(_ candidate: Candidate) { heap.push(candidate) }

    mutating func pop() -> Candidate? { heap.pop() }
}
