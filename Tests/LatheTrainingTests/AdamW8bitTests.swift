import Foundation
import LatheFormats
import LatheModels
import LatheTensors
import LatheTestSupport
import XCTest
@testable import LatheTraining

/// AdamW8bit against bitsandbytes 0.50.2's AdamW8bit on CPU (scripts/reference/adamw8bit.py): the dynamic maps,
/// ten steps of parameters (rtol 1e-6, atol 1e-7), the 8-bit codes and block absmax after the first and the last
/// step (exactly), and the float32 state of the small tensor (exactly); and a second, 3-step run with other
/// hyper-parameters. Then memory, exact resume, configuration,
/// and a quality check against float32 AdamW on a least-squares problem.
final class AdamW8bitTests: XCTestCase {
    static let relative: Float = 1e-6
    static let absolute: Float = 1e-7

    static let folder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("adamw8bit")

    // MARK: Against bitsandbytes

    func testDynamicMapsAreBitsandbytesMaps() throws {
        let fixture = try BitsandbytesFixture.load()
        assertBitIdentical(DynamicQuantizationMap.signed.codes, fixture.signedMap.map(Float.init), "signed map")
        assertBitIdentical(DynamicQuantizationMap.unsigned.codes, fixture.unsignedMap.map(Float.init), "unsigned map")
    }

    func testTrajectoryAndStateMatchBitsandbytes() throws {
        let fixture = try BitsandbytesFixture.load()
        let optimizer = try AdamW8bit(beta1: fixture.beta1, beta2: fixture.beta2, epsilon: fixture.epsilon,
                                      weightDecay: fixture.weightDecay)
        let parameters = try fixture.initialParameters()
        let trajectory = try fixture.trajectory()
        let folder = try Fixtures.temporaryFolder(for: self)
        var largest: Float = 0
        for step in 0..<fixture.rates.count {
            try fixture.setGradients(parameters, step: step)
            try optimizer.step(parameters, learningRate: Float(fixture.rates[step]))
            for (t, parameter) in parameters.enumerated() {
                largest = max(largest, assertClose(parameter.tensor.array, trajectory[step][t], relative: Self.relative,
                                                   absolute: Self.absolute, "step \(step + 1): \(parameter.name)"))
            }
            if step == 0 || step == fixture.rates.count - 1 {
                let url = folder.appendingPathComponent("step\(step + 1).safetensors")
                try optimizer.saveState(to: url)
                let expected = step == 0 ? fixture.stateAfterFirstStep : fixture.stateAfterLastStep
                try assertStateEquals(url, expected, "after step \(step + 1)")
            }
        }
        print("AdamW8bit vs bitsandbytes: largest parameter difference over \(fixture.rates.count) steps: \(largest)")
    }

    /// Other betas and ε, no weight decay: three steps, then parameters and state against bitsandbytes.
    func testOtherHyperparametersMatchBitsandbytes() throws {
        let fixture = try BitsandbytesFixture.load()
        let run = fixture.secondRun
        let optimizer = try AdamW8bit(beta1: run.beta1, beta2: run.beta2, epsilon: run.epsilon, weightDecay: run.weightDecay)
        let parameters = try fixture.initialParameters()
        for step in 0..<run.rates.count {
            try fixture.setGradients(parameters, step: step)
            try optimizer.step(parameters, learningRate: Float(run.rates[step]))
        }
        var largest: Float = 0
        for parameter in parameters {
            let expected = try floats(XCTUnwrap(run.parametersAfterLastStep[parameter.name]))
            largest = max(largest, assertClose(parameter.tensor.array, expected, relative: Self.relative,
                                               absolute: Self.absolute, "second run: \(parameter.name)"))
        }
        let url = try Fixtures.temporaryFolder(for: self).appendingPathComponent("second.safetensors")
        try optimizer.saveState(to: url)
        try assertStateEquals(url, run.stateAfterLastStep, "second run")
        print("AdamW8bit vs bitsandbytes, betas (\(run.beta1), \(run.beta2)): largest parameter difference \(largest)")
    }

