import Foundation
import LatheData
import LatheModels
import LatheTensors

/// What `lathe advise` decides from: the model's shape, a summary of the data, the goal and the hardware. Every
/// field is measured or stated before the decision, which is then a pure function (`Advisor.advise`).
public struct AdviceRequest: Sendable {
    public var model: ModelShape
    public var data: DataSummary?
    public var goal: Goal
    public var hardware: Hardware
    /// Plan this method instead of the cheapest that fits (its settings are still chosen to fit).
    public var method: MemoryPlan.Method?

    public init(model: ModelShape, data: DataSummary?, goal: Goal, hardware: Hardware, method: MemoryPlan.Method? = nil) {
        self.model = model; self.data = data; self.goal = goal; self.hardware = hardware; self.method = method
    }
}

/// What the fine-tuning is for: the seeds' decision tree branches on it.
public enum Goal: String, Sendable, CaseIterable, Codable {
    /// An output format (JSON, a schema, a house style of answer).
    case format
    /// A task the model does poorly (extraction, classification, a tool's calls).
    case skill
    /// The language and conventions of a domain (legal, medical, a code base).
    case domain
    /// Tone and manner.
    case style
    /// Refusals and harmlessness.
    case safety
    /// Facts the model does not know.
    case knowledge
}

/// The model as the advice needs it: its shape, where it came from, and the runtime a Lathe process around it holds.
public struct ModelShape: Sendable {
    /// A path, or the table's name and source repository.
    public var name: String
    public var config: DecoderConfiguration
    /// The process, model file and tokenizer a training run holds besides its tensors (`lathe plan`'s estimate).
    public var runtime: RuntimeBaseline
    /// The path `model:` of a written configuration takes (nil: the model is not on this machine).
    public var loadablePath: String?
    /// Whether the model has a chat template (an instruction-tuned model): conversations render with it, and
    /// preference tuning can start from the model itself.
    public var hasChatTemplate: Bool

    public init(name: String, config: DecoderConfiguration, runtime: RuntimeBaseline, loadablePath: String?, hasChatTemplate: Bool) {
        self.name = name; self.config = config; self.runtime = runtime; self.loadablePath = loadablePath; self.hasChatTemplate = hasChatTemplate
    }

    /// A model from the table: no file, so the runtime is `runtimeWithoutFile`'s.
    public init(released model: ReleasedModel) {
        self.init(name: "\(model.name) (\(model.source), shape from its config.json)", config: model.config,
                  runtime: Self.runtimeWithoutFile(model.config), loadablePath: nil, hasChatTemplate: false)
    }

    /// The runtime of a model known by its shape alone: the measured process, the bf16 safetensors a download
    /// would bring, and the tokenizer scaled by the vocabulary (as `RuntimeBaseline.estimate` scales it).
    public static func runtimeWithoutFile(_ c: DecoderConfiguration) -> RuntimeBaseline {
        RuntimeBaseline(processBytes: RuntimeBaseline.measuredProcessBytes, modelFileBytes: c.parameterCount * 2,
                        tokenizerBytes: c.vocabularySize * RuntimeBaseline.measuredTokenizerBytesPerToken,
                        tokenizerLoadingBytes: c.vocabularySize * RuntimeBaseline.measuredTokenizerLoadingBytesPerToken)
    }
}

/// What the data is for a trainer: the kind decides which trainers can read it.
public enum DataKind: String, Sendable, Codable {
    /// Demonstrations: prompt/completion, messages, Alpaca or ShareGPT rows.
    case sft
    /// prompt/chosen/rejected pairs (DPO, ORPO, SimPO).
    case preference
    /// prompt/completion/label rows (KTO).
    case unpaired
    /// {"text": …} rows: continued pretraining on the domain's text.
    case rawText = "raw_text"

    public init(_ format: DatasetFormat) {
        switch format {
        case .text: self = .rawText
        case .preference: self = .preference
        case .kto: self = .unpaired
        case .promptCompletion, .messages, .alpaca, .sharegpt: self = .sft
        }
    }
}

/// The data's numbers the decision reads: measured by `DataSummary.measure` from the files.
public struct DataSummary: Sendable, Codable, Equatable {
    public var file: String
    public var kind: DataKind
    public var format: String
    public var rows: Int
    public var invalidRows: Int
    /// Tokens per row (the rendered conversation, or prompt + longest answer).
    public var lengths: LengthSummary?
    /// Tokens in every row together (one epoch, before padding).
    public var totalTokens: Int
    /// False when the lengths are characters ÷ `charactersPerToken` (no tokenizer).
    public var tokenized: Bool
    public var exactDuplicates: Int
    public var nearDuplicates: Int
    /// Rows of the held-out file (nil: none given).
    public var evalRows: Int?
    /// Held-out rows that repeat a training row (exactly or nearly).
    public var evalOverlap: Int?
    /// SFT rows whose supervised answers do not end with a stop token, of `eosCheckedRows` rendered (nil: not checked).
    public var rowsWithoutStopToken: Int?
    public var eosCheckedRows: Int

