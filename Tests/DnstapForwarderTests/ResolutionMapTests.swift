import DnstapForwarderTesting
import NIOCore
import Synchronization
import Testing

@testable import DnstapForwarder

/// A clock tests move by hand (microseconds since the epoch).
final class ManualClock: Sendable {
    private let now: Atomic<Int64>
    init(_ start: Int64 = 1_800_000_000_000_000) { now = Atomic(start) }
    var micros: Int64 { now.load(ordering: .relaxed) }
    func advance(seconds: Int64) { now.add(seconds * 1_000_000, ordering: .relaxed) }
}

@Suite("resolution map: reading responses")
struct ResolutionExtractorTests {
    typealias Record = DNSWireBuilder.Record

    func observe(_ wire: [UInt8], seenAt: Int64 = 0) -> (observations: [ResolutionObservation], ignored: Int) {
        let message = wire.withUnsafeBytes { DNSMessage(parsing: $0) }
        var observations: [ResolutionObservation] = []
        let ignored = ResolutionExtractor.extract(from: message, seenAtMicros: seenAt, into: &observations)
        return (observations, ignored)
    }

    @Test("an A answer maps its address to the queried name, lowercased")
    func plainAnswer() throws {
        let result = observe(DNSWireBuilder.response(name: "WWW.Example.TEST", answers: [.a("WWW.Example.TEST", [192, 0, 2, 1], ttl: 90)]))
        #expect(result.observations.count == 1)
        let observation = try #require(result.observations.first)
        #expect(observation.address == IPAddressKey("192.0.2.1"))
        #expect(observation.name == "www.example.test")
        #expect(observation.chain == ["www.example.test"])
        #expect(observation.ttl == 90)
    }

    @Test("a CNAME chain in any order: the address maps to the queried name, with the chain and the smallest TTL")
    func cnameChain() throws {
        // Records deliberately out of order: the address first, then the CNAMEs backwards.
        let wire = DNSWireBuilder.response(name: "cdn7.rig.test", type: 28, answers: [
            .aaaa("host7.rig.test", [0xFD, 0, 0, 0x99] + [UInt8](repeating: 0, count: 11) + [7], ttl: 300),
            .cname("WWW7.rig.test", "host7.rig.test", ttl: 30),
            .cname("cdn7.rig.test", "www7.rig.test", ttl: 120),
        ])
        let observation = try #require(observe(wire).observations.first)
        #expect(observation.address == IPAddressKey("fd00:99::7"))
        #expect(observation.name == "cdn7.rig.test")
        #expect(observation.chain == ["cdn7.rig.test", "www7.rig.test", "host7.rig.test"])
        #expect(observation.ttl == 30)
    }

    @Test("a CNAME loop is cut and nothing outside the chain's end is mapped")
    func cnameLoop() {
        let wire = DNSWireBuilder.response(name: "a.test", answers: [
            .cname("a.test", "b.test"), .cname("b.test", "a.test"), .a("a.test", [192, 0, 2, 9]),
        ])
        let result = observe(wire)
        // The chain a → b stops before looping back; b owns no address, a's address is not the chain's end.
        #expect(result.observations.isEmpty)
        #expect(result.ignored == 1)
    }

    @Test("a chain longer than 16 hops is cut at 16")
    func longChain() {
        var answers: [Record] = (0..<20).map { .cname("n\($0).test", "n\($0 + 1).test") }
        answers.append(.a("n20.test", [192, 0, 2, 20]))
        let result = observe(DNSWireBuilder.response(name: "n0.test", answers: answers))
        #expect(result.observations.isEmpty)
        #expect(result.ignored == 1)
    }

    @Test("several addresses, out-of-chain addresses ignored and counted")
    func severalAddresses() {
        let wire = DNSWireBuilder.response(name: "multi.test", answers: [
            .a("multi.test", [192, 0, 2, 1]), .a("multi.test", [192, 0, 2, 2]), .a("glue.other.test", [198, 51, 100, 1]),
        ])
        let result = observe(wire)
        #expect(Set(result.observations.map(\.address)) == [IPAddressKey("192.0.2.1")!, IPAddressKey("192.0.2.2")!])
        #expect(result.ignored == 1)
    }

