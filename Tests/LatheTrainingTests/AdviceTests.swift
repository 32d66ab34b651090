import Foundation
import XCTest
import LatheData
import LatheModels
import LatheTensors
import LatheTestSupport
@testable import LatheTraining

/// `lathe advise`'s decision on one example request per branch of the tree, its numbers held to `MemoryPlan`, its
/// inputs' errors, and the configuration it writes read back by the trainers' loader.
final class AdviceTests: XCTestCase {
    static let gib = 1 << 30

    func model(_ name: String, instructed: Bool = false) throws -> ModelShape {
        var shape = ModelShape(released: try ReleasedModel.find(size: name, architecture: nil))
        shape.hasChatTemplate = instructed
        return shape
    }

    func data(_ kind: DataKind, rows: Int, median: Int = 200, max: Int = 300, eval: Int? = 50, tokenized: Bool = true) -> DataSummary {
        // Lengths spread from half the median to the longest, the median in the middle.
        let values = (0..<rows).map { i in i < rows / 2 ? median / 2 + i % Swift.max(1, median / 2) : i == rows - 1 ? max : median }
        let summary = LengthSummary(values)
        return DataSummary(file: "train.jsonl", kind: kind, format: kind == .sft ? "messages" : kind.rawValue, rows: rows,
                           lengths: summary, totalTokens: summary?.sum ?? 0, tokenized: tokenized, evalRows: eval, evalOverlap: eval == nil ? nil : 0,
                           rowsWithoutStopToken: tokenized && kind == .sft ? 0 : nil, eosCheckedRows: tokenized && kind == .sft ? rows : 0)
    }

    func cpu(_ bytes: Int, bf16: BF16Products = BF16Products(instructions: .none, vendor: "")) -> Hardware {
        Hardware(device: .cpu, memoryBytes: bytes, memorySource: "test", cores: 2, bf16: bf16, flopsPerSecond: 1e11, rateSource: "test")
    }

    func gpu(_ gigabytes: Int) -> Hardware {
        Hardware(device: .gpu, memoryBytes: gigabytes * Self.gib, memorySource: "test", cores: 8, flopsPerSecond: 1e14, rateSource: "test")
    }

    func advise(_ model: ModelShape, _ data: DataSummary?, _ goal: Goal, _ hardware: Hardware, method: MemoryPlan.Method? = nil) throws -> Advice {
        try Advisor.advise(AdviceRequest(model: model, data: data, goal: goal, hardware: hardware, method: method))
    }

    // MARK: - The table

    /// Every shape's parameter count is within 1.5% of what its model card states (Gemma 3's extra norms and
    /// rounding of the stated figures are well inside that; a wrong width or depth is not).
    func testReleasedShapesMatchTheirStatedParameterCounts() throws {
        for model in ReleasedModel.all {
            let billions = Double(model.config.parameterCount) / 1e9
            let error = abs(billions - model.statedBillions) / model.statedBillions
            XCTAssertLessThan(error, 0.015, "\(model.name): \(billions)B from the shape, \(model.statedBillions)B stated")
        }
        XCTAssertEqual(try ReleasedModel.find(size: "7B", architecture: "llama").name, "llama-2-7b")
        XCTAssertEqual(try ReleasedModel.find(size: "8b", architecture: "llama").name, "llama-3.1-8b")
        XCTAssertEqual(try ReleasedModel.find(size: "llama-3.1-70b", architecture: nil).name, "llama-3.1-70b")
        XCTAssertEqual(try ReleasedModel.find(size: "270M", architecture: "gemma3").config.headDim, 256)
    }

    // MARK: - The branches

    func testKnowledgeGoesToRetrievalFirst() throws {
        let advice = try advise(try model("smollm2-135m"), data(.sft, rows: 2000), .knowledge, cpu(16 * Self.gib))
        XCTAssertEqual(advice.pipeline, ["rag", "sft"])
        XCTAssertEqual(advice.firstTrainer, "sft")
        XCTAssertTrue(advice.reasons.contains { $0.contains("RAG") }, "\(advice.reasons)")
    }

