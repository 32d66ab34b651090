import Foundation
import LatheModels
import LatheServe
import LatheTemplates
import LatheTestSupport
import XCTest

final class ServerTests: XCTestCase {
    var server: ServerFixture!

    override func setUpWithError() throws {
        server = try ServerFixture()
        try server.start()
    }

    override func tearDown() { server?.stop() }

    /// What `LanguageModel.generate` answers greedily with the adapter `name` (nil: the base) loaded alone.
    func generated(_ messages: [ChatMessage], adapter name: String?, maxTokens: Int) throws -> String {
        let lm = try LanguageModel.load(server.folder.modelPath)
        if let name { try PEFTAdapter.load(server.adaptersDirectory.appendingPathComponent(name), into: lm.model) }
        return try lm.generate(try lm.chatTokens(messages, addGenerationPrompt: true), sampling: SamplingOptions(),
                               maxTokens: maxTokens)
    }

    func chat(_ model: String, _ content: String, maxTokens: Int = 12, extra: [String: Any] = [:]) throws -> ServerFixture.Reply {
        var body: [String: Any] = ["model": model, "messages": [["role": "user", "content": content]],
                                   "max_tokens": maxTokens, "temperature": 0]
        for (k, v) in extra { body[k] = v }
        return try server.post("/v1/chat/completions", body)
    }

    func testModelsListTheBaseAndEachAdapterWithItsParent() throws {
        let reply = try server.get("/v1/models")
        XCTAssertEqual(reply.status, 200)
        let data = try XCTUnwrap(reply.json["data"] as? [[String: Any]])
        XCTAssertEqual(data.map { $0["id"] as? String }, ["tiny", "alpha", "beta"])
        XCTAssertTrue(data[0]["parent"] is NSNull)
        XCTAssertEqual(data[1]["parent"] as? String, "tiny")
    }

    func testGreedyChatAnswersEqualGenerateWithAndWithoutEachAdapter() throws {
        let messages = [ChatMessage(role: "user", content: "the tin")]
        var answers: [String] = []
        for model in ["tiny", "alpha", "beta"] {
            let reply = try chat(model, "the tin")
            XCTAssertEqual(reply.status, 200, reply.text)
            let choice = try XCTUnwrap((reply.json["choices"] as? [[String: Any]])?.first)
            let content = try XCTUnwrap((choice["message"] as? [String: Any])?["content"] as? String)
            XCTAssertEqual(content, try generated(messages, adapter: model == "tiny" ? nil : model, maxTokens: 12), model)
            let usage = try XCTUnwrap(reply.json["usage"] as? [String: Int])
            XCTAssertEqual(usage["total_tokens"], usage["prompt_tokens"]! + usage["completion_tokens"]!)
            XCTAssertEqual(choice["finish_reason"] as? String, usage["completion_tokens"] == 12 ? "length" : "stop")
            answers.append(content)
        }
        // The adapters change the answer: a request that got another's adapter would show.
        XCTAssertEqual(Set(answers).count, 3, "\(answers)")
    }