    @Test("NXDOMAIN, queries and non-NOERROR answers teach nothing")
    func nothingToLearn() {
        #expect(observe(DNSWireBuilder.response(name: "x.test", rcode: 3, answers: [])).observations.isEmpty)
        #expect(observe(DNSWireBuilder.response(name: "x.test", rcode: 2, answers: [.a("x.test", [192, 0, 2, 1])])).observations.isEmpty)
        #expect(observe(DNSWireBuilder.query(name: "x.test")).observations.isEmpty)
    }

    @Test("the encoder collects facts only from client, resolver and forwarder responses")
    func encoderCollects() throws {
        var encoder = DnstapEventEncoder(collectResolutions: true)
        let types = [Dnstap_Message.TypeEnum.clientResponse, .resolverResponse, .forwarderResponse, .authResponse, .stubResponse]
        for (index, type) in types.enumerated() {
            let answer = DNSWireBuilder.response(name: "seen\(index).test", answers: [.a("seen\(index).test", [192, 0, 2, 44])])
            try encoder.append(frame: ByteBuffer(bytes: DnstapBuilder.message(type: type, response: answer)), receivedAtMicros: 5)
        }
        let collected = encoder.takeResolutions()
        #expect(collected.observations.count == 3)
        // The dnstap response time, not the receipt time, starts the TTL.
        #expect(collected.observations.allSatisfy { $0.seenAtMicros == 1_700_000_000_124_456 })
        #expect(encoder.takeResolutions().observations.isEmpty)
        #expect(encoder.takeEvents().count == 5)
    }

    @Test("the same answer again within the window (another ID, TTLs counted down, another connection) is not extracted again; after it, it is")
    func repeatsWithinTheWindow() throws {
        let recent = RecentResponses(slots: 64, windowSeconds: 5)
        var first = DnstapEventEncoder(collectResolutions: true, recentResponses: recent)
        var second = DnstapEventEncoder(collectResolutions: true, recentResponses: recent)  // another connection
        func frame(id: UInt16, at seconds: UInt64, address: UInt8 = 7, ttl: UInt32 = 300) -> ByteBuffer {
            let answer = DNSWireBuilder.response(
                id: id, name: "www.popular.test",
                answers: [.cname("www.popular.test", "popular.test", ttl: ttl), .a("popular.test", [192, 0, 2, address], ttl: ttl)])
            return ByteBuffer(bytes: DnstapBuilder.message(type: .clientResponse, response: answer, responseTime: (seconds, 5)))
        }
        let t = UInt64(1_700_000_000)
        try first.append(frame: frame(id: 1, at: t), receivedAtMicros: 0)
        try first.append(frame: frame(id: 2, at: t), receivedAtMicros: 0)  // another ID: the same answer
        try second.append(frame: frame(id: 3, at: t + 4, ttl: 296), receivedAtMicros: 0)  // from a cache, 4 s on
        #expect(first.takeResolutions().observations.count == 1)
        #expect(second.takeResolutions().observations.isEmpty)
        try second.append(frame: frame(id: 4, at: t + 1, address: 8), receivedAtMicros: 0)  // a different answer
        try first.append(frame: frame(id: 5, at: t + 5, ttl: 295), receivedAtMicros: 0)  // the window has passed
        #expect(second.takeResolutions().observations.map(\.address) == [IPAddressKey("192.0.2.8")!])
        let renewed = first.takeResolutions().observations
        #expect(renewed.map(\.address) == [IPAddressKey("192.0.2.7")!])
        #expect(renewed.first?.ttl == 295 && renewed.first?.seenAtMicros == Int64(t + 5) * 1_000_000)
        #expect(first.takeEvents().count == 3 && second.takeEvents().count == 2, "every response still gives its event")
    }

