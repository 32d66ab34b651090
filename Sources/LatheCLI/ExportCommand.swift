import ArgumentParser
import Foundation
import LatheFormats
import LatheModels
import LatheTensors

/// `lathe export`: the model, with an adapter merged in as `lathe merge` merges it, as a quantized GGUF, a Hugging
/// Face safetensors folder or an Ollama folder.
public struct ExportCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the model (an --adapter merged in first) as a GGUF file, a Hugging Face folder or an Ollama folder.",
        discussion: """
            --format gguf writes OUT as one GGUF file with llama-quantize's tensor types for --quantize (Q4_K_M and \
            Q5_K_M mix in Q6_K where llama.cpp does; rows that are not whole 256-blocks fall back as llama.cpp falls \
            back); --format safetensors writes the folder OUT that transformers loads (F32, F16 or BF16); --format \
            ollama writes OUT/model.gguf and OUT/Modelfile (ChatML chat templates). The adapter is merged onto the \
            base `lathe merge` uses (a QLoRA adapter onto its dequantized NF4 weights).
            """)
    @Option(help: "A .gguf file, a Hugging Face model folder, or a known model name (smollm2-135m).")
    public var model: String = ModelLocator.defaultModelName
    @Option(help: "A LoRA adapter folder in PEFT's format, merged into the model first.") public var adapter: String?
    @Option(help: ArgumentHelp("Compute threads (auto or a count).", valueName: "auto|N")) public var threads = ThreadSetting.auto
    @Option(help: "gguf, safetensors or ollama.") public var format: ExportFormat
    @Option(help: "Tensor types, as llama-quantize names them (\(LlamaFileType.names)); default F16 for GGUF, F32 for safetensors.")
    public var quantize: String?
    @Option(help: "The GGUF file, or the folder of a safetensors or Ollama export.") public var output: String
    public init() {}

    var fileType: LlamaFileType? {
        quantize.map { LlamaFileType(name: $0) } ?? (format == .safetensors ? .f32 : .f16)
    }

    public func validate() throws {
        guard let fileType else { throw ValidationError("--quantize must be one of \(LlamaFileType.names), got \(quantize ?? "")") }
        if format == .safetensors, ![.f32, .f16, .bf16].contains(fileType) {
            throw ValidationError("--format safetensors holds F32, F16 or BF16, not \(fileType); use --format gguf for quantized types")
        }
    }

    public func run() throws {
        let options = try ModelOptions.parse(["--model", model, "--threads", threads.description]
                                             + (adapter.map { ["--adapter", $0] } ?? []))
        let files = try ModelExport.export(try MergeCommand.mergedModel(options), as: format, fileType: fileType ?? .f16,
                                           to: URL(fileURLWithPath: output))
        for file in files { print(file.path) }
    }
}

extension ExportFormat: ExpressibleByArgument {}
