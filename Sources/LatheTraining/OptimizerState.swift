import Foundation
import LatheFormats
import LatheModels
import LatheTensors

/// The safetensors layout of a saved optimizer state, shared by every optimizer.
///
/// Tensors are float32 (8-bit codes U8) and named `<parameter name>.<role>` (`layer.weight.exp_avg`, `….momentum_buffer`), as in
/// torch's state dict. `__metadata__` holds the format version, the optimizer kind, its hyper-parameters as
/// decimal strings (Swift's shortest round-trip form), `steps` and any per-parameter scalars the optimizer adds.
struct OptimizerStateArchive {
    static let formatKey = "lathe_optimizer_state"
    static let formatVersion = "1"
    static let kindKey = "optimizer"
    static let stepsKey = "steps"

    private var writer: SafetensorsWriter

    init(kind: OptimizerKind, hyperparameters: [String: String], stepCount: Int) {
        var metadata = hyperparameters
        metadata[Self.formatKey] = Self.formatVersion
        metadata[Self.kindKey] = kind.rawValue
        metadata[Self.stepsKey] = String(stepCount)
        writer = SafetensorsWriter(metadata: metadata)
    }

    mutating func setMetadata(_ value: String, forKey key: String) { writer.metadata[key] = value }

    mutating func add(_ tensor: Tensor, parameter: String, role: String) throws {
        try writer.addTensor(name: "\(parameter).\(role)", dimensions: tensor.shape, values: tensor.array, dtype: .f32)
    }

    /// Adds 8-bit codes (U8) of a parameter's state.
    mutating func add(codes: [UInt8], shape: [Int], parameter: String, role: String) throws {
        try writer.addTensor(name: "\(parameter).\(role)", dimensions: shape, bytes: codes)
    }

    func write(to url: URL) throws { try writer.write(to: url) }

    /// A validated state file: its metadata, step count, and tensors by parameter name then role.
    struct Contents {
        let metadata: [String: String]
        let stepCount: Int
        let tensors: [String: [String: Tensor]]
        /// The U8 tensors of the roles read as codes, by parameter name then role.
        let codes: [String: [String: [UInt8]]]

        /// An integer metadata value, or an error naming the key.
        func integer(_ key: String, in url: URL) throws -> Int {
            guard let text = metadata[key] else {
                throw OptimizerError(subject: "\(url.path): __metadata__.\(key)", problem: "missing")
            }
            guard let value = Int(text), value >= 0 else {
                throw OptimizerError(subject: "\(url.path): __metadata__.\(key)", problem: "\"\(text)\" is not a non-negative integer")
            }
            return value
        }
    }