    /// The saved state file holds exactly bitsandbytes' codes, absmax and float32 moments.
    private func assertStateEquals(_ url: URL, _ expected: [String: BitsandbytesFixture.StateRecord], _ context: String) throws {
        let file = try SafetensorsFile(url: url)
        for (name, record) in expected {
            XCTAssertEqual(file.metadata["\(name).step"], String(record.step), "\(context): \(name).step")
            if let state1 = record.state1, let state2 = record.state2, let absmax1 = record.absmax1, let absmax2 = record.absmax2 {
                let codes1 = try file.bytes(of: XCTUnwrap(file.tensor(named: "\(name).state1")))
                let codes2 = try file.bytes(of: XCTUnwrap(file.tensor(named: "\(name).state2")))
                let expected1 = try bytes(state1), expected2 = try bytes(state2)
                XCTAssertEqual(codes1.count, expected1.count)
                let differing1 = zip(codes1, expected1).filter { $0 != $1 }.count
                let differing2 = zip(codes2, expected2).filter { $0 != $1 }.count
                XCTAssertEqual(differing1, 0, "\(context): \(name) first-moment codes differing from bitsandbytes")
                XCTAssertEqual(differing2, 0, "\(context): \(name) second-moment codes differing from bitsandbytes")
                assertBitIdentical(try file.floats(named: "\(name).absmax1"), try floats(absmax1), "\(context): \(name).absmax1")
                assertBitIdentical(try file.floats(named: "\(name).absmax2"), try floats(absmax2), "\(context): \(name).absmax2")
            } else {
                XCTAssertNil(file.tensor(named: "\(name).state1"), "\(context): \(name) is small and keeps float32 state")
                assertBitIdentical(try file.floats(named: "\(name).exp_avg"), try floats(XCTUnwrap(record.expAvg)), "\(context): \(name).exp_avg")
                assertBitIdentical(try file.floats(named: "\(name).exp_avg_sq"), try floats(XCTUnwrap(record.expAvgSq)), "\(context): \(name).exp_avg_sq")
            }
        }
    }

    /// The reference run exercises what it claims: an all-zero block (absmax 0) after step 1, small codes in use.
    func testFixtureExercisesZeroBlockAndSmallCodes() throws {
        let fixture = try BitsandbytesFixture.load()
        let first = try XCTUnwrap(fixture.stateAfterFirstStep["big.weight"])
        let absmax = try floats(XCTUnwrap(first.absmax1))
        let zeroBlock = fixture.zeroBlock[0] / BlockwiseQuantization.blockSize
        XCTAssertEqual(absmax[zeroBlock], 0)
        XCTAssertTrue(absmax.enumerated().allSatisfy { $0.offset == zeroBlock || $0.element > 0 })
        let codes = try bytes(XCTUnwrap(first.state1))
        XCTAssertGreaterThan(Set(codes).count, 200, "the first-moment codes spread over the map")
        XCTAssertEqual(try fixture.trajectory().count, fixture.rates.count)
    }

    // MARK: The codec and the kernel

    /// The lookup table gives, for each grid point, the code nearest to it (ties to the lower code).
    func testLookupTableHoldsTheNearestCode() {
        assertLookupHoldsNearestCodes(.signed, "signed")
        assertLookupHoldsNearestCodes(.unsigned, "unsigned")
        var codes = [UInt8](repeating: 9, count: 5)
        let absmax = BlockwiseQuantization.quantizeBlock([0, 0, 0, 0, 0], count: 5, map: .signed, codes: &codes)
        XCTAssertEqual(absmax, 0)
        XCTAssertEqual(codes, [0, 0, 0, 0, 0], "a zero block keeps absmax 0 and codes 0, as bitsandbytes")
        let values: [Float] = [-3, 1.5, 0.75, 3, Float.nan]
        let top = BlockwiseQuantization.quantizeBlock(values, count: 5, map: .signed, codes: &codes)
        XCTAssertEqual(top, 3, "absmax ignores NaN")
        var back = [Float](repeating: 0, count: 5)
        BlockwiseQuantization.dequantizeBlock(codes, count: 5, absmax: top, map: .signed, into: &back)
        XCTAssertEqual(back[3], 3, "the absmax element is exact (code 1.0)")
        assertClose(Array(back[0..<3]), [-3, 1.5, 0.75], relative: 0.02, absolute: 0, "round trip")
    }

