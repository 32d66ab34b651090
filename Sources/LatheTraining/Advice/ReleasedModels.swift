import LatheModels

/// The shapes of common released models, as their Hugging Face config.json files give them, so that
/// `lathe advise --model-size 7B --architecture llama` can plan a model that is not on this machine.
/// Each entry names its source repository; `AdviceTests` holds every shape to the parameter count its model card states.
public struct ReleasedModel: Sendable, Equatable {
    /// A short name (`llama-2-7b`), also accepted by `--model-size`.
    public let name: String
    /// The Hugging Face repository whose config.json the shape is read from.
    public let source: String
    /// The `--architecture` it answers to: llama, mistral, qwen2, gemma3.
    public let architecture: String
    /// The `--model-size` it answers to (1B, 7B, 135M…): the first entry of an architecture and size is the default.
    public let size: String
    /// The parameters the model card states, in billions (the tests' yardstick for the shape).
    public let statedBillions: Double
    public let config: DecoderConfiguration

    /// Models of the plain llama block (and Qwen2's with q/k/v biases). Gemma 3's also has q/k norms and two more
    /// norms per block (4·hidden + 2·head_dim values a layer, under 0.1% of any size here): its memory is planned
    /// as the llama block of the same shape.
    public static let all: [ReleasedModel] = [
        // Llama 3.2 (rope_scaling llama3 factor 32 from 8192 positions; tied embeddings).
        llama3("llama-3.2-1b", "meta-llama/Llama-3.2-1B", size: "1B", stated: 1.24, hidden: 2048, intermediate: 8192, layers: 16,
               heads: 32, kvHeads: 8, tied: true, factor: 32),
        llama3("llama-3.2-3b", "meta-llama/Llama-3.2-3B", size: "3B", stated: 3.21, hidden: 3072, intermediate: 8192, layers: 28,
               heads: 24, kvHeads: 8, tied: true, factor: 32),
        // Llama 2 (32,000 tokens, 4,096 positions, multi-head attention below 70B).
        llama2("llama-2-7b", "meta-llama/Llama-2-7b-hf", size: "7B", stated: 6.74, hidden: 4096, intermediate: 11008, layers: 32, heads: 32, kvHeads: 32),
        llama2("llama-2-13b", "meta-llama/Llama-2-13b-hf", size: "13B", stated: 13.0, hidden: 5120, intermediate: 13824, layers: 40, heads: 40, kvHeads: 40),
        llama2("llama-2-70b", "meta-llama/Llama-2-70b-hf", size: "70B", stated: 69.0, hidden: 8192, intermediate: 28672, layers: 80, heads: 64, kvHeads: 8),
        // Llama 3.1 (128,256 tokens, rope_scaling llama3 factor 8).
        llama3("llama-3.1-8b", "meta-llama/Llama-3.1-8B", size: "8B", stated: 8.03, hidden: 4096, intermediate: 14336, layers: 32,
               heads: 32, kvHeads: 8, tied: false, factor: 8),
        llama3("llama-3.1-70b", "meta-llama/Llama-3.1-70B", size: "70B", stated: 70.6, hidden: 8192, intermediate: 28672, layers: 80,
               heads: 64, kvHeads: 8, tied: false, factor: 8),
        ReleasedModel(name: "codellama-34b", source: "codellama/CodeLlama-34b-hf", architecture: "llama", size: "34B", statedBillions: 33.7,
                      config: DecoderConfiguration(modelType: "llama", vocabularySize: 32000, hiddenSize: 8192, intermediateSize: 22016,
                                                 layerCount: 48, headCount: 64, kvHeadCount: 8, ropeTheta: 1_000_000, maxPositions: 16384)),
        // The QLoRA paper's largest model (65B on one 48 GB GPU).
        llama2("llama-65b", "huggyllama/llama-65b", size: "65B", stated: 65.2, hidden: 8192, intermediate: 22016, layers: 80, heads: 64,
               kvHeads: 64, positions: 2048),
        ReleasedModel(name: "mistral-7b", source: "mistralai/Mistral-7B-v0.1", architecture: "mistral", size: "7B", statedBillions: 7.24,
                      config: DecoderConfiguration(modelType: "mistral", vocabularySize: 32000, hiddenSize: 4096, intermediateSize: 14336,
                                                 layerCount: 32, headCount: 32, kvHeadCount: 8, ropeTheta: 10000, maxPositions: 32768)),
        // SmolLM2 (llama architecture, 49,152 tokens, tied embeddings).
        ReleasedModel(name: "smollm2-135m", source: "HuggingFaceTB/SmolLM2-135M-Instruct", architecture: "llama", size: "135M", statedBillions: 0.135,
                      config: DecoderConfiguration(modelType: "llama", vocabularySize: 49152, hiddenSize: 576, intermediateSize: 1536, layerCount: 30,
                                                 headCount: 9, kvHeadCount: 3, ropeTheta: 100_000, tieWordEmbeddings: true, maxPositions: 8192)),
        ReleasedModel(name: "smollm2-1.7b", source: "HuggingFaceTB/SmolLM2-1.7B-Instruct", architecture: "llama", size: "1.7B", statedBillions: 1.71,
                      config: DecoderConfiguration(modelType: "llama", vocabularySize: 49152, hiddenSize: 2048, intermediateSize: 8192, layerCount: 24,
                                                 headCount: 32, kvHeadCount: 32, ropeTheta: 130_000, tieWordEmbeddings: true, maxPositions: 8192)),
        // Qwen2.5 (q/k/v biases; embeddings tied up to 3B).
        qwen2("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B", size: "0.5B", stated: 0.49, vocabulary: 151936, hidden: 896, intermediate: 4864, layers: 24,
              heads: 14, kvHeads: 2, tied: true),
        qwen2("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B", size: "1.5B", stated: 1.54, vocabulary: 151936, hidden: 1536, intermediate: 8960, layers: 28,
              heads: 12, kvHeads: 2, tied: true),
        qwen2("qwen2.5-3b", "Qwen/Qwen2.5-3B", size: "3B", stated: 3.09, vocabulary: 151936, hidden: 2048, intermediate: 11008, layers: 36,
              heads: 16, kvHeads: 2, tied: true),
        qwen2("qwen2.5-7b", "Qwen/Qwen2.5-7B", size: "7B", stated: 7.61, vocabulary: 152064, hidden: 3584, intermediate: 18944, layers: 28,
              heads: 28, kvHeads: 4, tied: false),
        qwen2("qwen2.5-14b", "Qwen/Qwen2.5-14B", size: "14B", stated: 14.7, vocabulary: 152064, hidden: 5120, intermediate: 13824, layers: 48,
              heads: 40, kvHeads: 8, tied: false),
        qwen2("qwen2.5-32b", "Qwen/Qwen2.5-32B", size: "32B", stated: 32.5, vocabulary: 152064, hidden: 5120, intermediate: 27648, layers: 64,
              heads: 40, kvHeads: 8, tied: false),
        qwen2("qwen2.5-72b", "Qwen/Qwen2.5-72B", size: "72B", stated: 72.7, vocabulary: 152064, hidden: 8192, intermediate: 29568, layers: 80,
              heads: 64, kvHeads: 8, tied: false),
        // Gemma 3 (head_dim 256 below 27B, tied embeddings; the text model of the 4B and larger).
        gemma3("gemma-3-270m", "google/gemma-3-270m", size: "270M", stated: 0.268, vocabulary: 262144, hidden: 640, intermediate: 2048,
               layers: 18, heads: 4, kvHeads: 1, headDim: 256),
        gemma3("gemma-3-1b", "google/gemma-3-1b-pt", size: "1B", stated: 1.0, vocabulary: 262144, hidden: 1152, intermediate: 6912,
               layers: 26, heads: 4, kvHeads: 1, headDim: 256),
        gemma3("gemma-3-4b", "google/gemma-3-4b-pt", size: "4B", stated: 3.88, vocabulary: 262208, hidden: 2560, intermediate: 10240,
               layers: 34, heads: 8, kvHeads: 4, headDim: 256),
        gemma3("gemma-3-12b", "google/gemma-3-12b-pt", size: "12B", stated: 11.8, vocabulary: 262208, hidden: 3840, intermediate: 15360,
               layers: 48, heads: 16, kvHeads: 8, headDim: 256),
        gemma3("gemma-3-27b", "google/gemma-3-27b-pt", size: "27B", stated: 27.0, vocabulary: 262208, hidden: 5376, intermediate: 21504,
               layers: 62, heads: 32, kvHeads: 16, headDim: 128),
    ]

