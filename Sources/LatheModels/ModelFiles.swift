import Foundation
import LatheFormats

/// A model file or folder opened for reading: the configuration and where the weights come from.
public enum ModelFiles {
    case gguf(GGUFFile)
    case huggingFace(HFModelFolder)

    /// Opens a .gguf file or a Hugging Face folder, validating it before anything is trusted.
    public static func open(_ url: URL) throws -> ModelFiles {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw ModelError.modelNotFound("\(url.path): no such file or folder")
        }
        return isDirectory.boolValue ? .huggingFace(try HFModelFolder(url: url)) : .gguf(try GGUFFile(url: url))
    }

    public var url: URL {
        switch self {
        case .gguf(let file): return file.url
        case .huggingFace(let folder): return folder.url
        }
    }

    public func configuration() throws -> DecoderConfiguration {
        switch self {
        case .gguf(let file): return try DecoderConfiguration.decode(gguf: file)
        case .huggingFace(let folder):
            return try DecoderConfiguration.decode(huggingFaceJSON: try Data(contentsOf: folder.configURL), source: folder.configURL.path)
        }
    }

    public func weightSource(for config: DecoderConfiguration) throws -> any WeightSource {
        switch self {
        case .gguf(let file):
            return GGUFWeightSource(file: file, config: config)
        case .huggingFace(let folder): return SafetensorsWeightSource(folder: folder)
        }
    }

    /// Bytes the weights take loaded as the file stores them (`WeightFormat.stored`), from the file alone: a GGUF's
    /// quantized matrices in their blocks, every other tensor in float32 (a safetensors folder's all in float32).
    public func storedWeightBytes(config: DecoderConfiguration) -> Int {
        guard case .gguf(let file) = self else { return config.parameterCount * 4 }
        // rope_freqs.weight is read into the configuration, not kept as a weight.
        return file.tensors.filter { $0.name != "rope_freqs.weight" }.reduce(0) { total, tensor in
            total + (GGMLBlockWeight.holds(tensor) ? tensor.byteCount : tensor.elementCount * 4)
        }
    }

    /// The model with its weights loaded, the compressible ones in `weightFormat`.
    public func loadModel(weightFormat: WeightFormat = .float32) throws -> DecoderModel {
        let config = try configuration()
        let model = DecoderModel(config: config, weightFormat: weightFormat)
        try model.load(from: try weightSource(for: config))
        // The weights now live in the model: the mapped file need not stay resident.
        switch self {
        case .gguf(let file): file.releaseResidentPages()
        case .huggingFace(let folder): folder.weightFiles.forEach { $0.releaseResidentPages() }
        }
        return model
    }
}