    /// The vector quantizer equals the plain one on blocks of every length class, with zeros, NaN, ±absmax and
    /// values spread over many magnitudes.
    func testVectorQuantizerEqualsScalarReference() {
        var generator = SeededGenerator(seed: 51)
        func check(count: Int, map: DynamicQuantizationMap) {
            for trial in 0..<20 {
                var values = (0..<count).map { _ -> Float in
                    let u = generator.nextUnitFloat() * 2 - 1
                    return u * u * u * Float(trial + 1)
                }
                if map.codes[0] == 0 { values = values.map(abs) }
                if trial % 4 == 1 { values[count / 2] = .nan }
                if trial % 4 == 2 { values = values.map { _ in 0 } }
                if trial % 4 == 3, count > 3 { values[1] = -(values.map(abs).max() ?? 1); values[2] = 0 }
                var fast = [UInt8](repeating: 1, count: count), plain = [UInt8](repeating: 2, count: count)
                let fastAbsmax = BlockwiseQuantization.quantizeBlock(values, count: count, map: map, codes: &fast)
                let plainAbsmax = BlockwiseQuantization.referenceQuantizeBlock(values, count: count, map: map, codes: &plain)
                XCTAssertEqual(fastAbsmax.bitPattern, plainAbsmax.bitPattern, "count \(count) trial \(trial): absmax")
                XCTAssertEqual(fast, plain, "count \(count) trial \(trial): codes")
            }
        }
        check(count: 256, map: .signed)
        check(count: 192, map: .unsigned)
        check(count: 7, map: .signed)
        check(count: 33, map: .unsigned)
    }

    private func assertLookupHoldsNearestCodes(_ map: DynamicQuantizationMap, _ name: String) {
        var wrong = 0
        for k in 0..<DynamicQuantizationMap.gridSize {
            let point: Float = -1 + (2 * Float(k)) / Float(DynamicQuantizationMap.gridSize - 1)
            let code = Int(map.lookup[k])
            let distance = abs(map.codes[code] - point)
            if code > 0, abs(map.codes[code - 1] - point) < distance { wrong += 1 }
            if code < 255, abs(map.codes[code + 1] - point) < distance { wrong += 1 }
        }
        XCTAssertEqual(wrong, 0, "\(name) map: grid points whose code is not the nearest")
    }

    func testVectorKernelEqualsScalarReference() {
        var generator = SeededGenerator(seed: 88)
        let count = 100  // six full vectors and a partial one
        func random(_ scale: Float) -> [Float] { (0..<count).map { _ in (generator.nextUnitFloat() * 2 - 1) * scale } }
        let gradient = random(1)
        let parameter = random(1), expAvg = random(0.1), expAvgSq = random(0.01).map(abs)
        func check(_ path: AdamW8bitKernel.Path) {
            let coefficients = AdamW8bitCoefficients(learningRate: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8,
                                                     weightDecay: 0.1, step: 3)
            var p1 = parameter, m1 = expAvg, v1 = expAvgSq, p2 = parameter, m2 = expAvg, v2 = expAvgSq
            AdamW8bitKernel.update(parameter: &p1, gradient: gradient, expAvg: &m1, expAvgSq: &v1, count: count,
                                   coefficients: coefficients, path: path)
            AdamW8bitKernel.referenceUpdate(parameter: &p2, gradient: gradient, expAvg: &m2, expAvgSq: &v2, count: count,
                                            coefficients: coefficients, path: path)
            assertBitIdentical(p1, p2, "\(path) parameter")
            assertBitIdentical(m1, m2, "\(path) first moment")
            assertBitIdentical(v1, v2, "\(path) second moment")
        }
        check(.quantized)
        check(.full)
    }