    public static var architectures: [String] {
        all.reduce(into: [String]()) { names, model in if !names.contains(model.architecture) { names.append(model.architecture) } }
    }

    /// The model `--model-size S --architecture A` names: a size of that architecture, or a table name. Errors list
    /// what the table has.
    public static func find(size: String, architecture: String?) throws -> ReleasedModel {
        if let named = all.first(where: { $0.name == size.lowercased() }) { return named }
        guard let architecture else {
            throw AdviceError(field: "--architecture", problem: "give the architecture of a \(size) model (one of \(architectures.joined(separator: ", "))), or a model name: \(all.map(\.name).joined(separator: ", "))")
        }
        guard architectures.contains(architecture.lowercased()) else {
            throw AdviceError(field: "--architecture", problem: "'\(architecture)' is not in the table (one of \(architectures.joined(separator: ", ")))")
        }
        let sizes = all.filter { $0.architecture == architecture.lowercased() }
        guard let model = sizes.first(where: { $0.size.lowercased() == size.lowercased() }) else {
            throw AdviceError(field: "--model-size", problem: "no \(architecture) model of size '\(size)' in the table (\(architecture): \(sizes.map(\.size).joined(separator: ", ")))")
        }
        return model
    }

    private static func llama2(_ name: String, _ source: String, size: String, stated: Double, hidden: Int, intermediate: Int, layers: Int,
                               heads: Int, kvHeads: Int, positions: Int = 4096) -> ReleasedModel {
        ReleasedModel(name: name, source: source, architecture: "llama", size: size, statedBillions: stated,
                      config: DecoderConfiguration(modelType: "llama", vocabularySize: 32000, hiddenSize: hidden, intermediateSize: intermediate,
                                                 layerCount: layers, headCount: heads, kvHeadCount: kvHeads, maxPositions: positions))
    }

