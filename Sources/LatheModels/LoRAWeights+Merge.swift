import Foundation
import LatheTensors

/// How `LoRAWeights.merge` combines adapters, as PEFT's `add_weighted_adapter` names them (src/peft/tuners/lora/model.py).
public enum LoRAMergeMethod: String, CaseIterable, Sendable {
    /// A' = [c₁A₁; c₂A₂; …], B' = [B₁ B₂ …] with cᵢ = wᵢ·scaleᵢ: ranks add up, ΔW = Σ wᵢ·ΔWᵢ exactly.
    case cat
    /// A' = Σ sign(cᵢ)√|cᵢ|·Aᵢ, B' = Σ √|cᵢ|·Bᵢ (equal ranks): ΔW = Σ cᵢBᵢAᵢ plus the cross terms √|cᵢ||cⱼ|·sign(cⱼ)·BᵢAⱼ.
    case linear
    /// The best rank-R approximation (truncated SVD) of Σ wᵢ·ΔWᵢ, each ΔWᵢ scaled once.
    case svd
}

/// One adapter given to a merge, named (its path) for error messages.
public struct NamedLoRAWeights: Sendable {
    public let name: String
    public let weights: LoRAWeights
    public init(name: String, weights: LoRAWeights) { self.name = name; self.weights = weights }
}

extension LoRAWeights {
    /// Combines adapters of one base with one weight each into a single adapter whose scale is 1 (alpha = rank, no
    /// rsLoRA), as PEFT's `add_weighted_adapter` makes it. They must adapt the same linears of the same base.
    /// - Parameter rank: the svd result's rank (default: the largest input rank); only for `svd`.
    public static func merge(_ adapters: [NamedLoRAWeights], weights: [Float], method: LoRAMergeMethod,
                             rank: Int? = nil) throws -> LoRAWeights {
        guard let first = adapters.first else { throw ModelError.invalidInput("give at least one adapter to merge") }
        guard weights.count == adapters.count else {
            throw ModelError.invalidInput("\(adapters.count) adapters but \(weights.count) weights: give one weight per adapter")
        }
        try checkCompatible(adapters)
        let ranks = adapters.map(\.weights.config.rank)
        if method == .linear, let other = adapters.first(where: { $0.weights.config.rank != first.weights.config.rank }) {
            throw ModelError.invalidInput("\(other.name): field 'r' is \(other.weights.config.rank), \(first.name) has "
                + "\(first.weights.config.rank); linear needs equal ranks (use cat or svd)")
        }
        if method != .svd, rank != nil { throw ModelError.invalidInput("--rank is for the svd method only") }
        if let rank, rank < 1 { throw ModelError.invalidInput("--rank must be at least 1, got \(rank)") }
        let newRank: Int
        switch method {
        case .cat: newRank = ranks.reduce(0, +)
        case .linear: newRank = ranks[0]
        case .svd: newRank = rank ?? ranks.max()!
        }
        // cᵢ: each adapter's weight times its own scale; the result's scale is 1.
        let factors = zip(adapters, weights).map { $0.weights.config.scale * $1 }
        var pairs: [String: LoRAPair] = [:]
        for module in first.weights.moduleNames {
            let inputs = adapters.map { $0.weights.pairs[module]! }
            let concatenated = concatenate(inputs, factors: factors)
            switch method {
            case .cat: pairs[module] = concatenated
            case .linear: pairs[module] = linearCombination(inputs, factors: factors)
            case .svd:
                let (b, a) = LowRankSVD.truncated(b: concatenated.b, a: concatenated.a, rows: concatenated.outFeatures,
                                                  columns: concatenated.inFeatures, inner: concatenated.rank, rank: newRank)
                pairs[module] = LoRAPair(a: a, b: b, rank: newRank, inFeatures: concatenated.inFeatures,
                                         outFeatures: concatenated.outFeatures)
            }
        }
        let config = LoRAConfiguration(rank: newRank, alpha: Float(newRank), dropout: first.weights.config.dropout,
                                       targets: first.weights.config.targets)
        return LoRAWeights(config: config, pairs: pairs, baseModel: first.weights.baseModel, extra: first.weights.extra)
    }