    // MARK: Memory, resume, configuration

    func testStateIsTwoBytesPerParameterPlusAbsmaxPerBlock() throws {
        let optimizer = try AdamW8bit()
        let parameters = randomParameters([("below", [4095]), ("threshold", [64, 64]), ("partial", [64, 67])], seed: 5)
        var generator = SeededGenerator(seed: 6)
        fillGradients(parameters, generator: &generator)
        XCTAssertEqual(optimizer.stateByteCount, 0)
        try optimizer.step(parameters, learningRate: 1e-3)
        // 4095 elements: float32 m and v. 4096: 16 blocks. 4288: 17 blocks, the last one partial.
        let expected = 4095 * 8 + (2 * 4096 + 16 * 8) + (2 * 4288 + 17 * 8)
        XCTAssertEqual(optimizer.stateByteCount, expected)
        print("AdamW8bit state: \(optimizer.stateByteCount) bytes, \(Double(2 * 4096 + 16 * 8) / 4096) bytes per parameter for an 8-bit tensor (AdamW: 8)")
    }

    func testSaveLoadContinueIsBitIdenticalToAnUninterruptedRun() throws {
        let url = try Fixtures.temporaryFolder(for: self).appendingPathComponent("adamw8bit.safetensors")
        let shapes = [("big", [70, 65]), ("small", [33])]
        let uninterrupted = randomParameters(shapes, seed: 11)
        let resumed = randomParameters(shapes, seed: 11)
        let whole = try AdamW8bit(weightDecay: 0.05)
        let first = try AdamW8bit(weightDecay: 0.05)
        var gradients = SeededGenerator(seed: 12)
        var replay = SeededGenerator(seed: 12)
        for step in 0..<6 {
            fillGradients(uninterrupted, generator: &gradients)
            try whole.step(uninterrupted, learningRate: 0.01 / Float(step + 1))
        }
        for step in 0..<3 {
            fillGradients(resumed, generator: &replay)
            try first.step(resumed, learningRate: 0.01 / Float(step + 1))
        }
        try first.saveState(to: url)
        let second = try first.configuration.make()
        try second.loadState(from: url, parameters: resumed)
        XCTAssertEqual(second.stepCount, 3)
        for step in 3..<6 {
            fillGradients(resumed, generator: &replay)
            try second.step(resumed, learningRate: 0.01 / Float(step + 1))
        }
        for (a, b) in zip(uninterrupted, resumed) {
            assertBitIdentical(b.tensor.array, a.tensor.array, "\(a.name) after resume")
        }
        // The states agree too: saving both gives the same tensors.
        let wholeURL = url.deletingLastPathComponent().appendingPathComponent("whole.safetensors")
        let resumedURL = url.deletingLastPathComponent().appendingPathComponent("resumed.safetensors")
        try whole.saveState(to: wholeURL)
        try second.saveState(to: resumedURL)
        let (left, right) = (try SafetensorsFile(url: wholeURL), try SafetensorsFile(url: resumedURL))
        XCTAssertEqual(left.tensors.map(\.name).sorted(), ["big.absmax1", "big.absmax2", "big.state1", "big.state2",
                                                           "small.exp_avg", "small.exp_avg_sq"])
        for info in left.tensors {
            if info.dtype == .u8 {
                XCTAssertEqual(try right.bytes(of: XCTUnwrap(right.tensor(named: info.name))), try left.bytes(of: info), info.name)
            } else {
                assertBitIdentical(try right.floats(named: info.name), try left.floats(of: info), info.name)
            }
        }
        // The codes are stored as U8: the file is about a quarter of float32 moments'.
        XCTAssertEqual(left.tensor(named: "big.state1")?.dtype, .u8)
        let adamw = try AdamW()
        try adamw.step(uninterrupted, learningRate: 0.01)
        let adamwURL = url.deletingLastPathComponent().appendingPathComponent("adamw-state.safetensors")
        try adamw.saveState(to: adamwURL)
        let size = { (url: URL) in try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int ?? 0 }
        XCTAssertLessThan(Double(try size(wholeURL)), 0.35 * Double(try size(adamwURL)))
    }

