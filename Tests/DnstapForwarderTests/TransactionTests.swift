import DnstapForwarderTesting
import Foundation
import Logging
import NIOEmbedded
import NIOCore
import SwiftProtobuf
import Testing

@testable import DnstapForwarder

/// `-transactions`: the table of pending queries as a pure state machine, and the join in the
/// encoder, without I/O.
@Suite("transactions")
struct TransactionTests {
    typealias Machine = TransactionTableStateMachine<Int, String>

    static func at(_ milliseconds: Int64) -> NIODeadline { .uptimeNanoseconds(UInt64(1_000_000_000 + milliseconds * 1_000_000)) }

    @Test("a held query is taken by its response once; the others time out in the order they came")
    func holdTakeExpire() {
        var machine = Machine(capacity: 10, timeout: .seconds(5))
        #expect(machine.hold(1, "q1", now: Self.at(0)).isEmpty)
        #expect(machine.hold(2, "q2", now: Self.at(100)).isEmpty)
        #expect(machine.hold(3, "q3", now: Self.at(200)).isEmpty)
        #expect(machine.take(2) == "q2")
        #expect(machine.take(2) == nil, "a response takes its query once")
        #expect(machine.take(9) == nil, "a response whose query was never held")
        #expect(machine.expire(now: Self.at(4_999)).isEmpty, "nothing before its timeout")
        #expect(machine.expire(now: Self.at(5_000)) == ["q1"], "exactly at its deadline")
        #expect(machine.count == 1)
        #expect(machine.expire(now: Self.at(60_000)) == ["q3"])
        #expect(machine.count == 0)
        #expect(machine.expire(now: Self.at(120_000)).isEmpty)
    }

