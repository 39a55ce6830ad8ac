import DnstapForwarderTesting
import Testing

@testable import DnstapForwarder

@Suite("DNS message parser")
struct DNSParserTests {
    @Test("a response with a CNAME chain, A and AAAA")
    func chain() {
        let wire = DNSWireBuilder.response(
            name: "cdn1.rig.test", type: 28,
            answers: [
                .cname("cdn1.rig.test", "www1.rig.test", ttl: 300),
                .cname("www1.rig.test", "host1.rig.test", ttl: 200),
                .aaaa("host1.rig.test", [0xfd, 0, 0, 0x99] + [UInt8](repeating: 0, count: 10) + [0, 1], ttl: 100),
            ], edns: true)
        let message = DNSMessage(parsing: wire)
        #expect(message.parseError == nil)
        #expect(message.isResponse)
        #expect(message.question == DNSQuestion(name: "cdn1.rig.test", type: 28, qclass: 1))
        #expect(message.answers.map(\.data.presentation) == ["www1.rig.test", "host1.rig.test", "fd00:99::1"])
        #expect(message.answers.map(\.ttl) == [300, 200, 100])
        #expect(message.edns?.udpPayloadSize == 1232)
        #expect(message.edns?.dnssecOK == true)
        #expect(message.rcode == 0)
    }

    /// A real response as unbound sent it for `www.example.com A` (compressed names).
    @Test("compression pointers in names and RDATA")
    func compression() {
        let wire: [UInt8] = [
            0xab, 0xcd, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0,
            3, 0x77, 0x77, 0x77, 7, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 3, 0x63, 0x6f, 0x6d, 0, 0, 1, 0, 1,
            0xc0, 12, 0, 5, 0, 1, 0, 0, 0x0e, 0x10, 0, 6, 3, 0x63, 0x64, 0x6e, 0xc0, 16,
            0xc0, 45, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 93, 184, 216, 34,
        ]
        let message = DNSMessage(parsing: wire)
        #expect(message.parseError == nil)
        #expect(message.question?.name == "www.example.com")
        #expect(message.answers.map(\.name) == ["www.example.com", "cdn.example.com"])
        #expect(message.answers.map(\.data.presentation) == ["cdn.example.com", "93.184.216.34"])
    }

    @Test(
        "hostile names never loop, trap or overrun",
        arguments: [
            // pointer to itself
            [0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1] as [UInt8],
            // forward pointer
            [0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 14, 1, 0x61, 0, 0, 1, 0, 1],
            // pointer past the end
            [0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
            // reserved label type 0x40
            [0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 0x61, 0],
            // label running past the end
            [0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 63, 0x61],
        ])
    func hostileNames(wire: [UInt8]) {
        let message = DNSMessage(parsing: wire)
        #expect(message.parseError != nil)
        #expect(message.question == nil)
    }

    @Test("a name over 255 octets is rejected")
    func longName() {
        let label = [UInt8](repeating: 0x61, count: 63)
        var wire: [UInt8] = [0, 0, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        for _ in 0..<5 { wire += [63] + label }
        wire += [0, 0, 1, 0, 1]
        #expect(DNSMessage(parsing: wire).parseError == .nameTooLong)
    }

    @Test("counts larger than the message keep what parsed")
    func countMismatch() {
        var wire = DNSWireBuilder.response(name: "a.test", answers: [.a("a.test", [1, 2, 3, 4])])
        wire[7] = 200  // ANCOUNT 200
        let message = DNSMessage(parsing: wire)
        #expect(message.answers.count == 1)
        #expect(message.parseError == .truncated(section: "answer"))
    }

    @Test("short messages and wrong RDATA lengths")
    func shortAndBadRData() {
        #expect(DNSMessage(parsing: [1, 2, 3]).parseError == .tooShort(3))
        let badA = DNSWireBuilder.response(name: "a.test", answers: [.init(name: "a.test", type: 1, data: [1, 2, 3])])
        #expect(DNSMessage(parsing: badA).parseError == .badRecordData(type: 1))
    }

    @Test("EDNS: extended RCODE, and two OPT records are malformed")
    func edns() {
        var wire = DNSWireBuilder.response(name: "a.test", answers: [], edns: true)
        let optTTL = wire.count - 6
        wire[optTTL] = 1  // EXT-RCODE 1 → full RCODE 16 (BADVERS)
        #expect(DNSMessage(parsing: wire).rcode == 16)
        #expect(DNSNames.rcodeName(16) == "BADVERS")
        var twice = DNSWireBuilder.response(name: "a.test", answers: [], edns: true)
        twice[11] = 2
        twice += [0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]
        #expect(DNSMessage(parsing: twice).parseError == .multipleOPT)
    }

    @Test("labels with dots, backslashes and binary bytes are escaped")
    func escaping() {
        var wire: [UInt8] = [0, 0, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        wire += [4, 0x61, 0x2e, 0x5c, 0x00, 3, 0x63, 0x6f, 0x6d, 0, 0, 1, 0, 1]
        #expect(DNSMessage(parsing: wire).question?.name == "a\\.\\\\\\000.com")
    }

    @Test("record types are rendered as text")
    func rendering() {
        let mx = DNSWireBuilder.Record(name: "a.test", type: 15, data: [0, 10] + DNSWireBuilder.name("mail.a.test"))
        let txt = DNSWireBuilder.Record(name: "a.test", type: 16, data: [5] + Array("hi \"x".utf8))
        let unknown = DNSWireBuilder.Record(name: "a.test", type: 999, data: [0xde, 0xad])
        let message = DNSMessage(parsing: DNSWireBuilder.response(name: "a.test", answers: [mx, txt, unknown]))
        #expect(message.answers.map(\.data.presentation) == ["10 mail.a.test", "\"hi \\\"x\"", "\\# 2 dead"])
    }

    @Test("names are right when the name builder reuses a name it made before (same length, other bytes)")
    func reusedNames() {
        var names = DNSNames.NameBuilder()
        let first = "abcdefghijklmnop.example.test", second = "abcdefghijklmnoq.example.test"
        for (query, answer) in [(first, first), (second, first), (first, second), (second, second)] {
            let wire = DNSWireBuilder.response(name: query, answers: [.a(answer, [192, 0, 2, 1])])
            let message = wire.withUnsafeBytes { DNSMessage(parsing: $0, names: &names) }
            #expect(message.question?.name == query)
            #expect(message.answers.map(\.name) == [answer])
        }
    }

    @Test("IPv6 text follows RFC 5952")
    func ipv6() {
        func text(_ groups: [UInt16]) -> String {
            IPAddressFormatter.string(fromIPv6: groups.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] })
        }
        #expect(text([0, 0, 0, 0, 0, 0, 0, 0]) == "::")
        #expect(text([0, 0, 0, 0, 0, 0, 0, 1]) == "::1")
        #expect(text([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1]) == "2001:db8::1:0:0:1")
        #expect(text([0x2001, 0xdb8, 0, 1, 1, 1, 1, 1]) == "2001:db8:0:1:1:1:1:1")
        #expect(text([0xfe80, 0, 0, 0, 0, 0, 0, 0]) == "fe80::")
        #expect(text([0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001]) == "::ffff:10.0.0.1")
    }
}
