import DnstapForwarderTesting
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import SwiftProtobuf
import Testing

@testable import DnstapForwarder

/// PowerDNS's protobuf logging (`-pdns-listen`): the stream's framing and the events, without I/O.
@Suite("PowerDNS protobuf logging")
struct PowerDNSTests {
    static let uuid = Data((0..<16).map { UInt8($0 * 17) })

    static func clientResponse() -> PowerDNS_PBDNSMessage {
        var message = PowerDNS_PBDNSMessage()
        message.type = .dnsresponseType
        message.messageID = uuid
        message.serverIdentity = Data("rec1".utf8)
        message.socketFamily = .inet
        message.socketProtocol = .udp
        message.from = Data([192, 0, 2, 7])
        message.fromPort = 53000
        message.to = Data([127, 0, 0, 1])
        message.toPort = 53
        message.inBytes = 109
        message.timeSec = 1_796_228_515
        message.timeUsec = 871_765
        message.id = 46452
        message.question.qName = "CDN1.fwd.test."
        message.question.qType = 28
        message.question.qClass = 1
        message.requestorID = "alice"
        func record(_ name: String, _ type: UInt32, _ data: Data) -> PowerDNS_PBDNSMessage.DNSResponse.DNSRR {
            var record = PowerDNS_PBDNSMessage.DNSResponse.DNSRR()
            record.name = name
            record.type = type
            record.`class` = 1
            record.ttl = 15
            record.rdata = data
            return record
        }
        message.response.rcode = 0
        message.response.rrs = [
            record("cdn1.fwd.test.", 5, Data("www1.fwd.test.".utf8)), record("www1.fwd.test.", 5, Data("host1.fwd.test.".utf8)),
            record("host1.fwd.test.", 28, Data([0xFD, 0, 0, 0x99] + [UInt8](repeating: 0, count: 11) + [1])),
        ]
        message.response.queryTimeSec = 1_796_228_515
        message.response.queryTimeUsec = 868_085
        message.response.appliedPolicy = "rpz.test"
        message.response.appliedPolicyKind = .nxdomain
        message.response.tags = ["a", "b"]
        return message
    }

    static func encode(_ bytes: [UInt8], collect: Bool = false) throws -> (json: [String: Any], resolutions: [ResolutionObservation]) {
        var encoder = DnstapEventEncoder(collectResolutions: collect)
        encoder.sender = "127.0.0.1"
        try encoder.append(powerDNS: ByteBuffer(bytes: bytes), receivedAtMicros: 1)
        let events = encoder.takeEvents()
        #expect(events.count == 1)
        let object = try JSONSerialization.jsonObject(with: Data(events[0].json.readableBytesView)) as! [String: Any]
        return (object, encoder.takeResolutions().observations)
    }