    func testFormatWithDemonstrationsIsLoRASFT() throws {
        let advice = try advise(try model("smollm2-135m"), data(.sft, rows: 500), .format, cpu(16 * Self.gib))
        XCTAssertEqual(advice.pipeline, ["sft"])
        XCTAssertEqual(advice.method, .lora)
        XCTAssertEqual(advice.settings.lora?.rank, 8)
        XCTAssertEqual(advice.settings.lora?.targets, ["all-linear"])
        XCTAssertEqual(advice.settings.maxLength, 320, "the longest row (300) + 8, rounded up to 64")
        XCTAssertEqual(advice.settings.peakLength, 300, "batches are padded to their longest row, not to max_length")
        XCTAssertEqual(advice.settings.batchSize * advice.settings.gradientAccumulation, 16)
        XCTAssertFalse(advice.warnings.contains { $0.contains("examples for") }, "500 rows are enough for a format: \(advice.warnings)")
    }

    func testDomainWithMuchDataTrainsEveryWeightWhereItFits() throws {
        // 135M parameters × 0.1 = 13.5M tokens: 100,000 rows of ~175 tokens is over it.
        let large = data(.sft, rows: 100_000)
        XCTAssertGreaterThan(Double(large.totalTokens), 0.1 * 134_515_008)
        let roomy = try advise(try model("smollm2-135m"), large, .domain, cpu(16 * Self.gib))
        XCTAssertEqual(roomy.method, .full)
        XCTAssertNil(roomy.settings.lora)
        // With 1.5 GiB the float32 weights, gradients and moments of full fine-tuning (~2 GiB) no longer fit; LoRA does.
        let tight = try advise(try model("smollm2-135m"), large, .domain, cpu(3 * Self.gib / 2))
        XCTAssertEqual(tight.method, .lora)
        XCTAssertEqual(tight.fits["full"], false)
        XCTAssertTrue(tight.reasons.contains { $0.contains("does not fit") }, "\(tight.reasons)")
        // The same data for a format: an adapter, whatever the memory.
        XCTAssertEqual(try advise(try model("smollm2-135m"), large, .format, cpu(16 * Self.gib)).method, .lora)
    }

    func testStyleWithPairsIsDPOOnAnInstructedModelAndORPOOnABaseModel() throws {
        let pairs = data(.preference, rows: 1000)
        let instructed = try advise(try model("smollm2-135m", instructed: true), pairs, .style, cpu(16 * Self.gib))
        XCTAssertEqual(instructed.pipeline, ["dpo"])
        let base = try advise(try model("smollm2-135m"), pairs, .safety, cpu(16 * Self.gib))
        XCTAssertEqual(base.pipeline, ["orpo"])
        // Pairs are two rows each: the plan holds twice the batch's rows.
        let sizer = MethodSizer(request: AdviceRequest(model: try model("smollm2-135m"), data: pairs, goal: .style, hardware: cpu(16 * Self.gib)),
                                lora: base.settings.lora!, length: base.settings.peakLength, sequencesPerItem: 2)
        XCTAssertEqual(base.memoryMiB["lora"], Advisor.mib(sizer.bytes(.lora, batchSize: base.settings.batchSize, checkpointing: false, optimizer: .adamw)))
    }

    func testStyleWithDemonstrationsIsSFTThenDPOAndAsksForPairs() throws {
        let advice = try advise(try model("smollm2-135m"), data(.sft, rows: 1000), .style, cpu(16 * Self.gib))
        XCTAssertEqual(advice.pipeline, ["sft", "dpo"])
        XCTAssertTrue(advice.warnings.contains { $0.contains("preference pairs") }, "\(advice.warnings)")
    }