    @Test("full: the oldest pending query leaves (not one already answered); the bound holds")
    func eviction() {
        var machine = Machine(capacity: 3, timeout: .seconds(5))
        for key in 1...3 { #expect(machine.hold(key, "q\(key)", now: Self.at(Int64(key))).isEmpty) }
        #expect(machine.take(1) == "q1")
        #expect(machine.hold(4, "q4", now: Self.at(4)).isEmpty, "room again after the answer")
        let released = machine.hold(5, "q5", now: Self.at(5))
        #expect(released.map(\.0) == ["q2"] && released.map(\.1) == [.evicted], "the oldest still pending")
        #expect(machine.count == 3)
        #expect(machine.drain() == ["q3", "q4", "q5"], "at shutdown every pending query, oldest first")
        #expect(machine.count == 0)
    }

    @Test("a second query with the same key supersedes the first, which is released; the response takes the newer")
    func superseded() {
        var machine = Machine(capacity: 3, timeout: .seconds(5))
        _ = machine.hold(1, "first", now: Self.at(0))
        let released = machine.hold(1, "retransmitted", now: Self.at(1_000))
        #expect(released.map(\.0) == ["first"] && released.map(\.1) == [.superseded])
        #expect(machine.expire(now: Self.at(5_500)).isEmpty, "the newer one's own timeout counts")
        #expect(machine.take(1) == "retransmitted")
    }

    @Test("200,000 queries answered through a table of 1,000: the bookkeeping stays bounded")
    func bookkeepingBounded() {
        var machine = Machine(capacity: 1_000, timeout: .seconds(5))
        var released = 0
        var taken = 0
        var largest = 0
        for key in 0..<200_000 {
            released += machine.hold(key, "", now: Self.at(Int64(key / 1000))).count
            // Answered a little late: each step answers the one held 10 before.
            if key >= 10, machine.take(key - 10) != nil { taken += 1 }
            largest = max(largest, machine.queuedSlots)
        }
        #expect(released == 0, "never full: 10 pending at a time")
        #expect(taken == 200_000 - 10)
        #expect(machine.count == 10)
        #expect(largest <= 2 * 11 + 64, "the FIFO is compacted to about the entries held, 10 or 11 (largest \(largest))")
    }

    @Test("answered in the order they came, the FIFO keeps only the slots of the queries still held")
    func inOrderAnswersLeaveNoSlots() {
        var machine = Machine(capacity: 1_000, timeout: .seconds(5))
        for key in 0..<100 { _ = machine.hold(key, "", now: Self.at(0)) }
        for key in 0..<50 { #expect(machine.take(key) != nil) }
        #expect(machine.queuedSlots == 50, "the answered oldest leave with their answers")
        #expect(machine.take(70) != nil)
        #expect(machine.queuedSlots == 50, "one answered out of order waits for those before it")
        for key in 50..<70 { _ = machine.take(key) }
        #expect(machine.queuedSlots == 29, "and leaves with them")
        #expect(machine.expire(now: Self.at(5_000)).count == 29)
    }

    // MARK: - The join in the encoder

    static func table(_ size: Int) -> TransactionTable {
        var settings = TransactionSettings()
        settings.enabled = true
        settings.tableSize = size
        settings.timeout = .seconds(5)
        return TransactionTable(settings: settings)
    }

    static func events(_ encoder: inout DnstapEventEncoder) -> [[String: Any]] {
        encoder.takeEvents().map { event in
            try! JSONSerialization.jsonObject(with: Data(event.json.readableBytesView)) as! [String: Any]
        }
    }

    static func query(_ name: String, id: UInt16, port: UInt32 = 53000, time: (UInt64, UInt32) = (1_700_000_000, 100_000_000)) -> ByteBuffer {
        var message = try! Dnstap_Dnstap(serializedBytes: DnstapBuilder.message(
            type: .clientQuery, query: DNSWireBuilder.query(id: id, name: name), queryTime: time, responseTime: nil))
        message.message.queryPort = port
        return ByteBuffer(bytes: try! message.serializedBytes() as [UInt8])
    }

    /// A response that, as BIND's and Knot Resolver's, may not repeat its query's time.
    static func response(
        _ name: String, id: UInt16, rcode: UInt8 = 0, port: UInt32 = 53000, queryTime: (UInt64, UInt32)? = nil,
        time: (UInt64, UInt32) = (1_700_000_000, 112_500_000)
    ) -> ByteBuffer {
        var message = try! Dnstap_Dnstap(serializedBytes: DnstapBuilder.message(
            type: .clientResponse, response: DNSWireBuilder.response(id: id, name: name, rcode: rcode, answers: rcode == 0 ? [.a(name, [10, 0, 0, 1])] : []),
            queryTime: queryTime, responseTime: time))
        message.message.queryPort = port
        return ByteBuffer(bytes: try! message.serializedBytes() as [UInt8])
    }

    @Test("a question's key: ASCII letters in either case are the same question; any other byte, the type, the class or the ID is another")
    func questionKey() throws {
        let decoder = DnstapProtobufDecoder()
        func key(_ labels: [[UInt8]], type: UInt16 = 1, qclass: UInt16 = 1, id: UInt16 = 7) throws -> [UInt8]? {
            var wire: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
            for label in labels { wire += [UInt8(label.count)] + label }
            wire += [0, UInt8(type >> 8), UInt8(type & 0xFF), UInt8(qclass >> 8), UInt8(qclass & 0xFF)]
            let frame = DnstapBuilder.message(type: .clientQuery, query: wire)
            defer { decoder.reset() }
            var scratch: [UInt8] = []
            return try frame.withUnsafeBytes { bytes in
                let dnstap = try #require(decoder.decode(bytes))
                return TransactionKey(dnstap: dnstap, isQuery: true, scratch: &scratch)?.bytes
            }
        }
        let plain = try #require(try key([Array("www".utf8), Array("example-1".utf8), Array("test".utf8)]))
        #expect(try key([Array("WwW".utf8), Array("EXAMPLE-1".utf8), Array("tesT".utf8)]) == plain)
        // Every other byte counts as it is: "-" (0x2D) and "\r" (0x0D), "@" (0x40) and "`" (0x60),
        // "[" (0x5B) and "{" (0x7B), 0xC1 and 0xE1 differ by the same bit as a capital and its letter.
        for (a, b) in [(0x2D, 0x0D), (0x40, 0x60), (0x5B, 0x7B), (0xC1, 0xE1)] as [(UInt8, UInt8)] {
            #expect(try key([[a, 0x61]]) != key([[b, 0x61]]), "\(a) against \(b)")
        }
        #expect(try key([Array("www".utf8)]) != key([Array("ww".utf8), Array("w".utf8)]), "the label boundaries count")
        #expect(try key([Array("a".utf8)], type: 28) != key([Array("a".utf8)]))
        #expect(try key([Array("a".utf8)], qclass: 3) != key([Array("a".utf8)]))
        #expect(try key([Array("a".utf8)], id: 8) != key([Array("a".utf8)]))
        // Not a question to join: a pointer in the name, or a name cut short.
        let frame = DnstapBuilder.message(type: .clientQuery, query: [0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0x0C, 0, 1, 0, 1])
        var scratch: [UInt8] = []
        try frame.withUnsafeBytes { bytes in
            let dnstap = try #require(decoder.decode(bytes))
            #expect(TransactionKey(dnstap: dnstap, isQuery: true, scratch: &scratch) == nil)
        }
        decoder.reset()
        let cut = DnstapBuilder.message(type: .clientQuery, query: [0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 0x61, 0x62])
        try cut.withUnsafeBytes { bytes in
            let dnstap = try #require(decoder.decode(bytes))
            #expect(TransactionKey(dnstap: dnstap, isQuery: true, scratch: &scratch) == nil)
        }
    }

    @Test("a query and its response: one event, the response's fields with query_timestamp and duration")
    func joined() throws {
        var encoder = DnstapEventEncoder()
        encoder.transactions = Self.table(100)
        try encoder.append(frame: Self.query("www.example.test", id: 7), receivedAtMicros: 1)
        #expect(Self.events(&encoder).isEmpty, "the query waits for its response")
        #expect(encoder.transactions?.pending == 1)
        // The resolver randomised the case of the name (0x20): still the same question.
        try encoder.append(frame: Self.response("WWW.example.TEST", id: 7), receivedAtMicros: 2)
        let events = Self.events(&encoder)
        #expect(events.count == 1)
        let event = try #require(events.first)
        #expect(event["dnstap_type"] as? String == "CLIENT_RESPONSE")
        #expect(event["message_type"] as? String == "Response")
        #expect(event["query_timestamp"] as? String == "2023-11-14T22:13:20.100000Z")
        #expect(event["timestamp"] as? String == "2023-11-14T22:13:20.112500Z")
        #expect(event["duration"] as? Double == 0.0125)
        #expect(event["response_timestamp"] == nil, "the response's time is the timestamp, not written twice")
        #expect(event["answer"] as? [String] == ["10.0.0.1"])
        #expect(event["unanswered"] == nil)
        #expect(encoder.takeTransactionOutcomes() == [.joined: 1])
        #expect(encoder.transactions?.pending == 0)
    }

    @Test("a response that carries its query's time keeps its own fields once (no duplicate keys)")
    func joinedWithOwnQueryTime() throws {
        var encoder = DnstapEventEncoder()
        encoder.transactions = Self.table(100)
        try encoder.append(frame: Self.query("a.test", id: 1), receivedAtMicros: 1)
        try encoder.append(frame: Self.response("a.test", id: 1, queryTime: (1_700_000_000, 100_000_000)), receivedAtMicros: 2)
        let json = try #require(encoder.takeEvents().first).json
        let text = String(buffer: json)
        #expect(text.components(separatedBy: "\"duration\"").count == 2, "\(text)")
        #expect(text.components(separatedBy: "\"query_timestamp\"").count == 2, "\(text)")
        #expect(!text.contains("response_timestamp"), "\(text)")
    }

    @Test("no match: another ID, another port, another question or another resolver; the response goes out alone and counted")
    func unmatched() throws {
        var encoder = DnstapEventEncoder()
        encoder.transactions = Self.table(100)
        try encoder.append(frame: Self.query("a.test", id: 1), receivedAtMicros: 1)
        try encoder.append(frame: Self.response("a.test", id: 2), receivedAtMicros: 2)
        try encoder.append(frame: Self.response("a.test", id: 1, port: 53001), receivedAtMicros: 2)
        try encoder.append(frame: Self.response("b.test", id: 1), receivedAtMicros: 2)
        var other = try Dnstap_Dnstap(serializedBytes: Array(Self.response("a.test", id: 1).readableBytesView))
        other.identity = Data("another-resolver".utf8)
        try encoder.append(frame: ByteBuffer(bytes: try other.serializedBytes() as [UInt8]), receivedAtMicros: 2)
        let events = Self.events(&encoder)
        #expect(events.count == 4)
        #expect(events.allSatisfy { $0["dnstap_type"] as? String == "CLIENT_RESPONSE" && $0["duration"] == nil })
        #expect(events.allSatisfy { $0["response_timestamp"] != nil }, "an unmatched response is written as without -transactions")
        #expect(encoder.takeTransactionOutcomes() == [.unmatchedResponse: 4])
        #expect(encoder.transactions?.pending == 1, "the query still waits")
    }

    @Test("unanswered: after the timeout the query goes out with its own fields and \"unanswered\": true")
    func unanswered() throws {
        var encoder = DnstapEventEncoder()
        let table = Self.table(100)
        encoder.transactions = table
        try encoder.append(frame: Self.query("slow.test", id: 9), receivedAtMicros: 1)
        #expect(table.expire(now: .now()).isEmpty, "not before its timeout")
        let expired = table.expire(now: .now() + .seconds(6))
        #expect(expired.count == 1)
        let query = try #require(expired.first)
        let rendered = try #require(HeldQuery.unansweredEvents([query], allocator: ByteBufferAllocator()).first)
        let event = try JSONSerialization.jsonObject(with: Data(rendered.json.readableBytesView)) as? [String: Any]
        #expect(event?["dnstap_type"] as? String == "CLIENT_QUERY")
        #expect(event?["query"] as? String == "slow.test")
        #expect(event?["unanswered"] as? Bool == true)
        #expect(event?["timestamp"] as? String == "2023-11-14T22:13:20.100000Z")
    }

    @Test("an unanswered query, held as its frame, goes out as the same event plain mode writes, marked unanswered")
    func unansweredSameAsPlain() throws {
        var plain = DnstapEventEncoder()
        plain.sender = "resolver1.example"
        try plain.append(frame: Self.query("same.test", id: 11), receivedAtMicros: 5)
        let expected = try #require(Self.events(&plain).first)
        var joining = DnstapEventEncoder()
        joining.sender = "resolver1.example"
        let table = Self.table(100)
        joining.transactions = table
        try joining.append(frame: Self.query("same.test", id: 11), receivedAtMicros: 5)
        #expect(Self.events(&joining).isEmpty)
        let held = try #require(table.drain().first)
        let rendered = try #require(HeldQuery.unansweredEvents([held], allocator: ByteBufferAllocator()).first)
        var event = try #require(try JSONSerialization.jsonObject(with: Data(rendered.json.readableBytesView)) as? [String: Any])
        #expect(event.removeValue(forKey: "unanswered") as? Bool == true)
        #expect(NSDictionary(dictionary: event) == NSDictionary(dictionary: expected))
        #expect(event["sender"] as? String == "resolver1.example")
    }

    @Test("a read large enough to be split, through a connection's lanes: each query joins its response, even across the read's middle")
    func lanesKeepTheOrder() async throws {
        let record = ConnectionRecord(id: 1, peer: "test", transport: .unix, channel: EmbeddedChannel())
        let table = Self.table(10_000)
        let lanes = EventEncodingLanes(
            record: record, statistics: ForwarderStatistics(), resolutionMap: nil, transactions: table, logger: Logger(label: "test"))
        // A query whose response does not come, then an even number of query/response pairs, each
        // response right after its query, enough for a read that would be split without
        // `-transactions`: the middle pair's query is the last frame of the first half, its
        // response the first of the second.
        var frames: [ByteBuffer] = [Self.query("unanswered.test", id: 999)]
        var pairs = 0
        while !EventEncodingLanes.splitsRead(frames) || pairs % 2 == 1 {
            frames.append(Self.query("n\(pairs).test", id: UInt16(pairs)))
            frames.append(Self.response("n\(pairs).test", id: UInt16(pairs)))
            pairs += 1
        }
        let events = await lanes.encode(frames).map { event in
            try! JSONSerialization.jsonObject(with: Data(event.json.readableBytesView)) as! [String: Any]
        }
        #expect(events.count == pairs)
        #expect(events.allSatisfy { $0["duration"] != nil && $0["unanswered"] == nil })
        #expect(table.pending == 1, "only the query without a response waits")
    }

    @Test("a full table writes its oldest query unanswered with the read that needed the room")
    func evictedInline() throws {
        var encoder = DnstapEventEncoder()
        encoder.transactions = Self.table(2)
        for id in 1...3 { try encoder.append(frame: Self.query("n\(id).test", id: UInt16(id)), receivedAtMicros: 1) }
        let events = Self.events(&encoder)
        #expect(events.map { $0["query"] as? String } == ["n1.test"])
        #expect(events.first?["unanswered"] as? Bool == true)
        #expect(encoder.takeTransactionOutcomes() == [.evicted: 1])
    }

    @Test("a query whose DNS message does not parse is never held; a response without a question is written as it is")
    func undecodableNotHeld() throws {
        var encoder = DnstapEventEncoder()
        encoder.transactions = Self.table(100)
        let truncated = Array(DNSWireBuilder.query(id: 3, name: "cut.test").dropLast(3))
        try encoder.append(
            frame: ByteBuffer(bytes: DnstapBuilder.message(type: .clientQuery, query: truncated, responseTime: nil)), receivedAtMicros: 1)
        try encoder.append(frame: ByteBuffer(bytes: DnstapBuilder.message(type: .clientResponse, response: [0, 1, 2])), receivedAtMicros: 1)
        let events = Self.events(&encoder)
        #expect(events.count == 2)
        #expect(events.allSatisfy { $0["dns_parse_error"] != nil })
        #expect(encoder.transactions?.pending == 0)
    }

    @Test("sampling keeps or drops the whole transaction; an error answer keeps it; a filtered type is not held")
    func withFilters() throws {
        var settings = FilterSettings()
        settings.sampleRate = 1_000_000
        var encoder = DnstapEventEncoder()
        encoder.transactions = Self.table(100)
        encoder.filter = (settings, nil, nil)
        // With one name in a million kept, these names are (almost surely) sampled out.
        try encoder.append(frame: Self.query("s1.test", id: 1), receivedAtMicros: 1)
        try encoder.append(frame: Self.response("s1.test", id: 1), receivedAtMicros: 2)
        try encoder.append(frame: Self.query("s2.test", id: 2), receivedAtMicros: 1)
        try encoder.append(frame: Self.response("s2.test", id: 2, rcode: 3), receivedAtMicros: 2)
        let events = Self.events(&encoder)
        #expect(events.count == 1, "the NXDOMAIN transaction only")
        #expect(events.first?["query"] as? String == "s2.test")
        #expect(events.first?["duration"] != nil, "joined")
        #expect(events.first?["sample_rate"] as? Int == 1_000_000)
        #expect(encoder.takeFiltered() == [.sample: 1], "the dropped transaction counts once")
        #expect(encoder.takeTransactionOutcomes() == [.joined: 2])

        settings = FilterSettings()
        settings.messageTypes = ["CLIENT_RESPONSE"]
        encoder.filter = (settings, nil, nil)
        try encoder.append(frame: Self.query("t.test", id: 5), receivedAtMicros: 1)
        #expect(encoder.transactions?.pending == 0, "a query the filter leaves out is not held")
        #expect(encoder.takeFiltered() == [.messageType: 1])
    }

    @Test("a transaction the names filter leaves out counts as filtered, not as an unmatched response; a kept response whose query was filtered does")
    func filteredNotUnmatched() throws {
        var encoder = DnstapEventEncoder()
        encoder.transactions = Self.table(100)
        encoder.filter = (FilterSettings(), NameSuffixSet(["ads.test"]), nil)
        try encoder.append(frame: Self.query("x.ads.test", id: 1), receivedAtMicros: 1)
        try encoder.append(frame: Self.response("x.ads.test", id: 1), receivedAtMicros: 2)
        try encoder.append(frame: Self.query("kept.test", id: 2), receivedAtMicros: 1)
        try encoder.append(frame: Self.response("kept.test", id: 2), receivedAtMicros: 2)
        #expect(Self.events(&encoder).map { $0["query"] as? String } == ["kept.test"])
        #expect(encoder.takeFiltered() == [.dropNames: 2])
        #expect(encoder.takeTransactionOutcomes() == [.joined: 1])

        // Queries left out by type: their responses are written alone, and are unmatched.
        var settings = FilterSettings()
        settings.messageTypes = ["CLIENT_RESPONSE"]
        encoder.filter = (settings, nil, nil)
        try encoder.append(frame: Self.query("t.test", id: 5), receivedAtMicros: 1)
        try encoder.append(frame: Self.response("t.test", id: 5), receivedAtMicros: 2)
        #expect(Self.events(&encoder).count == 1)
        #expect(encoder.takeFiltered() == [.messageType: 1])
        #expect(encoder.takeTransactionOutcomes() == [.unmatchedResponse: 1])
    }

    @Test("PowerDNS: a query and its response join by messageId")
    func powerDNSJoin() throws {
        var encoder = DnstapEventEncoder()
        encoder.transactions = Self.table(100)
        var query = PowerDNSTests.clientResponse()
        query.type = .dnsqueryType
        query.clearResponse()
        query.timeUsec = 868_085
        var response = PowerDNSTests.clientResponse()
        response.clearResponse()  // no query time of its own: the held query's is used
        response.response.rcode = 0
        try encoder.append(powerDNS: ByteBuffer(bytes: try query.serializedBytes() as [UInt8]), receivedAtMicros: 1)
        #expect(Self.events(&encoder).isEmpty)
        var other = response
        other.messageID = Data(repeating: 1, count: 16)
        try encoder.append(powerDNS: ByteBuffer(bytes: try other.serializedBytes() as [UInt8]), receivedAtMicros: 2)
        try encoder.append(powerDNS: ByteBuffer(bytes: try response.serializedBytes() as [UInt8]), receivedAtMicros: 2)
        let events = Self.events(&encoder)
        #expect(events.count == 2)
        #expect(events[0]["duration"] == nil, "another messageId: not joined")
        #expect(events[1]["query_timestamp"] as? String == "2026-12-02T16:21:55.868085Z")
        #expect(events[1]["duration"] as? Double == 0.00368)
        #expect(encoder.takeTransactionOutcomes() == [.unmatchedResponse: 1, .joined: 1])
    }
}
