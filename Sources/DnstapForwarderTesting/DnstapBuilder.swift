import DnstapForwarder
import Foundation
import SwiftProtobuf

/// Builds serialized dnstap messages for tests.
public enum DnstapBuilder {
    public static func message(
        type: Dnstap_Message.TypeEnum = .clientResponse,
        query: [UInt8]? = nil,
        response: [UInt8]? = nil,
        identity: String = "test-resolver",
        version: String = "test 1.0",
        queryAddress: [UInt8] = [127, 0, 0, 1],
        responseAddress: [UInt8] = [127, 0, 0, 1],
        queryTime: (UInt64, UInt32)? = (1_700_000_000, 123_456_000),
        responseTime: (UInt64, UInt32)? = (1_700_000_000, 124_456_000)
    ) -> [UInt8] {
        var message = Dnstap_Message()
        message.type = type
        message.socketFamily = queryAddress.count == 16 ? .inet6 : .inet
        message.socketProtocol = .udp
        message.queryAddress = Data(queryAddress)
        message.queryPort = 53000
        message.responseAddress = Data(responseAddress)
        message.responsePort = 53
        if let queryTime {
            message.queryTimeSec = queryTime.0
            message.queryTimeNsec = queryTime.1
        }
        if let responseTime {
            message.responseTimeSec = responseTime.0
            message.responseTimeNsec = responseTime.1
        }
        if let query { message.queryMessage = Data(query) }
        if let response { message.responseMessage = Data(response) }
        var dnstap = Dnstap_Dnstap()
        dnstap.type = .message
        dnstap.identity = Data(identity.utf8)
        dnstap.version = Data(version.utf8)
        dnstap.message = message
        return try! dnstap.serializedBytes()
    }

    /// A CLIENT_QUERY / CLIENT_RESPONSE pair for `name`.
    public static func pair(name: String, id: UInt16, address: [UInt8] = [10, 0, 0, 1]) -> [[UInt8]] {
        [
            message(type: .clientQuery, query: DNSWireBuilder.query(id: id, name: name), responseTime: nil),
            message(
                type: .clientResponse,
                response: DNSWireBuilder.response(id: id, name: name, answers: [.a(name, address)])),
        ]
    }

    /// `count` messages: CLIENT_QUERY/CLIENT_RESPONSE pairs for the names `<prefix><i><suffix>`.
    public static func pairs(_ count: Int, prefix: String, suffix: String) -> (payloads: [[UInt8]], names: Set<String>) {
        var payloads: [[UInt8]] = []
        var names = Set<String>()
        for index in 0..<(count / 2) {
            let name = "\(prefix)\(index)\(suffix)"
            names.insert(name)
            payloads += pair(name: name, id: UInt16(truncatingIfNeeded: index))
        }
        return (payloads, names)
    }
}