    func testUnpairedLabelsGoToKTO() throws {
        let labels = data(.unpaired, rows: 1000)
        XCTAssertEqual(try advise(try model("smollm2-135m", instructed: true), labels, .safety, cpu(16 * Self.gib)).pipeline, ["kto"])
        XCTAssertEqual(try advise(try model("smollm2-135m"), labels, .style, cpu(16 * Self.gib)).pipeline, ["sft", "kto"])
        let skill = try advise(try model("smollm2-135m"), labels, .skill, cpu(16 * Self.gib))
        XCTAssertEqual(skill.pipeline, ["kto"])
        XCTAssertTrue(skill.warnings.contains { $0.contains("demonstrations") })
    }

    func testPairsForAFormatGoToORPOWithAWarning() throws {
        let advice = try advise(try model("smollm2-135m"), data(.preference, rows: 1000), .format, cpu(16 * Self.gib))
        XCTAssertEqual(advice.pipeline, ["orpo"])
        XCTAssertTrue(advice.warnings.contains { $0.contains("demonstrations") })
    }

    func testRawTextIsContinuedPretrainingForADomainAndAWarningForASkill() throws {
        let text = data(.rawText, rows: 2000, tokenized: false)
        let domain = try advise(try model("smollm2-135m"), text, .domain, cpu(16 * Self.gib))
        XCTAssertEqual(domain.pipeline, ["sft"])
        XCTAssertTrue(domain.reasons.contains { $0.contains("continued pretraining") })
        XCTAssertTrue(domain.warnings.contains { $0.contains("estimated at 4 characters per token") }, "\(domain.warnings)")
        let skill = try advise(try model("smollm2-135m"), text, .skill, cpu(16 * Self.gib))
        XCTAssertTrue(skill.warnings.contains { $0.contains("raw text teaches") })
    }

    /// Llama 2 7B on a 12 GB GPU: a bf16 base (13.5 GB) cannot hold, NF4 (3.5 GB) can.
    func testLoRAThatDoesNotFitBecomesQLoRA() throws {
        let advice = try advise(try model("llama-2-7b"), data(.sft, rows: 2000, median: 400, max: 500), .skill, gpu(12))
        XCTAssertEqual(advice.method, .qlora)
        XCTAssertEqual(advice.fits["lora"], false)
        XCTAssertEqual(advice.fits["qlora"], true)
        XCTAssertTrue(advice.reasons.contains { $0.hasPrefix("QLoRA") }, "\(advice.reasons)")
        let config = try advice.trainingConfiguration(model: "llama-2-7b", data: "train.jsonl", evalData: nil, output: "runs/x")
        XCTAssertEqual(config.quantize, "nf4")
        XCTAssertEqual(config.method, .lora)
    }

    func testNothingFittingSaysByHowMuch() throws {
        let advice = try advise(try model("llama-2-70b"), data(.sft, rows: 2000), .skill, gpu(16))
        XCTAssertEqual(advice.method, .qlora)
        XCTAssertTrue(advice.settings.gradientCheckpointing)
        XCTAssertEqual(advice.settings.batchSize, 1)
        XCTAssertTrue(advice.warnings.contains { $0.hasPrefix("nothing fits") && $0.contains("budget 14745.6 MiB") }, "\(advice.warnings)")
    }

