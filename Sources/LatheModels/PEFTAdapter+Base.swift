import Foundation

extension PEFTAdapter {
    /// The base weights an adapter was trained on, as `lathe sft` records it in adapter_config.json
    /// (`"lathe_training": {"base_weights": "f32" | "bf16" | "nf4"}`); nil for an adapter without the record (made by
    /// PEFT, or an older Lathe) or a folder without a readable config (`load` then names the problem).
    public static func trainedBase(_ folder: URL) throws -> WeightFormat? {
        let configURL = folder.appendingPathComponent("adapter_config.json")
        guard let data = try? Data(contentsOf: configURL), let object = try? JSONValue.parse(data),
              let recorded = object["lathe_training"]?["base_weights"] else { return nil }
        guard let name = recorded.string, let format = WeightFormat(rawValue: name) else {
            let names = WeightFormat.allCases.map(\.rawValue).joined(separator: ", ")
            throw ModelError.invalidConfiguration(file: configURL.path, message:
                "field 'lathe_training.base_weights' must be one of \(names), got \(recorded); remove the field to load the base as --dtype and --quantize say")
        }
        return format
    }
}

extension WeightFormat {
    /// The base to load under an adapter trained on `trained` when `dtype` and `quantize` leave the choice open
    /// (`dtype` auto and no `quantize`; any explicit `--dtype f32|bf16` or `--quantize none|nf4` wins): the adapter's
    /// own base if it is quantized (QLoRA's NF4), because the adapter learned to correct that base's rounding and
    /// answers differently on the float base; nil when the settings decide. A bf16 base is not followed: its relative
    /// rounding error (~0.2%) is about 1/50 of NF4's (9%), and `auto` already picks the format the CPU runs fastest.
    public static func base(underAdapterTrainedOn trained: WeightFormat?, dtype: String, quantize: String?) -> WeightFormat? {
        guard let trained, trained.isQuantized, quantize == nil, dtype == "auto" else { return nil }
        return trained
    }
}