    func testStreamedChatEqualsTheWholeAnswerAndEndsWithUsageAndDone() throws {
        let whole = try chat("alpha", "an apple")
        let content = ((whole.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String
        let streamed = try chat("alpha", "an apple", extra: ["stream": true, "stream_options": ["include_usage": true]])
        XCTAssertEqual(streamed.status, 200)
        XCTAssertTrue(streamed.headers["content-type"]?.hasPrefix("text/event-stream") ?? false)
        let events = ServerFixture.events(streamed.text)
        XCTAssertEqual(events.last, "[DONE]")
        let chunks = events.dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertEqual(chunks.count, events.count - 1)
        XCTAssertTrue(chunks.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
        let deltas = chunks.compactMap { (($0["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])?["content"] as? String }
        XCTAssertEqual(deltas.joined(), content)
        XCTAssertEqual(((chunks.first?["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])?["role"] as? String, "assistant")
        // The usage chunk comes last, with no choices, and equals the whole answer's.
        XCTAssertEqual((chunks.last?["choices"] as? [Any])?.count, 0)
        XCTAssertEqual(chunks.last?["usage"] as? [String: Int], whole.json["usage"] as? [String: Int])
        let reasons = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String }
        XCTAssertEqual(reasons.count, 1)
    }

    func testCompletionLogprobsEqualTheModelsLogSoftmax() throws {
        let reply = try server.post("/v1/completions", ["model": "beta", "prompt": "the ", "max_tokens": 5,
                                                        "temperature": 0, "logprobs": 3])
        XCTAssertEqual(reply.status, 200, reply.text)
        let choice = try XCTUnwrap((reply.json["choices"] as? [[String: Any]])?.first)
        let logprobs = try XCTUnwrap(choice["logprobs"] as? [String: Any])
        let values = try XCTUnwrap(logprobs["token_logprobs"] as? [Double])
        let tops = try XCTUnwrap(logprobs["top_logprobs"] as? [[String: Double]])
        XCTAssertEqual(values.count, 5)
        XCTAssertTrue(tops.allSatisfy { $0.count <= 3 && !$0.isEmpty })
        // Greedy: the chosen token is the most likely one, so its log-probability is the best alternative's.
        for (value, top) in zip(values, tops) { XCTAssertEqual(value, top.values.max()!, accuracy: 1e-5) }

        let lm = try LanguageModel.load(server.folder.modelPath)
        try PEFTAdapter.load(server.adaptersDirectory.appendingPathComponent("beta"), into: lm.model)
        let prompt = lm.tokenizer.encode("the ", addSpecialTokens: true)
        var ids = prompt
        for _ in 0..<5 {
            let logits = try lm.model.forward(tokens: ids, logits: .last)
            ids.append(TokenSampler.argmax(logits.pointer, count: lm.model.config.vocabularySize))
        }
        let expected = try lm.logProbabilities(of: ids).suffix(5).map { $0! }
        for (got, want) in zip(values, expected) { XCTAssertEqual(got, want, accuracy: 1e-4) }
    }

    func testBadRequestsGetTheir4xxAndTheServerKeepsServing() throws {
        func status(_ body: Data, path: String = "/v1/chat/completions") throws -> ServerFixture.Reply {
            try server.send(path, method: "POST", body: body)
        }
        let bad = try status(Data("{not json".utf8))
        XCTAssertEqual(bad.status, 400)
        XCTAssertNotNil((bad.json["error"] as? [String: Any])?["message"] as? String)
        XCTAssertEqual(try chat("tiny", "x", extra: ["frobnicate": 1]).errorParam, "frobnicate")
        XCTAssertEqual(try chat("tiny", "x", extra: ["frobnicate": 1]).status, 400)
        XCTAssertEqual(try chat("nope", "x").status, 404)
        XCTAssertEqual(try chat("nope", "x").errorCode, "model_not_found")
        XCTAssertEqual(try chat("tiny", "x", extra: ["temperature": "hot"]).errorParam, "temperature")
        XCTAssertEqual(try chat("tiny", "x", extra: ["n": 2]).status, 400)
        XCTAssertEqual(try chat("tiny", "x", extra: ["logprobs": true, "top_logprobs": 21]).status, 400)
        let long = try chat("tiny", String(repeating: "abc ", count: 200))
        XCTAssertEqual(long.status, 400)
        XCTAssertEqual(long.errorCode, "context_length_exceeded")
        XCTAssertEqual(try chat("tiny", "x", maxTokens: 1000).errorCode, "context_length_exceeded")
        let huge = try status(Data(repeating: UInt8(ascii: " "), count: 2 << 20))
        XCTAssertEqual(huge.status, 413)
        XCTAssertEqual(try server.post("/v1/completions", ["model": "tiny"]).errorParam, "prompt")
        // Still serving.
        XCTAssertEqual(try chat("tiny", "the", maxTokens: 3).status, 200)
    }

    func testAdaptersLoadAndUnloadAtRunTimeOnlyFromTheAdaptersFolder() throws {
        let outside = try server.post("/v1/load_lora_adapter", ["lora_name": "evil", "lora_path": "../.."])
        XCTAssertEqual(outside.status, 403)
        XCTAssertEqual(try server.post("/v1/load_lora_adapter", ["lora_name": "tiny", "lora_path": "gamma"]).status, 400)
        XCTAssertEqual(try server.post("/v1/load_lora_adapter", ["lora_name": "g", "lora_path": "missing"]).status, 404)

        let loaded = try server.post("/v1/load_lora_adapter", ["lora_name": "g", "lora_path": "gamma"])
        XCTAssertEqual(loaded.status, 200, loaded.text)
        let ids = ((try server.get("/v1/models").json["data"] as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String }
        XCTAssertEqual(ids, ["tiny", "alpha", "beta", "g"])
        let answer = try chat("g", "the tin")
        XCTAssertEqual(answer.status, 200)
        let content = ((answer.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String
        XCTAssertEqual(content, try generated([ChatMessage(role: "user", content: "the tin")], adapter: "gamma", maxTokens: 12))

        XCTAssertEqual(try server.post("/v1/unload_lora_adapter", ["lora_name": "g"]).status, 200)
        XCTAssertEqual(try chat("g", "the tin").status, 404)
        XCTAssertEqual(try server.post("/v1/unload_lora_adapter", ["lora_name": "g"]).status, 404)
        // The others are untouched.
        let base = try chat("tiny", "the tin")
        XCTAssertEqual(((base.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String,
                       try generated([ChatMessage(role: "user", content: "the tin")], adapter: nil, maxTokens: 12))
    }

    func testConcurrentRequestsOverTwoAdaptersAndTheBaseEachGetTheirOwnAnswer() throws {
        let prompts = ["the tin", "an apple", "in the", "on a"]
        let models = ["tiny", "alpha", "beta"]
        var expected: [String: String] = [:]
        for model in models {
            for prompt in prompts {
                expected["\(model)|\(prompt)"] = try generated([ChatMessage(role: "user", content: prompt)],
                                                               adapter: model == "tiny" ? nil : model, maxTokens: 10)
            }
        }
        let jobs = (0..<24).map { (models[$0 % 3], prompts[$0 % 4]) }
        let answers = Answers()
        concurrently(jobs.count) { i in
            let reply = try? self.chat(jobs[i].0, jobs[i].1, maxTokens: 10, extra: i % 2 == 0 ? ["stream": true] : [:])
            let text: String?
            if i % 2 == 0 {
                text = reply.map { ServerFixture.events($0.text).dropLast().compactMap { event -> String? in
                    let chunk = try? JSONSerialization.jsonObject(with: Data(event.utf8)) as? [String: Any]
                    return ((chunk?["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])?["content"] as? String
                }.joined() }
            } else {
                text = ((reply?.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String
            }
            answers.set(i, text)
        }
        for (i, job) in jobs.enumerated() {
            XCTAssertEqual(answers.get(i), expected["\(job.0)|\(job.1)"], "request \(i): \(job)")
        }
        let metrics = try server.get("/metrics").text
        XCTAssertTrue(metrics.contains("lathe_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 24"), metrics)
        XCTAssertTrue(metrics.contains("lathe_time_to_first_token_seconds_count 24"))
    }
}

final class ServerKeyAndQueueTests: XCTestCase {
    func testAMissingOrWrongKeyIs401AndTheRightOneServes() throws {
        let server = try ServerFixture(apiKey: "sesame")
        try server.start()
        defer { server.stop() }
        let body: [String: Any] = ["model": "tiny", "prompt": "the", "max_tokens": 2]
        XCTAssertEqual(try server.post("/v1/completions", body).status, 401)
        XCTAssertEqual(try server.post("/v1/completions", body, key: "wrong").status, 401)
        XCTAssertEqual(try server.post("/v1/completions", body, key: "sesame").status, 200)
        XCTAssertEqual(try server.get("/v1/models").status, 401)
        XCTAssertEqual(try server.get("/health").status, 200)
    }

    func testAFullQueueIs429AndTheOthersAreServed() throws {
        let server = try ServerFixture(slots: 1, context: 64, maxQueue: 1, hidden: 512)
        try server.start()
        defer { server.stop() }
        // One slot and room for one waiting request: of twelve long requests sent at once, some are turned away.
        let replies = Answers()
        concurrently(12) { i in
            let reply = try? server.post("/v1/completions", ["model": "tiny", "prompt": "the", "max_tokens": 60,
                                                             "temperature": 0, "stream": true])
            replies.set(i, "\(reply?.status ?? -1)")
        }
        let statuses = (0..<12).compactMap { replies.get($0).flatMap { Int($0) } }
        XCTAssertTrue(statuses.contains(429), "\(statuses)")
        XCTAssertTrue(statuses.contains(200), "\(statuses)")
        XCTAssertEqual(statuses.filter { $0 != 200 && $0 != 429 }, [])
        XCTAssertEqual(try server.post("/v1/completions", ["model": "tiny", "prompt": "a", "max_tokens": 1]).status, 200)
    }
}

/// Answers collected from concurrent requests.
private final class Answers: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int: String] = [:]
    func set(_ i: Int, _ text: String?) { lock.withLock { values[i] = text } }
    func get(_ i: Int) -> String? { lock.withLock { values[i] } }
}