    /// Long rows on a small budget: batch 1 without checkpointing does not fit, with it does.
    func testCheckpointingIsChosenOnlyWhenBatchOneDoesNotFit() throws {
        let shape = try model("llama-2-7b")
        let long = data(.sft, rows: 2000, median: 3000, max: 4000)
        let request = AdviceRequest(model: shape, data: long, goal: .skill, hardware: gpu(80))
        let lora = LoRAConfiguration(rank: 16, alpha: 32, targets: ["all-linear"])
        let sizer = MethodSizer(request: request, lora: lora, length: 4000, sequencesPerItem: 1)
        let plain = sizer.bytes(.qlora, batchSize: 1, checkpointing: false, optimizer: .adamw)
        let checkpointed = sizer.bytes(.qlora, batchSize: 1, checkpointing: true, optimizer: .adamw)
        XCTAssertLessThan(checkpointed, plain)
        // A GPU between the two: QLoRA (LoRA's bf16 base is 13.5 GB alone) with checkpointing.
        let between = Int(Double(checkpointed + plain) / 2 / 0.9)
        let hardware = Hardware(device: .gpu, memoryBytes: between, memorySource: "test", cores: 8)
        XCTAssertLessThan(sizer.bytes(.qlora, batchSize: 1, checkpointing: true, optimizer: .adamw), hardware.budgetBytes)
        let advice = try advise(shape, long, .skill, hardware)
        XCTAssertEqual(advice.method, .qlora)
        XCTAssertEqual(advice.settings.maxLength, 4032)
        XCTAssertEqual(advice.settings.peakLength, 4000)
        XCTAssertTrue(advice.settings.gradientCheckpointing)
        XCTAssertEqual(advice.settings.batchSize, 1)
        XCTAssertEqual(advice.settings.gradientAccumulation, 16)
        // More memory: no checkpointing.
        XCTAssertFalse(try advise(shape, long, .skill, gpu(80)).settings.gradientCheckpointing)
    }

    func testAStatedMethodIsPlannedEvenWhenItIsNotTheCheapest() throws {
        let advice = try advise(try model("smollm2-135m"), data(.sft, rows: 500), .format, cpu(16 * Self.gib), method: .qlora)
        XCTAssertEqual(advice.method, .qlora)
        XCTAssertTrue(advice.reasons.contains { $0.contains("--method") })
    }

    // MARK: - The numbers

    /// On this CPU each method's memory is `MemoryPlan.totalBytes` (what `lathe plan` prints) at the advised settings.
    func testCPUMemoryIsTheMemoryPlansTotal() throws {
        let shape = try model("smollm2-135m")
        let bf16 = BF16Products(instructions: .amx, vendor: "GenuineIntel")
        let advice = try advise(shape, data(.sft, rows: 500), .skill, cpu(16 * Self.gib, bf16: bf16))
        let s = advice.settings
        for (method, base) in [(MemoryPlan.Method.full, 2.0), (.lora, 2.0), (.qlora, MemoryPlan.nf4BytesPerValue)] {
            let plan = MemoryPlan(config: shape.config, method: method, batchSize: s.batchSize, length: s.peakLength,
                                  lora: s.lora!, gradientCheckpointing: s.gradientCheckpointing, optimizer: .adamw,
                                  baseBytesPerValue: base, compactBaseMultipliesNatively: base == 2, runtime: shape.runtime)
            XCTAssertEqual(advice.memoryMiB[method.rawValue], Advisor.mib(plan.totalBytes), method.rawValue)
        }
        // Without bf16 products the LoRA base is float32: more memory.
        let float = try advise(shape, data(.sft, rows: 500), .skill, cpu(16 * Self.gib))
        XCTAssertGreaterThan(float.memoryMiB["lora"]!, advice.memoryMiB["lora"]!)
    }