    func testLoadRejectsOtherOptimizersAndMismatchedParameters() throws {
        let folder = try Fixtures.temporaryFolder(for: self)
        let parameters = randomParameters([("big", [70, 65]), ("small", [33])], seed: 21)
        var generator = SeededGenerator(seed: 22)
        fillGradients(parameters, generator: &generator)
        let adamw = try AdamW()
        try adamw.step(parameters, learningRate: 0.01)
        let adamwURL = folder.appendingPathComponent("adamw.safetensors")
        try adamw.saveState(to: adamwURL)
        XCTAssertThrowsError(try AdamW8bit().loadState(from: adamwURL, parameters: parameters)) {
            XCTAssertTrue("\($0)".contains("__metadata__.optimizer"), "\($0)")
        }
        let optimizer = try AdamW8bit()
        try optimizer.step(parameters, learningRate: 0.01)
        let url = folder.appendingPathComponent("adamw8bit.safetensors")
        try optimizer.saveState(to: url)
        XCTAssertThrowsError(try AdamW8bit(beta2: 0.99).loadState(from: url, parameters: parameters)) {
            XCTAssertTrue("\($0)".contains("beta2"), "\($0)")
        }
        // The same names with other sizes: the big one now small (float32 state expected), and the other way round.
        let resized = randomParameters([("big", [33]), ("small", [70, 65])], seed: 21)
        XCTAssertThrowsError(try AdamW8bit().loadState(from: url, parameters: resized)) {
            XCTAssertTrue("\($0)".contains("big."), "\($0)")
        }
        XCTAssertThrowsError(try AdamW8bit().loadState(from: url, parameters: [parameters[0]])) {
            XCTAssertTrue("\($0)".contains("small"), "\($0)")
        }
        // Codes stored as anything but U8, or a negative absmax, name the tensor.
        try assertDamagedStateIsRejected(url, tensor: "big.state2", value: 3, parameters: parameters)
        try assertDamagedStateIsRejected(url, tensor: "big.absmax1", value: -1, parameters: parameters)
    }

    /// Rewrites `url` with `tensor` as float32 and its element 0 set to `value`; loading it must fail naming the tensor.
    private func assertDamagedStateIsRejected(_ url: URL, tensor name: String, value: Float, parameters: [Parameter],
                                              file: StaticString = #filePath, line: UInt = #line) throws {
        let original = try SafetensorsFile(url: url)
        var writer = SafetensorsWriter(metadata: original.metadata)
        for info in original.tensors {
            if info.dtype == .u8 && info.name != name {
                try writer.addTensor(name: info.name, dimensions: info.dimensions, bytes: try original.bytes(of: info))
                continue
            }
            var values = info.dtype == .u8 ? try original.bytes(of: info).map(Float.init) : try original.floats(of: info)
            if info.name == name { values[0] = value }
            try writer.addTensor(name: info.name, dimensions: info.dimensions, values: values, dtype: .f32)
        }
        let damaged = url.deletingLastPathComponent().appendingPathComponent("damaged.safetensors")
        try writer.write(to: damaged)
        XCTAssertThrowsError(try AdamW8bit().loadState(from: damaged, parameters: parameters), file: file, line: line) {
            XCTAssertTrue("\($0)".contains(name), "\($0)", file: file, line: line)
        }
    }