    /// Reads `url` and checks it against the optimizer that loads it: same kind and hyper-parameters, and — once
    /// any step has run — every one of `roles` for exactly the trainable parameters given, each with its
    /// parameter's shape. An optimizer whose state differs by parameter (AdamW8bit keeps 8-bit codes and
    /// per-block scales for large tensors, float moments for small ones) passes `layout`: the roles a parameter
    /// has and the shape of each. Every error names the file and the key.
    /// `codeRoles` are stored as U8 codes, every other role as F32.
    static func read(from url: URL, kind: OptimizerKind, hyperparameters: [String: String], roles: [String],
                     parameters: [Parameter], layout: ((Parameter) -> [String: [Int]])? = nil,
                     codeRoles: Set<String> = []) throws -> Contents {
        func expected(_ parameter: Parameter) -> [String: [Int]] {
            layout?(parameter) ?? Dictionary(uniqueKeysWithValues: roles.map { ($0, parameter.shape) })
        }
        let file = try SafetensorsFile(url: url)
        let metadata = file.metadata
        func problem(_ key: String, _ text: String, fix: String? = nil) -> OptimizerError {
            OptimizerError(subject: "\(url.path): \(key)", problem: text, fix: fix)
        }
        guard metadata[formatKey] == formatVersion else {
            throw problem("__metadata__.\(formatKey)", "expected \"\(formatVersion)\", found \(metadata[formatKey].map { "\"\($0)\"" } ?? "nothing")",
                          fix: "the file is not a Lathe optimizer state")
        }
        guard metadata[kindKey] == kind.rawValue else {
            throw problem("__metadata__.\(kindKey)", "the state was saved by optimizer \"\(metadata[kindKey] ?? "")\" but is loaded into \(kind.rawValue)",
                          fix: "use the optimizer configuration the state was saved with")
        }
        for key in hyperparameters.keys.sorted() {
            guard metadata[key] == hyperparameters[key] else {
                throw problem("__metadata__.\(key)", "the state was saved with \(key) = \(metadata[key] ?? "(absent)") but the optimizer has \(hyperparameters[key] ?? "")",
                              fix: "use the optimizer configuration the state was saved with")
            }
        }
        guard let stepText = metadata[stepsKey], let stepCount = Int(stepText), stepCount >= 0 else {
            throw problem("__metadata__.\(stepsKey)", "missing or not a non-negative integer")
        }

        var trainable: [String: Parameter] = [:]
        var others = Set<String>()
        for parameter in parameters {
            guard trainable[parameter.name] == nil, !others.contains(parameter.name) else {
                throw problem(parameter.name, "parameter given twice", fix: "parameter names must be unique")
            }
            if parameter.trainable { trainable[parameter.name] = parameter } else { others.insert(parameter.name) }
        }

        var tensors: [String: [String: Tensor]] = [:]
        var codes: [String: [String: [UInt8]]] = [:]
        for info in file.tensors {
            guard let role = roles.first(where: { info.name.hasSuffix("." + $0) }) else {
                throw problem(info.name, "unexpected state tensor; this optimizer keeps \(roles.isEmpty ? "no tensors" : roles.joined(separator: ", "))")
            }
            let name = String(info.name.dropLast(role.count + 1))
            guard let parameter = trainable[name] else {
                let reason = others.contains(name) ? "parameter \(name) is not trainable" : "there is no parameter named \(name)"
                throw problem(info.name, "state for a parameter that is not being trained: \(reason)",
                              fix: "load the state with the same trainable parameters it was saved with")
            }
            let roleShapes = expected(parameter)
            guard let shape = roleShapes[role] else {
                throw problem(info.name, "unexpected state tensor for parameter \(name) of shape \(parameter.shape), which keeps \(roleShapes.keys.sorted().joined(separator: ", "))")
            }
            let expectedType: SafetensorsDType = codeRoles.contains(role) ? .u8 : .f32
            guard info.dtype == expectedType else {
                throw problem(info.name, "dtype \(info.dtype.rawValue), expected \(expectedType.rawValue)")
            }
            guard info.dimensions == shape else {
                throw problem(info.name, shape == parameter.shape
                    ? "shape \(info.dimensions) does not match parameter \(name) of shape \(parameter.shape)"
                    : "shape \(info.dimensions), expected \(shape) for parameter \(name) of shape \(parameter.shape)")
            }
            if expectedType == .u8 {
                codes[name, default: [:]][role] = try file.bytes(of: info)
            } else {
                tensors[name, default: [:]][role] = Tensor(shape: info.dimensions, values: try file.floats(of: info))
            }
        }
        if stepCount > 0 {
            for name in trainable.keys.sorted() {
                guard let parameter = trainable[name] else { continue }
                for role in expected(parameter).keys.sorted() where tensors[name]?[role] == nil && codes[name]?[role] == nil {
                    throw problem("\(name).\(role)", "missing from the state file though \(stepCount) steps were taken",
                                  fix: "load the state with the same trainable parameters it was saved with")
                }
            }
        }
        return Contents(metadata: metadata, stepCount: stepCount, tensors: tensors, codes: codes)
    }
}

/// Hyper-parameters as written in state files: the shortest decimal that reads back as the same Double.
func stateString(_ value: Double) -> String { "\(value)" }