    /// The llama shapes on a stated GPU at batch 1 × 512 tokens with gradient checkpointing (the README's table):
    /// LoRA holds the bf16 base (2 bytes a parameter), QLoRA its NF4 linears (≈ 0.52 bytes) and bf16 embeddings,
    /// full fine-tuning bf16 weights and gradients and 8-bit moments (≈ 6 bytes); and the QLoRA paper's 65B fits one
    /// 48 GB GPU.
    func testPaperMemoryOfTheLlamaShapes() throws {
        var table: [String] = []
        for name in ["llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-65b"] {
            let shape = try model(name)
            let request = AdviceRequest(model: shape, data: nil, goal: .skill, hardware: gpu(80))
            let sizer = MethodSizer(request: request, lora: LoRAConfiguration(rank: 16, alpha: 32, targets: ["all-linear"]),
                                    length: 512, sequencesPerItem: 1)
            func gb(_ method: MemoryPlan.Method) -> Double {
                Double(sizer.bytes(method, batchSize: 1, checkpointing: true, optimizer: sizer.optimizer(for: method))) / 1e9
            }
            let parameters = Double(shape.config.parameterCount) / 1e9
            let (full, lora, qlora) = (gb(.full), gb(.lora), gb(.qlora))
            table.append(String(format: "%@: full %.1f GB, LoRA %.1f GB, QLoRA %.1f GB", name, full, lora, qlora))
            // Beyond the weights and the trained values' state (LoRA: adapters, gradients and two moments in float32,
            // 16 bytes a value; full: bf16 gradients and 8-bit moments with a float32 scale per 256, 2 + 2.03 bytes):
            // the 1 GiB runtime and checkpointed bf16 activations at 512 tokens: about 0.5 GB for 7B, 2.3 GB for LLaMA 65B,
            // whose 80 layers keep full-width keys and values.
            let adapters = 16 * Double(sizer.plan(.lora, batchSize: 1, checkpointing: true, optimizer: .adamw).adapterValues) / 1e9
            let runtime = Double(Advisor.deviceRuntimeBytes) / 1e9
            XCTAssertEqual(lora - 2 * parameters - adapters - runtime, 1.5, accuracy: 1.2, name)
            XCTAssertEqual(full - 6.03 * parameters - runtime, 1.5, accuracy: 1.2, name)
            XCTAssertGreaterThan(qlora, 0.5 * parameters, name)
            XCTAssertLessThan(qlora, 0.6 * parameters + 3, name)
            if name == "llama-65b" { XCTAssertLessThan(qlora, 48 * 1.073741824, "the QLoRA paper's 65B on one 48 GB GPU") }
        }
        print(table.joined(separator: "\n"))
    }

    func testTimeIsTokensTimesFLOPsOverRate() throws {
        let shape = try model("smollm2-135m")
        let d = data(.sft, rows: 500)
        let advice = try advise(shape, d, .format, cpu(16 * Self.gib))
        let time = try XCTUnwrap(advice.time)
        XCTAssertEqual(time.tokensPerEpoch, d.totalTokens)
        // LoRA: forward + input gradients, 4 FLOPs per weight of the products (SmolLM2: 106M in the blocks, 28M in the head).
        let perToken = Advisor.flopsPerToken(shape.config, method: .lora, length: advice.settings.peakLength, checkpointing: false, referencePass: false)
        XCTAssertEqual(time.flopsPerToken, perToken)
        XCTAssertGreaterThan(perToken, 4 * 134e6)
        XCTAssertLessThan(perToken, 4 * 134e6 * 1.1)
        XCTAssertEqual(time.seconds, Double(d.totalTokens * advice.settings.epochs) * perToken / 1e11, accuracy: 1e-9)
        XCTAssertEqual(Advisor.flopsPerToken(shape.config, method: .full, length: 512, checkpointing: false, referencePass: false),
                       1.5 * Advisor.flopsPerToken(shape.config, method: .lora, length: 512, checkpointing: false, referencePass: false), accuracy: 1)
    }

    // MARK: - Warnings

    func testDataWarningsCarryTheirNumbers() throws {
        var d = data(.sft, rows: 80, eval: nil)
        d.exactDuplicates = 3
        d.nearDuplicates = 1
        d.rowsWithoutStopToken = 7
        let warnings = try advise(try model("smollm2-135m"), d, .skill, cpu(16 * Self.gib)).warnings
        XCTAssertTrue(warnings.contains("80 examples for a skill goal: it usually takes 500 or more"), "\(warnings)")
        XCTAssertTrue(warnings.contains { $0.hasPrefix("no held-out data") && $0.contains("about 20 rows") }, "\(warnings)")
        XCTAssertTrue(warnings.contains { $0.hasPrefix("3 exact and 1 near-duplicate rows (5.0% of 80)") }, "\(warnings)")
        XCTAssertTrue(warnings.contains { $0.hasPrefix("7 of 80 rendered rows") }, "\(warnings)")
        d.evalRows = 10
        d.evalOverlap = 2
        let held = try advise(try model("smollm2-135m"), d, .skill, cpu(16 * Self.gib)).warnings
        XCTAssertTrue(held.contains { $0.hasPrefix("2 of 10 held-out rows repeat training rows") }, "\(held)")
    }