    /// Tokens the renderer adds to a measured row: a conversation's are in its rendered length, text and
    /// prompt/completion rows get BOS and EOS.
    public var specialTokenAllowance: Int {
        [DatasetFormat.messages, .alpaca, .sharegpt].map(\.rawValue).contains(format) ? 0 : 2
    }

    /// The ratio a length without a tokenizer is estimated with (English text in a 32k–150k-token BPE: 3.5–4.5).
    public static let charactersPerToken = 4.0

    enum CodingKeys: String, CodingKey {
        case file, kind, format, rows, lengths, tokenized
        case invalidRows = "invalid_rows", totalTokens = "total_tokens", exactDuplicates = "exact_duplicates"
        case nearDuplicates = "near_duplicates", evalRows = "eval_rows", evalOverlap = "eval_overlap"
        case rowsWithoutStopToken = "rows_without_stop_token", eosCheckedRows = "eos_checked_rows"
    }

    public init(file: String, kind: DataKind, format: String, rows: Int, invalidRows: Int = 0, lengths: LengthSummary?, totalTokens: Int,
                tokenized: Bool, exactDuplicates: Int = 0, nearDuplicates: Int = 0, evalRows: Int? = nil, evalOverlap: Int? = nil,
                rowsWithoutStopToken: Int? = nil, eosCheckedRows: Int = 0) {
        self.file = file; self.kind = kind; self.format = format; self.rows = rows; self.invalidRows = invalidRows
        self.lengths = lengths; self.totalTokens = totalTokens; self.tokenized = tokenized
        self.exactDuplicates = exactDuplicates; self.nearDuplicates = nearDuplicates; self.evalRows = evalRows
        self.evalOverlap = evalOverlap; self.rowsWithoutStopToken = rowsWithoutStopToken; self.eosCheckedRows = eosCheckedRows
    }
}

/// Where the run would train and how much memory it may use.
public struct Hardware: Sendable, Codable, Equatable {
    public enum Device: String, Sendable, Codable {
        /// This machine's CPU with Lathe: `MemoryPlan`'s allocations as they are.
        case cpu
        /// A stated GPU, on paper: bf16 weights, NF4 with double quantization, an 8-bit or paged optimizer.
        case gpu
        /// A stated unified-memory machine (Apple silicon), on paper as a GPU whose share of memory is bounded.
        case unified
    }
    public var device: Device
    /// The device's memory (stated, or the CPU's RAM detected).
    public var memoryBytes: Int
    /// What the run may use of it (`budgetBytes`); detected RAM counts only what is available now.
    public var availableBytes: Int
    /// How the memory was found: "stated", "/proc/meminfo".
    public var memorySource: String
    public var cores: Int
    /// The CPU's features the products use: avx512f, avx512_bf16, amx_bf16 (those /proc/cpuinfo lists).
    public var cpuFlags: [String]
    /// This CPU's bf16 instructions and vendor (`BF16Products`): whether `dtype: auto` holds a LoRA base in bf16.
    public var bf16Instructions: String
    public var cpuVendor: String
    /// The multiply-add rate the time estimate divides by (FLOP/s): this CPU's measured float32 matmul, or stated.
    public var flopsPerSecond: Double?
    /// Where the rate came from.
    public var rateSource: String?

    enum CodingKeys: String, CodingKey {
        case device, cores
        case memoryBytes = "memory_bytes", availableBytes = "available_bytes", memorySource = "memory_source"
        case cpuFlags = "cpu_flags", bf16Instructions = "bf16_instructions", cpuVendor = "cpu_vendor", flopsPerSecond = "flops_per_second", rateSource = "rate_source"
    }

    public init(device: Device, memoryBytes: Int, availableBytes: Int? = nil, memorySource: String, cores: Int, cpuFlags: [String] = [],
                bf16: BF16Products = BF16Products(instructions: .none, vendor: ""), flopsPerSecond: Double? = nil, rateSource: String? = nil) {
        self.device = device; self.memoryBytes = memoryBytes; self.availableBytes = availableBytes ?? memoryBytes
        self.memorySource = memorySource; self.cores = cores; self.cpuFlags = cpuFlags
        self.bf16Instructions = bf16.instructions.rawValue; self.cpuVendor = bf16.vendor
        self.flopsPerSecond = flopsPerSecond; self.rateSource = rateSource
    }

    public var bf16Products: BF16Products {
        BF16Products(instructions: BF16Products.Instructions(rawValue: bf16Instructions) ?? .none, vendor: cpuVendor)
    }

    /// The bytes a run may plan to use: 90% of a GPU's or of the available RAM (allocator slack, the rest of the
    /// system), 75% of unified memory (macOS lets the GPU wire about that much by default).
    public var budgetBytes: Int {
        Int(Double(availableBytes) * (device == .unified ? 0.75 : 0.9))
    }
}

/// A bad `lathe advise` input: names the flag or file and says what would do.
public struct AdviceError: Error, CustomStringConvertible, Equatable {
    public let field: String
    public let problem: String
    public init(field: String, problem: String) { self.field = field; self.problem = problem }
    public var description: String { "\(field): \(problem)" }
}
