import DnstapForwarderTesting
import Foundation
import NIOCore
import SwiftProtobuf
import Testing

@testable import DnstapForwarder

@Suite("dnstap → JSON event")
struct EventEncoderTests {
    func encode(_ payload: [UInt8]) throws -> [String: Any] {
        var encoder = DnstapEventEncoder()
        try encoder.append(frame: ByteBuffer(bytes: payload), receivedAtMicros: 1_800_000_000_000_000)
        let events = encoder.takeEvents()
        #expect(events.count == 1)
        let object = try JSONSerialization.jsonObject(with: Data(Array(buffer: events[0].json)))
        return try #require(object as? [String: Any])
    }

    @Test("a client response: CIM fields, timestamps, latency")
    func clientResponse() throws {
        let payload = DnstapBuilder.message(
            type: .clientResponse,
            response: DNSWireBuilder.response(id: 7, name: "www.Example.test", answers: [.a("www.Example.test", [192, 0, 2, 1], ttl: 60)]))
        let event = try encode(payload)
        #expect(event["dnstap_type"] as? String == "CLIENT_RESPONSE")
        #expect(event["message_type"] as? String == "Response")
        #expect(event["query"] as? String == "www.Example.test")
        #expect(event["record_type"] as? String == "A")
        #expect(event["query_type"] as? String == "Query")
        #expect(event["reply_code"] as? String == "NOERROR")
        #expect(event["answer"] as? [String] == ["192.0.2.1"])
        #expect(event["ttl"] as? [Int] == [60])
        #expect(event["src"] as? String == "127.0.0.1")
        #expect(event["transport"] as? String == "udp")
        #expect(event["identity"] as? String == "test-resolver")
        #expect(event["timestamp"] as? String == "2023-11-14T22:13:20.124456Z")
        #expect(event["query_timestamp"] as? String == "2023-11-14T22:13:20.123456Z")
        #expect((event["duration"] as? Double).map { abs($0 - 0.001) < 1e-9 } == true)
        #expect(event["transaction_id"] as? Int == 7)
    }