    @Test("a client response: the CIM fields, the answer chain, the latency; PowerDNS's own fields under their names")
    func clientResponseEvent() throws {
        let (event, resolutions) = try Self.encode(try Self.clientResponse().serializedBytes(), collect: true)
        #expect(event["timestamp"] as? String == "2026-12-02T16:21:55.871765Z")
        #expect(event["dnstap_type"] as? String == "CLIENT_RESPONSE")
        #expect(event["message_type"] as? String == "Response")
        #expect(event["identity"] as? String == "rec1")
        #expect(event["sender"] as? String == "127.0.0.1")
        #expect(event["message_id"] as? String == "00112233-4455-6677-8899-aabbccddeeff")
        #expect(event["socket_family"] as? String == "INET")
        #expect(event["transport"] as? String == "udp")
        #expect(event["src"] as? String == "192.0.2.7")
        #expect(event["src_port"] as? Int == 53000)
        #expect(event["dest"] as? String == "127.0.0.1")
        #expect(event["dest_port"] as? Int == 53)
        #expect(event["message_size"] as? Int == 109)
        #expect(event["transaction_id"] as? Int == 46452)
        #expect(event["query"] as? String == "CDN1.fwd.test")
        #expect(event["record_type"] as? String == "AAAA")
        #expect(event["query_class"] as? String == "IN")
        #expect(event["reply_code"] as? String == "NOERROR")
        #expect(event["reply_code_id"] as? Int == 0)
        #expect(event["query_timestamp"] as? String == "2026-12-02T16:21:55.868085Z")
        #expect(event["response_timestamp"] as? String == "2026-12-02T16:21:55.871765Z")
        #expect(event["duration"] as? Double == 0.00368)
        #expect(event["answer"] as? [String] == ["www1.fwd.test", "host1.fwd.test", "fd00:99::1"])
        #expect(event["answer_type"] as? [String] == ["CNAME", "CNAME", "AAAA"])
        #expect(event["answer_name"] as? [String] == ["cdn1.fwd.test", "www1.fwd.test", "host1.fwd.test"])
        #expect(event["ttl"] as? [Int] == [15, 15, 15])
        #expect(event["requestor_id"] as? String == "alice")
        #expect(event["applied_policy"] as? String == "rpz.test")
        #expect(event["applied_policy_kind"] as? String == "NXDOMAIN")
        #expect(event["tags"] as? [String] == ["a", "b"])
        // Header counts are not in PowerDNS's message: not made up.
        #expect(event["answer_count"] == nil)
        #expect(resolutions.map(\.address.description) == ["fd00:99::1"])
        #expect(resolutions.first?.name == "cdn1.fwd.test")
        #expect(resolutions.first?.targets == ["www1.fwd.test", "host1.fwd.test"])
    }

    @Test("a query: its time is the event's; a response's fields that dnsdist also puts on queries are not read there")
    func queryEvent() throws {
        var message = Self.clientResponse()
        message.type = .dnsqueryType
        message.response.rrs = []
        let (event, resolutions) = try Self.encode(try message.serializedBytes(), collect: true)
        #expect(event["dnstap_type"] as? String == "CLIENT_QUERY")
        #expect(event["message_type"] as? String == "Query")
        #expect(event["query_timestamp"] as? String == "2026-12-02T16:21:55.871765Z")
        #expect(event["response_timestamp"] == nil)
        #expect(event["duration"] == nil)
        #expect(event["reply_code"] == nil)
        #expect(resolutions.isEmpty)
    }

    @Test("outgoing queries and responses are RESOLVER_*; a record without its owner (Recursor 4.8) gives no answer_name and nothing to the map; rcode 65536 is a network error")
    func outgoing() throws {
        var message = Self.clientResponse()
        message.type = .dnsincomingResponseType
        for index in message.response.rrs.indices { message.response.rrs[index].clearName() }
        var (event, resolutions) = try Self.encode(try message.serializedBytes(), collect: true)
        #expect(event["dnstap_type"] as? String == "RESOLVER_RESPONSE")
        #expect(event["answer"] as? [String] == ["www1.fwd.test", "host1.fwd.test", "fd00:99::1"])
        #expect(event["answer_name"] == nil)
        #expect(resolutions.isEmpty)
        message.response.rcode = 65536
        (event, resolutions) = try Self.encode(try message.serializedBytes(), collect: true)
        #expect(event["reply_code"] as? String == "NETWORK_ERROR")
        #expect(event["reply_code_id"] as? Int == 65536)
        message.type = .dnsoutgoingQueryType
        (event, _) = try Self.encode(try message.serializedBytes())
        #expect(event["dnstap_type"] as? String == "RESOLVER_QUERY")
    }