    /// Full fine-tuning of the tiny model with `optimizer: adamw8bit` (its embedding, 269×32, gets 8-bit state; the
    /// other weights float32): a run killed after a checkpoint and resumed ends with exactly the weights of an
    /// uninterrupted run.
    func testTrainerResumesAnAdamW8bitRunExactly() throws {
        let tiny = try TinyModelFolder()
        defer { tiny.remove() }
        let lines = (0..<12).map { i in #"{"prompt": "the inn \#(i % 5)", "completion": " then tea \#(i % 3) art"}"# }
        try lines.joined(separator: "\n").write(to: tiny.file("train.jsonl"), atomically: true, encoding: .utf8)
        var c = TrainingConfiguration()
        c.model = tiny.modelPath
        c.data = tiny.file("train.jsonl").path
        c.output = tiny.file("straight").path
        c.method = .full
        c.optimizer = OptimizerConfiguration(kind: .adamw8bit)
        c.learningRate = 1e-2
        c.batchSize = 3
        c.maxSteps = 5
        c.saveEvery = 2
        let straight = try Trainer(config: c, languageModel: try LanguageModel.load(tiny.modelPath))
        try straight.run()
        let optimizer = try XCTUnwrap(straight.optimizer as? AdamW8bit)
        let parameterCount = straight.trainable.reduce(0) { $0 + $1.tensor.count }
        XCTAssertLessThan(optimizer.stateByteCount, 8 * parameterCount, "some state is 8-bit")

        let interruptedOutput = tiny.file("interrupted").path
        let resumed = try Trainer.resumedAfterKill(c, output: interruptedOutput, model: tiny.modelPath, checkpointAfter: 3)
        XCTAssertEqual(resumed.step, straight.step)
        for (a, b) in zip(straight.trainable, resumed.trainable) {
            assertBitIdentical(b.tensor.array, a.tensor.array, "\(a.name) after the resumed run")
        }
    }

    /// A parameter whose shape changed between steps is an error naming its state, and no parameter moves.
    func testStepRejectsAChangedShapeWithoutUpdatingAnything() throws {
        let optimizer = try AdamW8bit()
        var generator = SeededGenerator(seed: 41)
        let parameters = randomParameters([("big", [70, 65]), ("small", [33])], seed: 40)
        fillGradients(parameters, generator: &generator)
        try optimizer.step(parameters, learningRate: 0.01)
        let reshaped = randomParameters([("big", [65, 70]), ("small", [33])], seed: 42)
        fillGradients(reshaped, generator: &generator)
        let before = reshaped.map { $0.tensor.array }
        XCTAssertThrowsError(try optimizer.step(reshaped.reversed(), learningRate: 0.01)) {
            XCTAssertTrue("\($0)".contains("big.state1"), "\($0)")
        }
        XCTAssertEqual(reshaped.map { $0.tensor.array }, before)
        XCTAssertEqual(optimizer.stepCount, 1)
    }

    func testConfigurationParsesAdamW8bitAndRejectsKeysThatDoNotApply() throws {
        let yaml = "optimizer:\n  kind: adamw8bit\n  weightDecay: 0.1\n  beta2: 0.95\n"
        let folder = try Fixtures.temporaryFolder(for: self)
        let file = folder.appendingPathComponent("train.yaml")
        try yaml.write(to: file, atomically: true, encoding: .utf8)
        let configuration = try TrainingConfiguration.load(yaml: file)
        let optimizer = try XCTUnwrap(try configuration.optimizer.make() as? AdamW8bit)
        XCTAssertEqual([optimizer.beta1, optimizer.beta2, optimizer.epsilon, optimizer.weightDecay], [0.9, 0.95, 1e-8, 0.1])
        XCTAssertEqual(try optimizer.configuration.make().configuration, optimizer.configuration)

        try "optimizer: adamw8bit\n".write(to: file, atomically: true, encoding: .utf8)
        let shorthand = try XCTUnwrap(try TrainingConfiguration.load(yaml: file).optimizer.make() as? AdamW8bit)
        XCTAssertEqual([shorthand.beta1, shorthand.beta2, shorthand.epsilon, shorthand.weightDecay], [0.9, 0.999, 1e-8, 0.01],
                       "bitsandbytes' defaults")

        let rejected: [(String, String)] = [
            ("optimizer:\n  kind: adamw8bit\n  momentum: 0.9\n", "momentum"),
            ("optimizer:\n  kind: adamw8bit\n  amsgrad: true\n", "amsgrad"),
            ("optimizer:\n  kind: adamw8bit\n  blocksize: 128\n", "blocksize"),
            ("optimizer:\n  kind: adamw8bit\n  beta1: 1.0\n", "beta1"),
            ("optimizer: adam8bit\n", "adam8bit"),
        ]
        for (text, field) in rejected {
            try text.write(to: file, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try TrainingConfiguration.load(yaml: file), text) {
                XCTAssertTrue("\($0)".contains(field), "error should name \(field): \($0)")
            }
        }
        try "optimizer:\n  kind: adamw8bit\n  amsgrad: false\n".write(to: file, atomically: true, encoding: .utf8)
        XCTAssertNoThrow(try TrainingConfiguration.load(yaml: file), "amsgrad: false is accepted, as bitsandbytes does")
    }

    // MARK: Quality

    /// Least squares X·W ≈ Y with W of 64×64 (8-bit state): after 150 steps at lr 0.01, 8-bit AdamW's loss is at
    /// most 25% (+1e-6) above float32 AdamW's (measured: 11%), and both have cut the starting loss by more than
    /// 1000×.
    func testLeastSquaresLossIsCloseToFloat32AdamW() throws {
        let (rows, size) = (128, 64)
        var generator = SeededGenerator(seed: 31)
        let inputs = (0..<(rows * size)).map { _ in generator.nextUnitFloat() * 2 - 1 }
        let truth = (0..<(size * size)).map { _ in (generator.nextUnitFloat() * 2 - 1) * 0.5 }
        var targets = [Float](repeating: 0, count: rows * size)
        MatMul.multiply(inputs, truth, into: &targets, m: rows, n: size, k: size)

        func train(_ optimizer: any Optimizer, steps: Int) throws -> (start: Float, end: Float) {
            let weight = Parameter(name: "w", shape: [size, size], trainable: true)
            var residual = [Float](repeating: 0, count: rows * size)
            var start: Float = 0
            var loss: Float = 0
            for step in 0...steps {
                MatMul.multiply(inputs, weight.tensor.pointer, into: &residual, m: rows, n: size, k: size)
                loss = 0
                for i in 0..<residual.count {
                    residual[i] -= targets[i]
                    loss += residual[i] * residual[i]
                }
                loss /= Float(residual.count)
                if step == 0 { start = loss }
                if step == steps { break }
                // dL/dW = (2/N)·Xᵀ·(X·W − Y)
                weight.zeroGradient()
                let gradient = try XCTUnwrap(weight.gradient)
                MatMul.multiply(inputs, residual, into: gradient.pointer, m: size, n: size, k: rows, transposeA: true,
                                alpha: 2 / Float(residual.count))
                try optimizer.step([weight], learningRate: 0.01)
            }
            return (start, loss)
        }
        let eightBit = try AdamW8bit(weightDecay: 0)
        let full = try train(AdamW(weightDecay: 0), steps: 150)
        let quantized = try train(eightBit, steps: 150)
        XCTAssertEqual(eightBit.stateByteCount, 2 * size * size + 16 * 8, "the weight's state is 8-bit")
        print("least squares after 150 steps: AdamW \(full.end), AdamW8bit \(quantized.end) (start \(full.start))")
        XCTAssertLessThan(full.end, full.start / 1000)
        XCTAssertLessThan(quantized.end, quantized.start / 1000)
        XCTAssertLessThanOrEqual(quantized.end, full.end * 1.25 + 1e-6)
    }
}

/// adamw8bit.json and trajectory.bin, written by scripts/reference/adamw8bit.py.
private struct BitsandbytesFixture: Decodable {
    struct StateRecord: Decodable {
        let step: Int
        let state1: String?
        let state2: String?
        let absmax1: String?
        let absmax2: String?
        let expAvg: String?
        let expAvgSq: String?
    }

