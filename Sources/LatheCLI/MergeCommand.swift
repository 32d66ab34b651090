import ArgumentParser
import Foundation
import LatheFormats
import LatheModels

/// `lathe merge`: folds a LoRA adapter into the base weights and writes the merged model.
public struct MergeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Fold a LoRA adapter into the base model and write the result (GGUF for a GGUF base, safetensors for a folder).")
    @OptionGroup public var model: ModelOptions
    @Option(help: "Folder to write the merged model into.") public var output: String
    @Option(help: "Weight type of a GGUF result: f32, f16, bf16 or q8_0.") public var type: String = "f16"
    public init() {}

    public func validate() throws {
        guard model.adapter != nil else { throw ValidationError("give the adapter to merge with --adapter DIR") }
        guard ModelExport.ggufTypes[type] != nil else {
            throw ValidationError("--type must be one of \(ModelExport.ggufTypes.keys.sorted().joined(separator: ", ")), got \(type)")
        }
    }

    public func run() throws {
        // Adapters trained on a compact base (bf16, QLoRA's nf4) merge onto the float32 base.
        let lm = try model.load(for: .masterWeights)
        lm.model.mergeAdapters()
        let url = try ModelExport.write(lm, to: URL(fileURLWithPath: output), ggufType: ModelExport.ggufTypes[type]!)
        print("merged model written to \(url.path)")
    }
}