    @Test("not PowerDNS: bytes that do not decode, an empty message, a message without its type are refused; a newer type is kept as UNKNOWN(n)")
    func refused() throws {
        var encoder = DnstapEventEncoder()
        for bytes: [UInt8] in [[0xFF, 0xFF, 0xFF], [], [0x62, 0x00]] {
            #expect(throws: DnstapDecodeError.self) { try encoder.append(powerDNS: ByteBuffer(bytes: bytes), receivedAtMicros: 1) }
        }
        #expect(encoder.takeEvents().isEmpty)
        // Type 9 (newer than this schema), as raw bytes: field 1 varint 9, then a question.
        let (event, _) = try Self.encode([0x08, 0x09, 0x62, 0x04, 0x0A, 0x02, 0x61, 0x2E])
        #expect(event["dnstap_type"] as? String == "UNKNOWN(9)")
        #expect(event["message_type"] == nil)
        #expect(event["query"] as? String == "a")
    }

    static func session(maxFrameSize: Int = 1 << 20) -> (PowerDNSSession, ConnectionRecord, ForwarderStatistics) {
        let record = ConnectionRecord(id: 1, peer: "test", transport: .pdns, channel: EmbeddedChannel())
        let statistics = ForwarderStatistics()
        return (PowerDNSSession(record: record, maxFrameSize: maxFrameSize, statistics: statistics), record, statistics)
    }

    static func framed(_ message: [UInt8]) -> [UInt8] { [UInt8(message.count >> 8), UInt8(message.count & 0xFF)] + message }

    @Test("the stream split at every byte gives the same messages as in one read")
    func splitAnywhere() throws {
        let messages = try (0..<5).map { index -> [UInt8] in
            var message = Self.clientResponse()
            message.id = UInt32(index)
            return try message.serializedBytes()
        }
        let stream = messages.flatMap(Self.framed)
        var (whole, _, _) = Self.session()
        let all = whole.receive(ByteBuffer(bytes: stream))
        #expect(all.frames.map { Array($0.readableBytesView) } == messages)
        #expect(all.end == nil)
        for cut in 1..<stream.count {
            var (session, _, statistics) = Self.session()
            let first = session.receive(ByteBuffer(bytes: stream[..<cut]))
            let second = session.receive(ByteBuffer(bytes: stream[cut...]))
            let end = session.endOfInput()
            #expect((first.frames + second.frames).map { Array($0.readableBytesView) } == messages)
            #expect(end.end?.reason == .peerClosed && end.end?.detail == nil)
            #expect(statistics.frames.load(ordering: .relaxed) == messages.count)
        }
    }

    @Test("a length of 0 or over the limit ends the connection as a protocol error, counted; so does a message cut off by the close")
    func framingErrors() {
        var (session, record, statistics) = Self.session(maxFrameSize: 100)
        var outcome = session.receive(ByteBuffer(bytes: Self.framed([0x08, 0x01]) + [0, 0]))
        #expect(outcome.frames.count == 1)
        #expect(outcome.end?.reason == .protocolError)
        #expect(statistics.protobufErrors.load(ordering: .relaxed) == 1)

        (session, record, statistics) = Self.session(maxFrameSize: 100)
        outcome = session.receive(ByteBuffer(bytes: [0, 101] + [UInt8](repeating: 0, count: 101)))
        #expect(outcome.frames.isEmpty)
        #expect(outcome.end?.reason == .protocolError)
        #expect(outcome.end?.detail?.contains("101 bytes") == true)
        #expect(statistics.oversizedFrames.load(ordering: .relaxed) == 1)

        (session, record, statistics) = Self.session()
        outcome = session.receive(ByteBuffer(bytes: Self.framed([0x08, 0x01]) + [0, 9, 0x08]))
        #expect(outcome.frames.count == 1 && outcome.end == nil)
        outcome = session.endOfInput()
        #expect(outcome.end?.reason == .protocolError)
        #expect(statistics.truncatedMessages.load(ordering: .relaxed) == 1)
        #expect(record.decodeErrors.load(ordering: .relaxed) == 1)
        // No handshake: a PowerDNS connection is open for data from the start.
        #expect(record.transport == .pdns)
    }
}