    struct SecondRun: Decodable {
        let rates: [Double]
        let beta1: Double
        let beta2: Double
        let epsilon: Double
        let weightDecay: Double
        let parametersAfterLastStep: [String: String]
        let stateAfterLastStep: [String: StateRecord]
    }

    struct HashCheck: Decodable {
        let initial0First4: [Double]
        let gradient31First4: [Double]
    }

    let names: [String]
    let shapes: [String: [Int]]
    let rates: [Double]
    let gradientScales: [Double]
    let zeroBlock: [Int]
    let beta1: Double
    let beta2: Double
    let epsilon: Double
    let weightDecay: Double
    let signedMap: [Double]
    let unsignedMap: [Double]
    let stateAfterFirstStep: [String: StateRecord]
    let stateAfterLastStep: [String: StateRecord]
    let secondRun: SecondRun
    let hashCheck: HashCheck

    static func load() throws -> BitsandbytesFixture {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let fixture = try decoder.decode(BitsandbytesFixture.self,
                                         from: Data(contentsOf: AdamW8bitTests.folder.appendingPathComponent("adamw8bit.json")))
        // The Swift hash must reproduce the script's values before anything else is compared.
        XCTAssertEqual(hashed(stream: 1000, count: 4, scale: 1), fixture.hashCheck.initial0First4.map(Float.init))
        XCTAssertEqual(fixture.gradient(step: 3, tensor: 1, count: 4), fixture.hashCheck.gradient31First4.map(Float.init))
        return fixture
    }

