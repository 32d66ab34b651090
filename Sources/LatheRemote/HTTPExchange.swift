import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One HTTP request and its response, waited for on the calling thread: the remote judge's and the remote
/// reward's transport.
public enum HTTPExchange {
    public enum Outcome {
        case transport(Error)
        case response(status: Int, headers: [String: String], data: Data)
    }

    public static func send(_ request: URLRequest, session: URLSession) -> Outcome {
        final class Box: @unchecked Sendable { var outcome: Outcome = .transport(URLError(.unknown)) }
        let box = Box(), done = DispatchSemaphore(value: 0)
        let task = session.dataTask(with: request) { data, response, error in
            if let error {
                box.outcome = .transport(error)
            } else if let http = response as? HTTPURLResponse {
                var headers: [String: String] = [:]
                for (key, value) in http.allHeaderFields {
                    if let key = key as? String, let value = value as? String { headers[key.lowercased()] = value }
                }
                box.outcome = .response(status: http.statusCode, headers: headers, data: data ?? Data())
            } else {
                box.outcome = .transport(URLError(.badServerResponse))
            }
            done.signal()
        }
        task.resume()
        done.wait()
        return box.outcome
    }
}
