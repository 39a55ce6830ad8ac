import NIOHTTP1

/// What the forwarder does with a HEC answer (PROTOCOLS.md §3.6).
enum HECVerdict: Equatable, Sendable {
    /// 200 code 0 (or 24/25: accepted, HEC near capacity); with indexer acknowledgement, the ackId.
    case delivered(ackID: Int?)
    /// Try the same request again after a backoff (or the server's Retry-After).
    case retry(reason: String, retryAfterSeconds: Int?)
    /// 401/403 (codes 1-4): the token is wrong or disabled. Keep the events, keep probing.
    case authenticationFailed(String)
    /// 400 code 6 with `invalid-event-number`: that one event is bad, the rest may be resent.
    case invalidEvent(index: Int, reason: String)
    /// 413: split the request.
    case tooLarge
    /// Any other 4xx: these events will never be accepted.
    case rejected(String)

    /// Classifies a HEC answer from its HTTP status and body.
    static func classify(status: HTTPResponseStatus, body: String, retryAfter: String?) -> HECVerdict {
        let reply = HECReply(body)
        let described = "HTTP \(status.code)" + (reply.code.map { " code \($0)" } ?? "") + (reply.text.map { " \"\($0)\"" } ?? "")
        let retryAfterSeconds = retryAfter.flatMap { Int($0.trimmingSpaces()) }
        switch status.code {
        case 200..<300:
            return .delivered(ackID: reply.ackID)
        case 401, 403:
            return .authenticationFailed(described)
        case 413:
            return .tooLarge
        case 408, 429, 500..<600:
            return .retry(reason: described, retryAfterSeconds: retryAfterSeconds)
        case 400:
            if reply.code == 6, let index = reply.invalidEventNumber {
                return .invalidEvent(index: index, reason: described)
            }
            return .rejected(described)
        default:
            return .rejected(described)
        }
    }
}

/// The fields of a HEC answer body, read leniently (proxies may send anything).
struct HECReply {
    var text: String?
    var code: Int?
    var invalidEventNumber: Int?
    var ackID: Int?

    init(_ body: String) {
        text = Self.string("text", in: body)
        code = Self.integer("code", in: body)
        invalidEventNumber = Self.integer("invalid-event-number", in: body)
        ackID = Self.integer("ackId", in: body)
    }

    static func integer(_ key: String, in body: String) -> Int? {
        guard let range = body.range(of: "\"\(key)\"") else { return nil }
        let rest = body[range.upperBound...].drop { $0 == " " || $0 == ":" }
        return Int(rest.prefix { $0.isNumber || $0 == "-" })
    }

    static func string(_ key: String, in body: String) -> String? {
        guard let range = body.range(of: "\"\(key)\"") else { return nil }
        let rest = body[range.upperBound...].drop { $0 == " " || $0 == ":" }
        guard rest.first == "\"" else { return nil }
        return String(rest.dropFirst().prefix { $0 != "\"" }.prefix(200))
    }
}