    @Test("timestamps stay exact across events of one encoder (the second's text is reused only within it)")
    func timestampsAcrossEvents() throws {
        var encoder = DnstapEventEncoder()
        let times: [(UInt64, UInt32)] = [(1_700_000_000, 123_456_000), (1_700_000_000, 999_999_999), (1_700_000_001, 0), (1_600_000_000, 5_000)]
        for time in times {
            let frame = DnstapBuilder.message(type: .clientQuery, query: DNSWireBuilder.query(name: "t.test"), queryTime: time, responseTime: nil)
            try encoder.append(frame: ByteBuffer(bytes: frame), receivedAtMicros: 0)
        }
        let stamps = try encoder.takeEvents().map { event in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(Array(buffer: event.json))) as? [String: Any])
            return object["timestamp"] as? String
        }
        #expect(stamps == [
            "2023-11-14T22:13:20.123456Z", "2023-11-14T22:13:20.999999Z", "2023-11-14T22:13:21.000000Z", "2020-09-13T12:26:40.000005Z",
        ])
    }

    @Test("the eight-bytes-at-a-time escape check misses no byte that needs escaping")
    func escapeCheck() {
        func needsEscape(_ byte: UInt8) -> Bool { byte < 0x20 || byte >= 0x7F || byte == 0x22 || byte == 0x5C }
        for value in 0...255 {
            for position in 0..<8 {
                var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 8)
                bytes[position] = UInt8(value)
                let word = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                #expect(JSONObjectWriter.mayNeedEscape(word) == needsEscape(UInt8(value)), "byte \(value) at \(position)")
            }
        }
        // Through the writer: a long plain run with one special byte near each end.
        let writer = JSONObjectWriter(capacity: 64)
        writer.beginObject()
        writer.field("k", bytes: Array("ab\"cdefghijklmnopqrstuvwx\u{7}yz".utf8))
        writer.endObject()
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #"{"k":"ab\"cdefghijklmnopqrstuvwx\u0007yz"}"#)
    }

    @Test("the writer's inline copy moves every length exactly (none, bytes, words, pairs of words, memmove), whatever the alignment")
    func inlineCopy() {
        let source = (0..<100).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        for count in 0...80 {
            for offset in 0..<3 {
                var destination = [UInt8](repeating: 0xEE, count: count + 8)
                source.withUnsafeBytes { from in
                    destination.withUnsafeMutableBufferPointer { to in
                        JSONObjectWriter.copy(from.baseAddress! + offset, to: to.baseAddress! + 3, count: count)
                    }
                }
                #expect(Array(destination[3..<(3 + count)]) == Array(source[offset..<(offset + count)]), "\(count) bytes at \(offset)")
                #expect(destination[0..<3].allSatisfy { $0 == 0xEE } && destination[(3 + count)...].allSatisfy { $0 == 0xEE }, "nothing around them")
            }
        }
        // Keys and labels of every length through the writer.
        let writer = JSONObjectWriter(capacity: 8)
        writer.beginObject()
        writer.field("a_key_of_twenty_bytes", static: "a value of twenty-five by")
        writer.field("k", static: "")
        writer.endObject()
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #"{"a_key_of_twenty_bytes":"a value of twenty-five by","k":""}"#)
    }

    @Test("IPv6 addresses in the event (answers, src, dest) are RFC 5952 text")
    func ipv6Addresses() throws {
        let v6: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [1]
        let mapped: [UInt8] = Array(repeating: 0, count: 10) + [0xff, 0xff, 192, 0, 2, 7]
        let payload = DnstapBuilder.message(
            type: .clientResponse,
            response: DNSWireBuilder.response(name: "v6.test", answers: [.aaaa("v6.test", v6), .aaaa("v6.test", mapped)]),
            queryAddress: v6, responseAddress: [0xfe, 0x80] + Array(repeating: 0, count: 14))
        let event = try encode(payload)
        #expect(event["answer"] as? [String] == ["2001:db8::1", "::ffff:192.0.2.7"])
        #expect(event["src"] as? String == "2001:db8::1")
        #expect(event["dest"] as? String == "fe80::")
        #expect(event["socket_family"] as? String == "INET6")
    }

    @Test("a query takes its time from query_time; a message with no time from the receipt")
    func timestamps() throws {
        let query = try encode(DnstapBuilder.message(type: .clientQuery, query: DNSWireBuilder.query(name: "a.test")))
        #expect(query["timestamp"] as? String == "2023-11-14T22:13:20.123456Z")
        #expect(query["message_type"] as? String == "Query")
        let untimed = try encode(
            DnstapBuilder.message(type: .clientQuery, query: DNSWireBuilder.query(name: "a.test"), queryTime: nil, responseTime: nil))
        #expect(untimed["timestamp"] as? String == "2027-01-15T08:00:00.000000Z")
    }

    @Test("values from a newer schema decode as UNKNOWN(n), never fail")
    func unknownEnums() throws {
        // Message.type = 15, socket_protocol = 9: both unknown to this build.
        var message = Dnstap_Message()
        message.queryMessage = Data(DNSWireBuilder.query(name: "new.test"))
        var bytes: [UInt8] = try message.serializedBytes(partial: true)
        bytes += [0x08, 15, 0x18, 9]
        var dnstap = Dnstap_Dnstap()
        dnstap.type = .message
        var outer: [UInt8] = try dnstap.serializedBytes()
        outer += [0x72, UInt8(bytes.count)] + bytes
        let event = try encode(outer)
        #expect(event["dnstap_type"] as? String == "UNKNOWN(15)")
        #expect(event["transport"] as? String == "unknown(9)")
        #expect(event["query"] as? String == "new.test")
    }

    @Test("a DNS payload that does not parse still gives an event with dns_parse_error")
    func badDNS() throws {
        let event = try encode(DnstapBuilder.message(type: .clientResponse, response: [1, 2, 3, 4, 5]))
        #expect(event["dns_parse_error"] as? String != nil)
        #expect(event["dnstap_type"] as? String == "CLIENT_RESPONSE")
    }

    @Test("a protobuf that does not decode gives an error and no event")
    func badProtobuf() {
        var encoder = DnstapEventEncoder()
        #expect(throws: DnstapDecodeError.self) {
            try encoder.append(frame: ByteBuffer(bytes: [0xff, 0xff, 0xff, 0xff, 0xff]), receivedAtMicros: 0)
        }
        #expect(encoder.takeEvents().isEmpty)
    }

    @Test("any bytes in identity, version and names give valid JSON")
    func hostileBytes() throws {
        var generator = SplitMix64(seed: 42)
        for round in 0..<500 {
            let identity = (0..<Int(generator.next() % 40)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            var dnstap = Dnstap_Dnstap()
            dnstap.type = .message
            dnstap.identity = Data(identity)
            dnstap.version = Data(identity.reversed())
            var message = Dnstap_Message()
            message.type = .clientResponse
            message.responseMessage = Data((0..<Int(generator.next() % 80)).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
            message.queryAddress = Data(identity.prefix(Int(generator.next() % 20)))
            dnstap.message = message
            let event = try encode(try dnstap.serializedBytes())
            #expect(event["dnstap_type"] as? String == "CLIENT_RESPONSE", "round \(round)")
        }
    }

    @Test("identity, sender, version and extra are copied from the last event only while all four are the same")
    func sourceFieldsAcrossEvents() throws {
        func frame(identity: String?, version: String?, extra: [UInt8]?) throws -> [UInt8] {
            var dnstap = Dnstap_Dnstap()
            dnstap.type = .message
            if let identity { dnstap.identity = Data(identity.utf8) }
            if let version { dnstap.version = Data(version.utf8) }
            if let extra { dnstap.extra = Data(extra) }
            var message = Dnstap_Message()
            message.type = .clientQuery
            message.queryMessage = Data(DNSWireBuilder.query(name: "s.test"))
            dnstap.message = message
            return try dnstap.serializedBytes()
        }
        let long = [UInt8](repeating: UInt8(ascii: "x"), count: SourceFieldsCache.maxBytes + 1)
        // Each step against the one before: the same, then one thing changed (a byte, a presence, a
        // boundary moved between two fields, the sender), a source too long to keep, and back.
        let steps: [(identity: String?, version: String?, extra: [UInt8]?, sender: String?)] = [
            ("r1", "v 1", nil, "uid=0"), ("r1", "v 1", nil, "uid=0"), ("r1", "v 2", nil, "uid=0"), ("r1", "v 2", nil, "uid=0"),
            ("r2", "v 2", nil, "uid=0"), ("r2", "v 2", nil, "CN=other"), ("r2", "v 2", nil, nil), ("r2", "v 2", nil, nil),
            ("r2", nil, nil, nil), ("r2", "", nil, nil), ("r2", "", [], nil), ("r2", "", [0xff, 0x22], nil), ("r2", "", [0xff, 0x23], nil),
            ("r2v", " 2", nil, "uid=0"), ("r2", "v 2", nil, "uid=0"), (nil, "v 2", nil, "uid=0"), ("", "v 2", nil, "uid=0"),
            ("r\u{1}\"", "v 2", long, "uid=0"), ("r\u{1}\"", "v 2", long, "uid=0"), ("r1", "v 1", nil, "uid=0"), ("r1", "v 1", nil, "uid=0"),
        ]
        var kept = DnstapEventEncoder()
        for (index, step) in steps.enumerated() {
            let bytes = ByteBuffer(bytes: try frame(identity: step.identity, version: step.version, extra: step.extra))
            kept.sender = step.sender
            try kept.append(frame: bytes, receivedAtMicros: 0)
            var fresh = DnstapEventEncoder()
            fresh.sender = step.sender
            try fresh.append(frame: bytes, receivedAtMicros: 0)
            let got = String(buffer: try #require(kept.takeEvents().first).json)
            let expected = String(buffer: try #require(fresh.takeEvents().first).json)
            #expect(got == expected, "step \(index)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(got.utf8)) as? [String: Any])
            #expect(object["identity"] as? String == step.identity, "step \(index)")
            #expect(object["sender"] as? String == step.sender, "step \(index)")
        }
    }

    @Test("integers, fixed-point microseconds and IPv4 octets are the decimal text Swift writes")
    func decimals() {
        var values: [UInt64] = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 65535, 1 << 32, UInt64(Int64.max), UInt64.max]
        var random = SplitMix64(seed: 7)
        for _ in 0..<200 { values.append(random.next() >> (random.next() % 64)) }
        var power: UInt64 = 1
        for _ in 0..<19 {  // every digit count's first and last value
            power *= 10
            values += [power - 1, power]
        }
        for value in values {
            let writer = JSONObjectWriter(capacity: 8)
            writer.beginObject()
            writer.field("n", value)
            writer.field("d", micros: Int64(truncatingIfNeeded: value % 1_000_000_000_000))
            writer.endObject()
            let micros = value % 1_000_000_000_000
            let fraction = String(micros % 1_000_000)
            let expected = "{\"n\":\(value),\"d\":\(micros / 1_000_000).\(String(repeating: "0", count: 6 - fraction.count) + fraction)}"
            #expect(String(decoding: writer.bytes, as: UTF8.self) == expected)
        }
        for octets: [UInt8] in [[0, 0, 0, 0], [255, 255, 255, 255], [1, 20, 100, 9], [10, 99, 199, 200]] {
            let writer = JSONObjectWriter(capacity: 8)
            writer.beginObject()
            octets.withUnsafeBytes { writer.field("a", address: $0) }
            writer.beginArray("b")
            writer.arrayElement(octets.withUnsafeBytes { IPv4Bytes($0) })
            writer.endArray()
            writer.endObject()
            let text = octets.map(String.init).joined(separator: ".")
            #expect(String(decoding: writer.bytes, as: UTF8.self) == "{\"a\":\"\(text)\",\"b\":[\"\(text)\"]}")
        }
    }

    @Test("invalid UTF-8 bytes are written as \\xHH text; valid UTF-8 passes through")
    func utf8() throws {
        let writer = JSONObjectWriter(capacity: 16)
        writer.beginObject()
        writer.field("a", bytes: [0x61, 0xff, 0xc3, 0xa9, 0x22, 0x0a, 0x00])
        writer.endObject()
        let text = String(decoding: writer.bytes, as: UTF8.self)
        #expect(text == #"{"a":"a\\xffé\"\n\u0000"}"#)
    }

    @Test("events of one read share one buffer and keep their order")
    func batching() throws {
        var encoder = DnstapEventEncoder()
        for index in 0..<50 {
            try encoder.append(
                frame: ByteBuffer(bytes: DnstapBuilder.message(type: .clientQuery, query: DNSWireBuilder.query(id: UInt16(index), name: "q\(index).test"))),
                receivedAtMicros: 0)
        }
        let events = encoder.takeEvents()
        #expect(events.count == 50)
        for (index, event) in events.enumerated() {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(Array(buffer: event.json))) as? [String: Any])
            #expect(object["query"] as? String == "q\(index).test")
        }
        #expect(encoder.takeEvents().isEmpty)
    }
}