    /// The same linears of the same base (`base_model_name_or_path`, Lathe's record of the base weights) in every adapter.
    static func checkCompatible(_ adapters: [NamedLoRAWeights]) throws {
        let first = adapters[0]
        let modules = Set(first.weights.pairs.keys)
        for other in adapters.dropFirst() {
            let w = other.weights
            if !sameBase(w.baseModel, first.weights.baseModel) {
                throw ModelError.invalidInput("\(other.name): field 'base_model_name_or_path' is '\(w.baseModel)', \(first.name) "
                    + "has '\(first.weights.baseModel)'; adapters merge only on the same base (edit the field if both name one model)")
            }
            if w.extra["lathe_training"] != first.weights.extra["lathe_training"] {
                throw ModelError.invalidInput("\(other.name): field 'lathe_training' differs from \(first.name)'s: the adapters "
                    + "were trained on different base weights (NF4 against float)")
            }
            let theirs = Set(w.pairs.keys)
            if let module = modules.symmetricDifference(theirs).sorted().first {
                throw ModelError.invalidInput("\(other.name): field 'target_modules' differs from \(first.name)'s: '\(module)' is "
                    + "adapted by \(theirs.contains(module) ? other.name : first.name) only")
            }
            for module in modules {
                let (p, q) = (first.weights.pairs[module]!, w.pairs[module]!)
                if (p.outFeatures, p.inFeatures) != (q.outFeatures, q.inFeatures) {
                    throw ModelError.invalidInput("\(other.name): '\(module)' is [\(q.outFeatures), \(q.inFeatures)], in "
                        + "\(first.name) [\(p.outFeatures), \(p.inFeatures)]: the adapters are for different bases")
                }
            }
        }
    }

    /// Whether two recorded bases name one model: the same text, or paths (or known names) of the same file.
    static func sameBase(_ x: String, _ y: String) -> Bool {
        if x == y { return true }
        guard let u = try? ModelLocator.resolve(x), let v = try? ModelLocator.resolve(y) else { return false }
        return u.resolvingSymlinksInPath().standardizedFileURL == v.resolvingSymlinksInPath().standardizedFileURL
    }

    /// A' = [c₁A₁; c₂A₂; …] (rows), B' = [B₁ B₂ …] (columns): B'·A' = Σ cᵢBᵢAᵢ.
    static func concatenate(_ pairs: [LoRAPair], factors: [Float]) -> LoRAPair {
        let (out, inFeatures) = (pairs[0].outFeatures, pairs[0].inFeatures)
        let rank = pairs.map(\.rank).reduce(0, +)
        var a: [Float] = [], b = [Float](repeating: 0, count: out * rank)
        a.reserveCapacity(rank * inFeatures)
        var column = 0
        for (pair, c) in zip(pairs, factors) {
            a += pair.a.map { $0 * c }
            for r in 0..<out { for k in 0..<pair.rank { b[r * rank + column + k] = pair.b[r * pair.rank + k] } }
            column += pair.rank
        }
        return LoRAPair(a: a, b: b, rank: rank, inFeatures: inFeatures, outFeatures: out)
    }

    /// A' = Σ sign(cᵢ)√|cᵢ|·Aᵢ, B' = Σ √|cᵢ|·Bᵢ (PEFT's linear: the sign on A only, so that it is not squared away).
    static func linearCombination(_ pairs: [LoRAPair], factors: [Float]) -> LoRAPair {
        var a = [Float](repeating: 0, count: pairs[0].a.count), b = [Float](repeating: 0, count: pairs[0].b.count)
        for (pair, c) in zip(pairs, factors) {
            let root = abs(c).squareRoot()
            let signedRoot = c < 0 ? -root : root
            for i in a.indices { a[i] += signedRoot * pair.a[i] }
            for i in b.indices { b[i] += root * pair.b[i] }
        }
        return LoRAPair(a: a, b: b, rank: pairs[0].rank, inFeatures: pairs[0].inFeatures, outFeatures: pairs[0].outFeatures)
    }
}

extension LoRAWeights {
    /// `lathe adapter merge`: reads the adapters (any format Lathe reads; `model` is the base for GGUF LoRA files),
    /// merges them and writes the result as a PEFT folder at `output`.
    @discardableResult
    public static func merge(files: [URL], model: String?, weights: [Float], method: LoRAMergeMethod, rank: Int?,
                             output: URL) throws -> LoRAWeights {
        let base = try model.map(AdapterBaseModel.init(model:))
        let adapters = try files.map { NamedLoRAWeights(name: $0.path, weights: try AdapterFile(reading: $0, base: base).weights) }
        let merged = try merge(adapters, weights: weights, method: method, rank: rank)
        try merged.writePEFT(to: output)
        return merged
    }
}
