import LatheModels
import LatheTensors

/// Prompt + response rows laid out for one forward pass (right-padded to one length), and where each response
/// column is read: column c of row r at position prompt.count + c − 1, whose target is the response's token c (its
/// log-probability) and whose final hidden state gives PPO's value of column c (TRL's slice [context − 1 : −1]).
/// GRPO and PPO both score and train their rollouts through it.
struct RolloutSequences {
    let batchSize: Int
    let length: Int
    let width: Int
    let responseLengths: [Int]
    var tokens: [Int] = [], positions: [Int] = [], valid: [Bool] = [], targets: [Int] = []
    /// [rows × width]: the flat position read for each response column, nil past the row's tokens.
    var readAt: [Int?] = []

    init(queries: [[Int]], responses: [[Int]], width: Int) {
        batchSize = queries.count
        self.width = width
        responseLengths = responses.map(\.count)
        length = zip(queries, responses).map { $0.count + $1.count }.max() ?? 1
        for (query, response) in zip(queries, responses) {
            let row = query + response, base = tokens.count
            let padding = length - row.count
            tokens += row + Array(repeating: 0, count: padding)
            positions += Array(0..<row.count) + Array(repeating: 0, count: padding)
            valid += Array(repeating: true, count: row.count) + Array(repeating: false, count: padding)
            // Only the response tokens are targets: nothing reads the prompt's.
            targets += Array(repeating: -1, count: length)
            for c in 0..<width {
                let position = base + query.count + c - 1
                readAt.append(c <= response.count ? position : nil)
                if c < response.count { targets[position] = response[c] }
            }
        }
    }

    /// [rows × width] log-probabilities of the response tokens at the temperature (0 where there is none).
    func logProbabilities(_ model: DecoderModel, temperature: Float, saving: TrainingActivations?) throws -> [Double] {
        let all = try model.targetLogProbabilities(tokens: tokens, batchSize: batchSize, positions: positions, valid: valid,
                                                   targets: targets, temperature: temperature, saving: saving)
        return readAt.map { position in position.map { targets[$0] >= 0 ? Double(all[$0]) : 0 } ?? 0 }
    }

    /// [rows × width] values of the head on the final hidden states (0 where there is none).
    func values(_ head: ScoreHead, hidden: Tensor) -> [Double] {
        let read = readAt.indices.filter { readAt[$0] != nil }
        var values = [Double](repeating: 0, count: readAt.count)
        for (i, score) in zip(read, head.scores(hidden, rows: read.compactMap { readAt[$0] })) { values[i] = Double(score) }
        return values
    }

    /// Each row's response log-probabilities, from `logProbabilities`' [rows × width].
    func responseValues(_ columns: [Double]) -> [[Float]] {
        responseLengths.enumerated().map { row, count in columns[row * width..<row * width + count].map { Float($0) } }
    }

    /// Per-row gradients with respect to the response tokens' log-probabilities, at their target positions.
    func targetGradient(_ rows: [[Float]]) -> [Float] {
        var flat = [Float](repeating: 0, count: tokens.count)
        for (row, gradient) in rows.enumerated() {
            for (c, g) in gradient.enumerated() { flat[readAt[row * width + c]!] = g }
        }
        return flat
    }
}
