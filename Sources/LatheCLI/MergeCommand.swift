import ArgumentParser
import Foundation
import LatheFormats
import LatheModels

/// `lathe merge`: folds a LoRA adapter into the base weights and writes the merged model.
public struct MergeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Fold a LoRA adapter into the base model and write the result (GGUF for a GGUF base, safetensors for a folder).",
        discussion: """
            A QLoRA adapter (trained with --quantize nf4) is folded into the dequantized NF4 weights it was trained \
            with, so that the merged model answers as `--adapter` does; --quantize none folds it into the float32 base \
            instead (PEFT's merge_and_unload on a base loaded without load_in_4bit). Other adapters go onto the float32 \
            base (onto the dequantized NF4 weights with --quantize nf4). The embedding, norms and LM head are never \
            quantized and keep their values. `lathe export` writes the merged model in other formats.
            """)
    @OptionGroup public var model: ModelOptions
    @Option(help: "Folder to write the merged model into.") public var output: String
    @Option(help: "Weight type of a GGUF result, as llama-quantize names it (\(LlamaFileType.names)).") public var type: String = "f16"
    public init() {}

    public func validate() throws {
        guard model.adapter != nil else { throw ValidationError("give the adapter to merge with --adapter DIR") }
        guard LlamaFileType(name: type) != nil else {
            throw ValidationError("--type must be one of \(LlamaFileType.names), got \(type)")
        }
    }

    public func run() throws {
        let lm = try Self.mergedModel(model)
        let url = try ModelExport.write(lm, to: URL(fileURLWithPath: output), fileType: LlamaFileType(name: type) ?? .f16)
        print("merged model written to \(url.path)")
    }

    /// The model with `--adapter` folded in (none given: the float32 model), saying on stderr which base it went
    /// onto: the dequantized NF4 weights for a QLoRA adapter (the model it was trained with) unless --dtype or
    /// --quantize choose, an explicit --quantize nf4, or else the float32 base (--dtype only decides float32
    /// against NF4 here: bf16 rounding is not merged in).
    static func mergedModel(_ model: ModelOptions) throws -> LanguageModel {
        let adapterBase = try model.adapterBase()
        let chosen = try adapterBase ?? model.weightFormat(for: .inference)
        let base: WeightFormat = chosen.isQuantized ? chosen : .float32
        let lm = try model.load(base: base)
        lm.model.mergeAdapters()  // expands a quantized base to its dequantized values first
        if let adapter = model.adapter { log(baseNote(base, adapter: adapter, followsAdapter: adapterBase != nil)) }
        return lm
    }

    /// The stderr line saying which base the adapter was merged onto.
    static func baseNote(_ base: WeightFormat, adapter: String, followsAdapter: Bool) -> String {
        let name = base.rawValue.uppercased()
        if followsAdapter {
            return "adapter \(adapter) was trained on an \(name) base: merged onto the dequantized \(name) weights it was "
                + "trained with (--quantize none for the float32 base)"
        }
        return base.isQuantized ? "merged onto the dequantized \(name) base (--quantize \(base.rawValue))" : "merged onto the float32 base"
    }
}
