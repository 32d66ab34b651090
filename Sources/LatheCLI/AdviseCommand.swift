import ArgumentParser
import Foundation
import LatheData
import LatheModels
import LatheTensors
import LatheTraining

extension Goal: ExpressibleByArgument {}
extension MemoryPlan.Method: ExpressibleByArgument {}

/// `lathe advise`: which method, on which hardware, with how much memory and time, before a run starts; and the
/// configuration of its first trainer.
public struct AdviseCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "advise",
        abstract: "Choose the pipeline and method (full, LoRA, QLoRA) that fit your model, data, goal and memory; write its config.",
        discussion: "The memory is lathe plan's on this CPU, or on paper for a stated GPU or unified memory; the time is the data's tokens × FLOPs per token ÷ this CPU's measured matmul rate (or --device-tflops).")

    @Option(help: "A .gguf file, a Hugging Face folder, a config.json alone (no weights needed), or a known name.")
    public var model: String?
    @Option(name: .customLong("model-size"), help: "A released model's size (1B, 3B, 7B, 8B, 13B, 34B, 70B…) with --architecture, or its table name (llama-3.1-70b).")
    public var modelSize: String?
    @Option(help: "With --model-size: llama, mistral, qwen2 or gemma3.") public var architecture: String?
    @Option(help: "Training data (JSONL or CSV): SFT, preference, unpaired (KTO) or raw text rows.") public var data: String?
    @Option(name: .customLong("eval-data"), help: "Held-out data.") public var evalData: String?
    @Option(help: "format, skill, domain, style, safety or knowledge.") public var goal: Goal
    @Option(name: .customLong("gpu-memory"), help: "Plan for a GPU with this much memory (24GB), on paper.") public var gpuMemory: String?
    @Option(name: .customLong("unified-memory"), help: "Plan for a unified-memory machine (64GB), on paper.") public var unifiedMemory: String?
    @Option(name: .customLong("cpu-memory"), help: "Plan Lathe on this CPU with this much RAM instead of what /proc/meminfo says is available.")
    public var cpuMemory: String?
    @Option(name: .customLong("device-tflops"), help: "The device's dense bf16 rate in TFLOP/s, for the time estimate (a CPU run measures its own).")
    public var deviceTFLOPS: Double?
    @Option(help: "Plan this method (full, lora, qlora) instead of the cheapest that fits.") public var method: MemoryPlan.Method?
    @Option(name: .customLong("write-config"), help: "Write the first trainer's configuration here (YAML, as lathe sft|dpo|orpo|kto read it).")
    public var writeConfig: String?
    @Option(help: "The run folder the written configuration names.") public var output = "runs/advised"
    @Flag(help: "Print one JSON object.") public var json = false
    public init() {}

    public func validate() throws {
        guard (model == nil) != (modelSize == nil) else { throw ValidationError("give --model M or --model-size S --architecture A (one of them)") }
        let stated = [gpuMemory, unifiedMemory, cpuMemory].compactMap { $0 }
        guard stated.count <= 1 else { throw ValidationError("give at most one of --gpu-memory, --unified-memory, --cpu-memory") }
        if let deviceTFLOPS, !(deviceTFLOPS > 0) { throw ValidationError("--device-tflops must be positive, got \(deviceTFLOPS)") }
        do { _ = try statedMemory() } catch { throw ValidationError("\(error)") }
        if let modelSize { do { _ = try ReleasedModel.find(size: modelSize, architecture: architecture) } catch { throw ValidationError("\(error)") } }
    }

    func statedMemory() throws -> (Hardware.Device, Int, String)? {
        if let gpuMemory { return (.gpu, try Hardware.parseSize(gpuMemory, flag: "--gpu-memory"), "stated (--gpu-memory)") }
        if let unifiedMemory { return (.unified, try Hardware.parseSize(unifiedMemory, flag: "--unified-memory"), "stated (--unified-memory)") }
        if let cpuMemory { return (.cpu, try Hardware.parseSize(cpuMemory, flag: "--cpu-memory"), "stated (--cpu-memory)") }
        return nil
    }

    /// This machine, with the stated memory in place of the detected; the rate measured on a CPU unless stated.
    func hardware() throws -> Hardware {
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let cores = ProcessInfo.processInfo.activeProcessorCount
        var hardware: Hardware
        if let (device, bytes, source) = try statedMemory() {
            let flags = (try? Hardware.detect(meminfo: "MemTotal: 1 kB", cpuinfo: cpuinfo, cores: cores, bf16: .current))?.cpuFlags ?? []
            hardware = Hardware(device: device, memoryBytes: bytes, memorySource: source, cores: cores, cpuFlags: flags, bf16: .current)
        } else {
            hardware = try Hardware.detect(meminfo: meminfo, cpuinfo: cpuinfo, cores: cores, bf16: .current)
        }
        if let deviceTFLOPS {
            hardware.flopsPerSecond = deviceTFLOPS * 1e12
            hardware.rateSource = "stated (--device-tflops)"
        } else if hardware.device == .cpu {
            hardware.flopsPerSecond = try MatMulRate.measure(rows: 512, inner: 576, outer: 1536)
            hardware.rateSource = "measured: float32 matmul, 512×576·576×1536, \(cores) cores"
        }
        return hardware
    }

    /// The model's shape and runtime, and the model itself (for its tokenizer) where its weights are here and their
    /// stored size takes at most a quarter of the memory available.
    func modelShape(available: Int) throws -> (ModelShape, LanguageModel?) {
        if let modelSize { return (ModelShape(released: try ReleasedModel.find(size: modelSize, architecture: architecture)), nil) }
        let reference = model ?? ModelLocator.defaultModelName
        let url = URL(fileURLWithPath: reference)
        if url.pathExtension.lowercased() == "json" {
            guard let data = FileManager.default.contents(atPath: url.path) else {
                throw AdviceError(field: "--model", problem: "\(url.path): no such file")
            }
            let config = try DecoderConfiguration.decode(huggingFaceJSON: data, source: url.path)
            return (ModelShape(name: url.path + " (a config alone: the file is assumed to be bf16 safetensors)", config: config,
                               runtime: ModelShape.runtimeWithoutFile(config), loadablePath: nil, hasChatTemplate: false), nil)
        }
        let files = try ModelFiles.open(try ModelLocator.resolve(reference))
        let config = try files.configuration()
        let runtime = try RuntimeBaseline.estimate(for: files, config: config)
        var lm: LanguageModel?
        if files.storedWeightBytes(config: config) <= available / 4 {
            lm = try LanguageModel.load(reference, weightFormat: .stored)
        }
        return (ModelShape(name: files.url.path, config: config, runtime: runtime, loadablePath: reference,
                           hasChatTemplate: lm?.chatTemplate != nil), lm)
    }

    public func run() throws {
        let hardware = try hardware()
        let (shape, lm) = try modelShape(available: hardware.availableBytes)
        let summary = try data.map {
            try DataSummary.measure(URL(fileURLWithPath: $0), evalData: evalData.map { URL(fileURLWithPath: $0) }, model: lm)
        }
        var advice = try Advisor.advise(AdviceRequest(model: shape, data: summary, goal: goal, hardware: hardware, method: method))
        if model != nil, lm == nil, summary != nil, !(summary?.tokenized ?? true) {
            advice.warnings.append("the model's weights are larger than a quarter of the memory available: lengths were estimated rather than tokenized")
        }
        if let writeConfig {
            let modelKey = shape.loadablePath ?? ReleasedModel.all.first { shape.name.hasPrefix($0.name + " ") }?.source ?? (model ?? "")
            if shape.loadablePath == nil {
                advice.warnings.append("the written config names \(modelKey): download the model and point model: at it before training")
            }
            let c = try advice.trainingConfiguration(model: modelKey, data: data, evalData: evalData, output: output)
            let header = "# Written by lathe advise (goal \(goal.rawValue), \(advice.method.rawValue), pipeline \(advice.pipeline.joined(separator: " → "))):\n"
                + "#   lathe \(advice.firstTrainer ?? "sft") \(writeConfig)\n"
            do { try Data((header + (try c.yaml())).utf8).write(to: URL(fileURLWithPath: writeConfig)) } catch {
                throw AdviceError(field: "--write-config", problem: "\(writeConfig): cannot write (\(error.localizedDescription))")
            }
        }
        if json {
            printLine(try jsonLine(advice))
            return
        }
        printReport(advice, hardware: hardware)
    }

    func printReport(_ advice: Advice, hardware: Hardware) {
        print("model: \(advice.model)")
        if let d = advice.data {
            let lengths = d.lengths.map { " \(d.tokenized ? "tokens" : "estimated tokens") per row: median \($0.median), p95 \($0.p95), max \($0.max);" } ?? ""
            print("data: \(d.file): \(d.rows) rows, \(d.format) (\(d.kind.rawValue));\(lengths) \(d.totalTokens) in all")
        }
        let memory = String(format: "%.1f GiB", Double(hardware.memoryBytes) / 1_073_741_824)
        print("hardware: \(hardware.device.rawValue), \(memory) \(hardware.memorySource), budget \(advice.budgetMiB) MiB; \(hardware.cores) cores"
              + (hardware.cpuFlags.isEmpty ? "" : ", " + hardware.cpuFlags.joined(separator: " "))
              + (hardware.flopsPerSecond.map { String(format: "; %.0f GFLOP/s (%@)", $0 / 1e9, hardware.rateSource ?? "") } ?? ""))
        print("")
        print("pipeline: \(advice.pipeline.joined(separator: " → "))   method: \(advice.method.rawValue)")
        let s = advice.settings
        print("settings: batch \(s.batchSize) × grad-accum \(s.gradientAccumulation), max length \(s.maxLength) (longest row \(s.peakLength)), \(s.epochs) epochs, lr \(s.learningRate), "
              + "\(s.optimizer.rawValue)" + (s.gradientCheckpointing ? ", gradient checkpointing" : "")
              + (s.lora.map { ", LoRA rank \($0.rank) alpha \(Int($0.alpha)) on \($0.targets.joined(separator: ","))" } ?? ""))
        print("memory (\(advice.memoryModel == "lathe" ? "lathe plan on this CPU" : "on paper"), at these settings):")
        for method in MemoryPlan.Method.allCases {
            let name = method.rawValue
            print("  " + name.padding(toLength: 6, withPad: " ", startingAt: 0)
                  + String(format: "%10.1f MiB", advice.memoryMiB[name] ?? 0) + (advice.fits[name] == true ? "  fits" : "  does not fit")
                  + (method == advice.method ? "  ← advised" : ""))
        }
        if let t = advice.time {
            print(String(format: "time: %d tokens/epoch × %.3g FLOPs/token ÷ %.0f GFLOP/s = %@ for %d epoch%@ (matrix products only: a lower bound)",
                         t.tokensPerEpoch, t.flopsPerToken, t.flopsPerSecond / 1e9, duration(t.seconds), s.epochs, s.epochs == 1 ? "" : "s"))
        }
        print("")
        print("why:")
        for reason in advice.reasons { print("  - \(reason)") }
        if !advice.warnings.isEmpty {
            print("warnings:")
            for warning in advice.warnings { print("  ! \(warning)") }
        }
        if let writeConfig { print("\nwritten: \(writeConfig) — run it with: lathe \(advice.firstTrainer ?? "sft") \(writeConfig)") }
    }
}