    @Test("a probe is checked later, after other probes; the ID and the answers' TTLs do not count, the rest does; no answer section gives no probe")
    func probeThenCheck() {
        let recent = RecentResponses(slots: 64, windowSeconds: 1)
        func check(_ bytes: [UInt8], second: Int64) -> Bool? {
            bytes.withUnsafeBytes { raw in
                var scratch = DNSParseScratch()
                let message = DNSWireMessage(parsing: raw, scratch: &scratch)
                return recent.probe(message).map { recent.seenBefore($0, second: second) }
            }
        }
        let response = DNSWireBuilder.response(id: 1, name: "a.test", answers: [.a("a.test", [192, 0, 2, 1], ttl: 60)])
        let sameButIDAndTTL = DNSWireBuilder.response(id: 2, name: "a.test", answers: [.a("a.test", [192, 0, 2, 1], ttl: 59)])
        let otherAddress = DNSWireBuilder.response(id: 1, name: "a.test", answers: [.a("a.test", [192, 0, 2, 2], ttl: 60)])
        response.withUnsafeBytes { raw in
            sameButIDAndTTL.withUnsafeBytes { again in
                var scratch = DNSParseScratch()
                let early = recent.probe(DNSWireMessage(parsing: raw, scratch: &scratch))!
                let later = recent.probe(DNSWireMessage(parsing: again, scratch: &scratch))!  // probed before the first is checked
                #expect(!recent.seenBefore(early, second: 100))
                #expect(recent.seenBefore(later, second: 100))
            }
        }
        #expect(check(otherAddress, second: 100) == false)
        #expect(check(sameButIDAndTTL, second: 101) == false, "a window of one second: the next second records it again")
        #expect(check(response, second: 101) == true)
        #expect(check([1, 2, 3], second: 100) == nil, "too short for a header")
    }
}

@Suite("resolution map: expiry, bound, concurrency")
struct ResolutionMapTests {
    func observation(_ address: String, _ name: String, ttl: UInt32 = 300, at clock: ManualClock, chain: [String]? = nil) -> ResolutionObservation {
        ResolutionObservation(
            address: IPAddressKey(address)!, name: name, targets: Array((chain ?? [name]).dropFirst()), ttl: ttl, seenAtMicros: clock.micros)
    }

    func map(capacity: Int = 1000, floor: Int64 = 0, ceiling: Int64 = 86_400, clock: ManualClock) -> ResolutionMap {
        var settings = ResolutionMapSettings()
        settings.capacity = capacity
        settings.ttlFloor = .seconds(floor)
        settings.ttlCeiling = .seconds(ceiling)
        return ResolutionMap(settings: settings, clock: { clock.micros })
    }

    @Test("an entry expires by its TTL, and the sweep removes it")
    func ttlExpiry() {
        let clock = ManualClock()
        let map = map(clock: clock)
        map.record([observation("192.0.2.1", "short.test", ttl: 30, at: clock), observation("192.0.2.2", "long.test", ttl: 600, at: clock)])
        #expect(map.lookup(IPAddressKey("192.0.2.1")!)?.map(\.name) == ["short.test"])
        clock.advance(seconds: 31)
        #expect(map.lookup(IPAddressKey("192.0.2.1")!) == nil)
        #expect(map.lookup(IPAddressKey("192.0.2.2")!)?.map(\.name) == ["long.test"])
        #expect(map.statistics.entries == 2)
        #expect(map.sweep() == 1)
        #expect(map.statistics.entries == 1)
        #expect(map.statistics.expirations == 1)
    }

    @Test("TTL floor and ceiling")
    func floorAndCeiling() throws {
        let clock = ManualClock()
        let map = map(floor: 60, ceiling: 3600, clock: clock)
        map.record([observation("192.0.2.1", "zero.test", ttl: 0, at: clock), observation("192.0.2.2", "week.test", ttl: 604_800, at: clock)])
        let zero = try #require(map.lookup(IPAddressKey("192.0.2.1")!)?.first)
        #expect(zero.expiresAtMicros == clock.micros + 60_000_000)
        let week = try #require(map.lookup(IPAddressKey("192.0.2.2")!)?.first)
        #expect(week.expiresAtMicros == clock.micros + 3_600_000_000)
    }

