import Foundation

/// A Hugging Face model folder: config.json (kept as parsed JSON), weights in model.safetensors or in shards
/// listed by model.safetensors.index.json, and the paths of the tokenizer and generation files when present.
public final class HFModelFolder: @unchecked Sendable {
    // @unchecked Sendable: immutable after init; `config` holds only JSONSerialization values.
    public let url: URL
    /// config.json as parsed JSON; another module decodes the model-specific fields.
    public let config: [String: Any]
    public let configURL: URL
    public let tokenizerURL: URL?
    public let tokenizerConfigURL: URL?
    public let generationConfigURL: URL?
    /// The weight files, sorted by file name (one element for an unsharded model).
    public let weightFiles: [SafetensorsFile]

    private let tensorLocations: [String: (fileIndex: Int, info: SafetensorsTensorInfo)]

    public static let singleWeightsName = "model.safetensors"
    public static let indexName = "model.safetensors.index.json"

    public init(url: URL) throws {
        self.url = url
        let folder = url.path
        let fileManager = FileManager.default
        func existing(_ name: String) -> URL? {
            let candidate = url.appendingPathComponent(name)
            return fileManager.fileExists(atPath: candidate.path) ? candidate : nil
        }

        guard let configURL = existing("config.json") else {
            throw FormatError(path: folder, problem: "missing config.json",
                              fix: "pass a Hugging Face model folder (with config.json and model.safetensors)")
        }
        self.configURL = configURL
        let configData: Data
        do {
            configData = try Data(contentsOf: configURL)
        } catch {
            throw FormatError(path: configURL.path, problem: "cannot read (\(error.localizedDescription))")
        }
        guard let config = (try? JSONSerialization.jsonObject(with: configData)) as? [String: Any] else {
            throw FormatError(path: configURL.path, problem: "is not a JSON object", fix: "check the file is complete JSON")
        }
        self.config = config
        tokenizerURL = existing("tokenizer.json")
        tokenizerConfigURL = existing("tokenizer_config.json")
        generationConfigURL = existing("generation_config.json")

        var files: [SafetensorsFile] = []
        var locations: [String: (fileIndex: Int, info: SafetensorsTensorInfo)] = [:]
        if let single = existing(Self.singleWeightsName) {
            files.append(try SafetensorsFile(url: single))
        } else if let indexURL = existing(Self.indexName) {
            let shardNames = try Self.readIndex(indexURL)
            var fileIndexByName: [String: Int] = [:]
            for shard in Set(shardNames.values).sorted() {
                guard !shard.hasPrefix("/"), !shard.split(separator: "/").contains("..") else {
                    throw FormatError(path: indexURL.path, problem: "shard path \(shard) leaves the model folder")
                }
                guard let shardURL = existing(shard) else {
                    throw FormatError(path: folder, problem: "missing weight shard \(shard) listed in \(Self.indexName)",
                                      fix: "download all shards of the model")
                }
                fileIndexByName[shard] = files.count
                files.append(try SafetensorsFile(url: shardURL))
            }
            for (tensor, shard) in shardNames {
                guard let fileIndex = fileIndexByName[shard] else { continue }
                guard files[fileIndex].tensor(named: tensor) != nil else {
                    throw FormatError(path: files[fileIndex].url.path, problem: "tensor \(tensor) is listed in \(Self.indexName) for this shard but is not in it",
                                      fix: "the shard or the index is stale; download the model again")
                }
            }
        } else {
            throw FormatError(path: folder, problem: "missing weights: neither \(Self.singleWeightsName) nor \(Self.indexName) is present",
                              fix: "download the model's safetensors weights")
        }
        for (fileIndex, file) in files.enumerated() {
            for info in file.tensors {
                if let earlier = locations[info.name] {
                    throw FormatError(path: folder, problem: "tensor \(info.name) is stored in both \(files[earlier.fileIndex].url.lastPathComponent) and \(file.url.lastPathComponent)")
                }
                locations[info.name] = (fileIndex, info)
            }
        }
        self.weightFiles = files
        self.tensorLocations = locations
    }

    /// Tensor name → shard file name from the index's `weight_map`.
    private static func readIndex(_ indexURL: URL) throws -> [String: String] {
        let data: Data
        do {
            data = try Data(contentsOf: indexURL)
        } catch {
            throw FormatError(path: indexURL.path, problem: "cannot read (\(error.localizedDescription))")
        }
        guard let index = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let weightMap = index["weight_map"] as? [String: Any] else {
            throw FormatError(path: indexURL.path, problem: "is not a JSON object with a weight_map")
        }
        var result: [String: String] = [:]
        for (tensor, file) in weightMap {
            guard let name = file as? String else {
                throw FormatError(path: indexURL.path, problem: "weight_map entry for \(tensor) is not a file name")
            }
            result[tensor] = name
        }
        return result
    }

    /// Every tensor name in the weight files, sorted.
    public var tensorNames: [String] { tensorLocations.keys.sorted() }

    /// The file holding a tensor, and where in it.
    public func tensor(named name: String) -> (file: SafetensorsFile, info: SafetensorsTensorInfo)? {
        tensorLocations[name].map { (weightFiles[$0.fileIndex], $0.info) }
    }

    /// The values of an F32, F16 or BF16 tensor as Floats, row-major.
    public func floats(named name: String) throws -> [Float] {
        guard let (file, info) = tensor(named: name) else {
            throw FormatError(path: url.path, problem: "no tensor named \(name) in the model's weights")
        }
        return try file.floats(of: info)
    }
}