    private static func llama3(_ name: String, _ source: String, size: String, stated: Double, hidden: Int, intermediate: Int, layers: Int,
                               heads: Int, kvHeads: Int, tied: Bool, factor: Double) -> ReleasedModel {
        ReleasedModel(name: name, source: source, architecture: "llama", size: size, statedBillions: stated,
                      config: DecoderConfiguration(modelType: "llama", vocabularySize: 128256, hiddenSize: hidden, intermediateSize: intermediate,
                                                 layerCount: layers, headCount: heads, kvHeadCount: kvHeads, ropeTheta: 500_000,
                                                 ropeLlama3Scaling: .init(factor: factor, lowFrequencyFactor: 1, highFrequencyFactor: 4,
                                                                          originalMaxPositions: 8192),
                                                 tieWordEmbeddings: tied, maxPositions: 131072))
    }

    private static func qwen2(_ name: String, _ source: String, size: String, stated: Double, vocabulary: Int, hidden: Int, intermediate: Int,
                              layers: Int, heads: Int, kvHeads: Int, tied: Bool) -> ReleasedModel {
        ReleasedModel(name: name, source: source, architecture: "qwen2", size: size, statedBillions: stated,
                      config: DecoderConfiguration(modelType: "qwen2", vocabularySize: vocabulary, hiddenSize: hidden, intermediateSize: intermediate,
                                                 layerCount: layers, headCount: heads, kvHeadCount: kvHeads, ropeTheta: 1_000_000,
                                                 tieWordEmbeddings: tied, attentionBias: true, maxPositions: 32768))
    }

    private static func gemma3(_ name: String, _ source: String, size: String, stated: Double, vocabulary: Int, hidden: Int, intermediate: Int,
                               layers: Int, heads: Int, kvHeads: Int, headDim: Int) -> ReleasedModel {
        ReleasedModel(name: name, source: source, architecture: "gemma3", size: size, statedBillions: stated,
                      config: DecoderConfiguration(modelType: "gemma3", vocabularySize: vocabulary, hiddenSize: hidden, intermediateSize: intermediate,
                                                 layerCount: layers, headCount: heads, kvHeadCount: kvHeads, headDim: headDim, rmsNormEpsilon: 1e-6,
                                                 ropeTheta: 1_000_000, tieWordEmbeddings: true, maxPositions: 32768))
    }
}