    @Test("an address keeps several names; seeing one again renews it")
    func severalNames() throws {
        let clock = ManualClock()
        let map = map(clock: clock)
        map.record([observation("2001:db8::1", "a.cdn.test", ttl: 100, at: clock)])
        clock.advance(seconds: 10)
        map.record([observation("2001:db8::1", "b.cdn.test", ttl: 100, at: clock)])
        let names = try #require(map.lookup(IPAddressKey("2001:db8::1")!))
        #expect(names.map(\.name) == ["b.cdn.test", "a.cdn.test"])  // most recently seen first
        clock.advance(seconds: 95)
        map.record([observation("2001:db8::1", "b.cdn.test", ttl: 100, at: clock)])
        // a.cdn.test expired (105 s after it was seen with TTL 100); b was renewed.
        #expect(map.lookup(IPAddressKey("2001:db8::1")!)?.map(\.name) == ["b.cdn.test"])
        #expect(map.statistics.entries == 1)
    }

    @Test("names per address are capped: the one expiring first goes")
    func namesPerAddressCap() throws {
        let clock = ManualClock()
        var settings = ResolutionMapSettings()
        settings.namesPerAddress = 3
        settings.ttlFloor = .zero
        let map = ResolutionMap(settings: settings, clock: { clock.micros })
        for (index, ttl) in [500, 100, 400, 300].enumerated() {
            map.record([observation("192.0.2.7", "n\(index).test", ttl: UInt32(ttl), at: clock)])
        }
        let names = try #require(map.lookup(IPAddressKey("192.0.2.7")!))
        #expect(Set(names.map(\.name)) == ["n0.test", "n2.test", "n3.test"])
    }

    @Test("the map never holds more than its capacity: the least recently seen address is evicted")
    func boundAndEviction() {
        let clock = ManualClock()
        // One shard's worth: 16 shards × 4 = 64 addresses at most.
        let map = map(capacity: 64, clock: clock)
        let addresses = (0..<1000).map { "10.0.\($0 / 256).\($0 % 256)" }
        map.record([observation(addresses[0], "keep.test", at: clock)])
        for (index, address) in addresses.enumerated().dropFirst() {
            map.record([observation(address, "host\(index).test", at: clock)])
            // Keep the first address recently seen: it must survive every eviction.
            map.record([observation(addresses[0], "keep.test", at: clock)])
        }
        let statistics = map.statistics
        #expect(statistics.entries <= 64)
        #expect(statistics.entries >= 48)
        #expect(statistics.insertions == 1000)
        #expect(statistics.evictions == statistics.insertions - statistics.entries)
        #expect(map.lookup(IPAddressKey(addresses[0])!)?.map(\.name) == ["keep.test"])
        #expect(map.lookup(IPAddressKey(addresses[999])!)?.map(\.name) == ["host999.test"])
        #expect(map.lookup(IPAddressKey(addresses[1])!) == nil)
    }

    @Test("IPv4 and IPv6 keys parse, print and reject junk")
    func addressKeys() {
        #expect(IPAddressKey("192.0.2.1")?.description == "192.0.2.1")
        #expect(IPAddressKey("2001:DB8::1")?.description == "2001:db8::1")
        #expect(IPAddressKey("::ffff:192.0.2.1") == IPAddressKey("192.0.2.1"))
        for junk in ["", "example.com", "300.1.1.1", "1.2.3", "::g", "192.0.2.1/24", String(repeating: "1", count: 100)] {
            #expect(IPAddressKey(junk) == nil, "\(junk)")
        }
    }

    @Test("concurrent recording and lookups stay consistent")
    func concurrency() async {
        let clock = ManualClock()
        let map = map(capacity: 10_000, clock: clock)
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for index in 0..<2000 {
                        let address = "10.\(worker).\(index / 256).\(index % 256)"
                        map.record([self.observation(address, "w\(worker)-\(index).test", at: clock)])
                        _ = map.lookup(IPAddressKey(address)!)
                    }
                }
            }
        }
        #expect(map.statistics.entries <= 10_000)
        #expect(map.statistics.insertions == 16_000)
        #expect(map.statistics.entries == 16_000 - map.statistics.evictions)
    }
}