    func count(_ name: String) throws -> Int { try XCTUnwrap(shapes[name], name).reduce(1, *) }

    func initialParameters() throws -> [Parameter] {
        try names.enumerated().map { t, name in
            let parameter = Parameter(name: name, shape: try XCTUnwrap(shapes[name]), trainable: true)
            setValues(parameter.tensor, hashed(stream: UInt32(1000 + t), count: try count(name), scale: 1))
            return parameter
        }
    }

    func gradient(step: Int, tensor t: Int, count: Int) -> [Float] {
        var values = hashed(stream: UInt32(100 * (step + 1) + t), count: count, scale: Float(gradientScales[step]))
        if step == 0, t == 0 {
            for i in zeroBlock[0]..<min(zeroBlock[1], count) { values[i] = 0 }
        }
        return values
    }

    func setGradients(_ parameters: [Parameter], step: Int) throws {
        for (t, parameter) in parameters.enumerated() {
            parameter.zeroGradient()
            setValues(try XCTUnwrap(parameter.gradient), gradient(step: step, tensor: t, count: parameter.tensor.count))
        }
    }

    /// Parameters after each step: [step][tensor in `names` order].
    func trajectory() throws -> [[[Float]]] {
        let data = try Data(contentsOf: AdamW8bitTests.folder.appendingPathComponent("trajectory.bin"))
        let all = littleEndianFloats(data)
        let counts = try names.map(count)
        let perStep = counts.reduce(0, +)
        XCTAssertEqual(all.count, perStep * rates.count, "trajectory.bin size")
        return (0..<rates.count).map { step in
            var offset = step * perStep
            return counts.map { count in
                defer { offset += count }
                return Array(all[offset..<(offset + count)])
            }
        }
    }
}

/// The script's counter hash: w³·scale with w = 2u − 1, u = (lowbias32(i + stream·0x9E3779B9) >> 8)·2⁻²⁴.
private func hashed(stream: UInt32, count: Int, scale: Float) -> [Float] {
    (0..<count).map { i in
        var x = UInt32(truncatingIfNeeded: i) &+ stream &* 0x9E37_79B9
        x ^= x >> 16
        x &*= 0x7FEB_352D
        x ^= x >> 15
        x &*= 0x846C_A68B
        x ^= x >> 16
        let u = Float(x >> 8) * 0x1p-24
        let w = u * 2 - 1
        return ((w * w) * w) * scale
    }
}

private func bytes(_ base64: String) throws -> [UInt8] {
    [UInt8](try XCTUnwrap(Data(base64Encoded: base64), "base64"))
}

private func floats(_ base64: String) throws -> [Float] {
    littleEndianFloats(try XCTUnwrap(Data(base64Encoded: base64), "base64"))
}

private func littleEndianFloats(_ data: Data) -> [Float] {
    let bytes = [UInt8](data)
    return stride(from: 0, to: bytes.count - 3, by: 4).map { i in
        Float(bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)
    }
}
