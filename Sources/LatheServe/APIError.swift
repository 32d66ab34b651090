import Foundation
import HTTPTypes

/// An error as OpenAI's API reports it: an HTTP status and `{"error": {"message", "type", "param", "code"}}`.
public struct APIError: Error, Sendable, Equatable {
    public var status: HTTPResponse.Status
    public var message: String
    public var type: String
    /// The request field at fault, when there is one.
    public var param: String?
    public var code: String?

    public init(_ status: HTTPResponse.Status, _ message: String, type: String = "invalid_request_error",
                param: String? = nil, code: String? = nil) {
        self.status = status; self.message = message; self.type = type; self.param = param; self.code = code
    }

    static func invalid(_ message: String, param: String? = nil) -> APIError {
        APIError(.badRequest, message, param: param)
    }

    static func unknownModel(_ name: String, known: [String]) -> APIError {
        APIError(.notFound, "The model `\(name)` does not exist; this server has: \(known.joined(separator: ", "))",
                 param: "model", code: "model_not_found")
    }

    var body: ErrorBody {
        ErrorBody(error: .init(message: message, type: type, param: param, code: code))
    }

    struct ErrorBody: Encodable {
        struct Detail: Encodable {
            let message: String, type: String, param: String?, code: String?
            // OpenAI writes `"param": null` and `"code": null` rather than leaving them out.
            func encode(to encoder: Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(message, forKey: .message); try c.encode(type, forKey: .type)
                try c.encode(param, forKey: .param); try c.encode(code, forKey: .code)
            }
            enum CodingKeys: String, CodingKey { case message, type, param, code }
        }
        let error: Detail
    }
}