    func testOutlierRowsAreCutAtThe95thPercentile() throws {
        let d = data(.sft, rows: 1000, median: 200, max: 5000)
        let advice = try advise(try model("smollm2-135m"), d, .skill, cpu(16 * Self.gib))
        XCTAssertEqual(advice.settings.maxLength, (d.lengths!.p95 + 8 + 63) / 64 * 64)
        XCTAssertEqual(advice.settings.peakLength, advice.settings.maxLength, "the longest rows are cut to max_length")
        XCTAssertTrue(advice.warnings.contains { $0.contains("longest 5000") }, "\(advice.warnings)")
    }

    // MARK: - Inputs

    func testBadInputsNameTheFlag() throws {
        XCTAssertThrowsError(try ReleasedModel.find(size: "7B", architecture: "gpt9")) { error in
            XCTAssertTrue("\(error)".hasPrefix("--architecture: 'gpt9' is not in the table"), "\(error)")
        }
        XCTAssertThrowsError(try ReleasedModel.find(size: "5B", architecture: "llama")) { error in
            XCTAssertTrue("\(error)".contains("--model-size: no llama model of size '5B'") && "\(error)".contains("7B"), "\(error)")
        }
        XCTAssertThrowsError(try ReleasedModel.find(size: "7B", architecture: nil)) { XCTAssertTrue("\($0)".hasPrefix("--architecture")) }
        XCTAssertEqual(try Hardware.parseSize("24GB", flag: "--gpu-memory"), 24 << 30)
        XCTAssertEqual(try Hardware.parseSize("512 MiB", flag: "--gpu-memory"), 512 << 20)
        XCTAssertEqual(try Hardware.parseSize("1.5T", flag: "--gpu-memory"), 3 << 39)
        for bad in ["lots", "24XB", "-3GB", ""] {
            XCTAssertThrowsError(try Hardware.parseSize(bad, flag: "--gpu-memory"), bad) { XCTAssertTrue("\($0)".hasPrefix("--gpu-memory: '\(bad)'")) }
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("advice-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        XCTAssertThrowsError(try DataSummary.measure(folder.appendingPathComponent("none.jsonl"), model: nil)) {
            XCTAssertTrue("\($0)".hasPrefix("--data: ") && "\($0)".contains("no such file"), "\($0)")
        }
        let odd = folder.appendingPathComponent("odd.jsonl")
        try Data("{\"question\": \"a\", \"reply\": \"b\"}\n".utf8).write(to: odd)
        XCTAssertThrowsError(try DataSummary.measure(odd, model: nil)) { XCTAssertTrue("\($0)".contains("no row is in a format"), "\($0)") }
    }

    func testHardwareIsReadFromProcFiles() throws {
        let meminfo = "MemTotal:       16318412 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n"
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
        let hardware = try Hardware.detect(meminfo: meminfo, cpuinfo: cpuinfo, cores: 2, bf16: BF16Products(instructions: .avx512BF16, vendor: "AuthenticAMD"))
        XCTAssertEqual(hardware.memoryBytes, 16318412 * 1024)
        XCTAssertEqual(hardware.availableBytes, 8000000 * 1024)
        XCTAssertEqual(hardware.budgetBytes, Int(Double(8000000 * 1024) * 0.9))
        XCTAssertEqual(hardware.cpuFlags, ["avx512f", "avx512_bf16"])
        XCTAssertTrue(hardware.bf16Products.beatFloat32)
        XCTAssertThrowsError(try Hardware.detect(meminfo: "", cpuinfo: cpuinfo, cores: 2, bf16: .current)) {
            XCTAssertTrue("\($0)".contains("--cpu-memory"))
        }
    }

    // MARK: - Measured data and the written configuration

    func testDataIsMeasuredInTheModelsTokensAndTheConfigurationLoadsAsTheTrainersDo() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("advice-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let modelURL = folder.appendingPathComponent("tiny.gguf")
        try TinyModel.write(to: modelURL)
        let lm = try LanguageModel.load(modelURL.path)
        func row(_ question: String, _ answer: String) -> String {
            "{\"messages\": [{\"role\": \"user\", \"content\": \"\(question)\"}, {\"role\": \"assistant\", \"content\": \"\(answer)\"}]}"
        }
        var rows = (0..<30).map { row("question number \($0) about the weather", "answer \($0): it rains on the hills") }
        rows.append(rows[3])  // an exact duplicate
        let train = folder.appendingPathComponent("train.jsonl"), valid = folder.appendingPathComponent("valid.jsonl")
        try Data(rows.joined(separator: "\n").utf8).write(to: train)
        try Data([rows[5], row("a new question", "a new answer")].joined(separator: "\n").utf8).write(to: valid)

        let summary = try DataSummary.measure(train, evalData: valid, model: lm)
        XCTAssertEqual(summary.kind, .sft)
        XCTAssertEqual(summary.rows, 31)
        XCTAssertTrue(summary.tokenized)
        XCTAssertEqual(summary.exactDuplicates, 1)
        XCTAssertEqual(summary.evalRows, 2)
        XCTAssertEqual(summary.evalOverlap, 1)
        XCTAssertEqual(summary.rowsWithoutStopToken, 0, "ChatML closes each answer with <|im_end|>")
        XCTAssertEqual(summary.eosCheckedRows, 31)
        // The rendered conversation's tokens, as the trainer's renderer makes them (no BOS: ChatML writes none).
        let first = try lm.chatTokens([ChatMessage(role: "user", content: "question number 0 about the weather"),
                                       ChatMessage(role: "assistant", content: "answer 0: it rains on the hills")], addGenerationPrompt: false)
        XCTAssertEqual(summary.lengths?.min, first.count)
        let estimated = try DataSummary.measure(train, model: nil)
        XCTAssertFalse(estimated.tokenized)
        XCTAssertNil(estimated.rowsWithoutStopToken)
        XCTAssertNil(estimated.evalRows)

        let shape = ModelShape(name: modelURL.path, config: lm.model.config,
                               runtime: try RuntimeBaseline.estimate(for: lm.files, config: lm.model.config),
                               loadablePath: modelURL.path, hasChatTemplate: true)
        for (goal, method) in [(Goal.format, MemoryPlan.Method?.none), (.skill, .full), (.skill, .qlora), (.style, nil)] {
            let advice = try advise(shape, summary, goal, cpu(4 * Self.gib), method: method)
            let url = folder.appendingPathComponent("\(goal)-\(advice.method).yaml")
            let written = try advice.trainingConfiguration(model: modelURL.path, data: train.path, evalData: valid.path, output: folder.path + "/run")
            try Data(try written.yaml().utf8).write(to: url)
            let loaded = try TrainingConfiguration.load(yaml: url)
            try loaded.validate()
            XCTAssertEqual(loaded, written)
            XCTAssertEqual(loaded.batchSize, advice.settings.batchSize)
            XCTAssertEqual(loaded.gradientAccumulation, advice.settings.gradientAccumulation)
            XCTAssertEqual(loaded.method, advice.method == .full ? .full : .lora)
            XCTAssertEqual(loaded.quantize, advice.method == .qlora ? "nf4" : nil)
            XCTAssertEqual(loaded.objective, advice.firstTrainer == "sft" ? nil : PreferenceMethod(rawValue: advice.firstTrainer ?? ""))
            XCTAssertEqual(loaded.sft.maxLength, advice.firstTrainer == "sft" ? advice.settings.maxLength : SFTOptions.trainingDefault.maxLength)
        }
    }
}
