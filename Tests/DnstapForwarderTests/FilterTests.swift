import DnstapForwarderTesting
import Foundation
import Logging

import NIOCore
import Testing

@testable import DnstapForwarder

/// The filters (`-message-types`, `-drop-names-file`, `-keep-names-file`, `-sample-rate`), without I/O.
@Suite("filters and sampling")
struct FilterTests {
    @Test("a name matches itself and every name under it, case-insensitively; not a name that only ends the same")
    func suffixSet() {
        let set = NameSuffixSet(["Example.COM.", "*.ads.test", "b.example.org", "tracker.example.net"])
        #expect(set.count == 4)
        for name in ["example.com", "www.example.com", "WWW.EXAMPLE.com", "a.b.c.example.com", "ads.test", "x.ads.test", "b.example.org"] {
            #expect(set.containsNameOrParent(of: name), "\(name)")
        }
        for name in ["notexample.com", "com", "example.co", "ads.tes", "example.org", "a\\.b.example.org", "example.net", "net", ""] {
            #expect(!set.containsNameOrParent(of: name), "\(name)")
        }
        #expect(NameSuffixSet(["a.test", "A.TEST."]).count == 1, "the same name twice is one")
        #expect(NameSuffixSet(["."]).containsNameOrParent(of: "anything.at.all"), "the root holds every name")
        #expect(!NameSuffixSet().containsNameOrParent(of: "example.com"))
    }

    @Test("100,000 names: each is found, and so is every name under it; others are not")
    func manyNames() {
        let names = (0..<100_000).map { "host\($0).zone\($0 % 97).example" }
        let set = NameSuffixSet(names)
        #expect(set.count == 100_000)
        for index in stride(from: 0, to: 100_000, by: 997) {
            #expect(set.containsNameOrParent(of: "www.host\(index).zone\(index % 97).example"))
            #expect(!set.containsNameOrParent(of: "host\(index).zone\((index + 1) % 97).example"))
        }
    }

    static func facts(_ type: String, _ name: String?, rcode: UInt32? = nil) -> EventFacts {
        EventFacts(typeName: type, questionName: name, rcode: rcode)
    }

    @Test("message types, then dropped names, then kept names: each refusal names its filter")
    func verdicts() {
        var settings = FilterSettings()
        settings.messageTypes = ["CLIENT_RESPONSE"]
        let drop = NameSuffixSet(["noise.test"])
        let keep = NameSuffixSet(["corp.test"])
        func verdict(_ facts: EventFacts) -> FilterVerdict { EventFilter.verdict(facts, settings: settings, drop: drop, keep: keep) }
        #expect(verdict(Self.facts("CLIENT_QUERY", "a.corp.test")) == .drop(.messageType))
        #expect(verdict(Self.facts("CLIENT_RESPONSE", "a.noise.test")) == .drop(.dropNames))
        #expect(verdict(Self.facts("CLIENT_RESPONSE", "a.other.test")) == .drop(.keepNames))
        #expect(verdict(Self.facts("CLIENT_RESPONSE", nil)) == .drop(.keepNames), "no question: not one of the names to keep")
        #expect(verdict(Self.facts("CLIENT_RESPONSE", "www.corp.test")) == .keep)
        settings.messageTypes = nil
        #expect(EventFilter.verdict(Self.facts("CLIENT_QUERY", nil), settings: settings, drop: drop, keep: nil) == .keep)
    }

    @Test("sampling keeps about one name in N, the same names for queries and responses; an error answer is always kept")
    func sampling() {
        var settings = FilterSettings()
        settings.sampleRate = 10
        var kept = 0
        for index in 0..<20_000 {
            let name = "name\(index).sample.test"
            let query = EventFilter.verdict(Self.facts("CLIENT_QUERY", name), settings: settings, drop: nil, keep: nil)
            let response = EventFilter.verdict(Self.facts("CLIENT_RESPONSE", name.uppercased(), rcode: 0), settings: settings, drop: nil, keep: nil)
            #expect(query == response, "\(name): a name's messages are kept or left out together")
            if query == .keepSampled(rate: 10) { kept += 1 } else { #expect(query == .drop(.sample)) }
            let failure = EventFilter.verdict(Self.facts("CLIENT_RESPONSE", name, rcode: 3), settings: settings, drop: nil, keep: nil)
            #expect(failure == .keepSampled(rate: 10))
        }
        #expect(kept > 1_600 && kept < 2_400, "about a tenth kept: \(kept)")
    }

    @Test("the encoder leaves out what the filter refuses (no bytes of it remain), marks sampled events, and counts by filter")
    func encoder() throws {
        var settings = FilterSettings()
        settings.sampleRate = 1
        settings.messageTypes = ["CLIENT_RESPONSE"]
        var encoder = DnstapEventEncoder()
        encoder.filter = (settings, NameSuffixSet(["drop.test"]), nil)
        for name in ["a.keep.test", "b.drop.test", "c.keep.test"] {
            for payload in DnstapBuilder.pair(name: name, id: 7) {
                try encoder.append(frame: ByteBuffer(bytes: payload), receivedAtMicros: 1)
            }
        }
        let events = encoder.takeEvents()
        let queries = events.map { try! JSONSerialization.jsonObject(with: Data($0.json.readableBytesView)) as! [String: Any] }
        #expect(queries.map { $0["query"] as? String } == ["a.keep.test", "c.keep.test"])
        #expect(queries.allSatisfy { $0["dnstap_type"] as? String == "CLIENT_RESPONSE" && $0["sample_rate"] == nil })
        #expect(encoder.takeFiltered() == [.messageType: 3, .dropNames: 1])
        #expect(encoder.takeFiltered().isEmpty)

        settings.messageTypes = nil
        settings.sampleRate = 1_000_000
        encoder.filter = (settings, nil, nil)
        try encoder.append(frame: ByteBuffer(bytes: DnstapBuilder.pair(name: "x.test", id: 1)[1]), receivedAtMicros: 1)
        let nxdomain = DnstapBuilder.message(
            type: .clientResponse, response: DNSWireBuilder.response(id: 2, name: "y.test", rcode: 3, answers: []))
        try encoder.append(frame: ByteBuffer(bytes: nxdomain), receivedAtMicros: 1)
        let sampled = encoder.takeEvents().map { try! JSONSerialization.jsonObject(with: Data($0.json.readableBytesView)) as! [String: Any] }
        #expect(sampled.contains { $0["query"] as? String == "y.test" && $0["sample_rate"] as? Int == 1_000_000 }, "\(sampled)")
    }

    @Test("a names file: one name a line, comments and blank lines skipped; read again on reload, the old names kept if it cannot be read")
    func namesFile() throws {
        let path = NSTemporaryDirectory() + "names-\(UInt64.random(in: 0...UInt64.max)).txt"
        try "# ad networks\nads.test\n\n  tracker.test.   # with a comment\n*.cdn.test\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        var settings = FilterSettings()
        settings.dropNamesFile = path
        let filter = try EventFilter(settings: settings)
        #expect(filter.loadedCounts.drop == 3)
        #expect(filter.snapshot().drop?.containsNameOrParent(of: "x.tracker.test") == true)
        try "other.test\n".write(toFile: path, atomically: true, encoding: .utf8)
        filter.reload(logger: Logger(label: "test"))
        #expect(filter.loadedCounts.drop == 1)
        #expect(filter.snapshot().drop?.containsNameOrParent(of: "x.tracker.test") == false)
        try FileManager.default.removeItem(atPath: path)
        filter.reload(logger: Logger(label: "test"))
        #expect(filter.loadedCounts.drop == 1, "the names in use stay")
        settings.dropNamesFile = path
        #expect(throws: NamesFileError.self) { try EventFilter(settings: settings) }
    }

    @Test("-message-types takes known types only; -sample-rate at least 1")
    func settings() throws {
        let configuration = try ForwarderConfiguration.resolve(
            flags: [.messageTypes: "client_query, CLIENT_RESPONSE", .sampleRate: "8"], environment: [:])
        #expect(configuration.filters.messageTypes == ["CLIENT_QUERY", "CLIENT_RESPONSE"])
        #expect(configuration.filters.sampleRate == 8)
        #expect(throws: ConfigurationError.self) { try ForwarderConfiguration.resolve(flags: [.messageTypes: "CLIENT_QUERIES"], environment: [:]) }
        #expect(throws: ConfigurationError.self) { try ForwarderConfiguration.resolve(flags: [.sampleRate: "0"], environment: [:]) }
        let fromEnvironment = try ForwarderConfiguration.resolve(flags: [:], environment: ["DNSTAP_DROP_NAMES_FILE": "/etc/drop.txt"])
        #expect(fromEnvironment.filters.dropNamesFile == "/etc/drop.txt")
        #expect(!(try ForwarderConfiguration.resolve(flags: [:], environment: [:])).filters.isActive)
    }
}

/// The bound on per-sender series.
@Suite("per-sender series bound")
struct SenderSeriesBoundTests {
    @Test("past the limit, new senders share sender=\"other\" (noted once); known ones keep theirs; 0 turns them off")
    func bound() {
        let senders = SenderSeries(limit: 2)
        #expect(senders.series(for: "a")?.folded == false)
        #expect(senders.series(for: "b")?.folded == false)
        #expect(senders.series(for: "c")?.folded == true)
        #expect(senders.series(for: "d")?.folded == true)
        #expect(senders.series(for: "a")?.folded == false)
        #expect(senders.series(for: "other")?.folded == true)
        #expect(senders.count == 3, "a, b and other")
        #expect(senders.noteOverflow())
        #expect(!senders.noteOverflow())
        #expect(SenderSeries(limit: 0).series(for: "a") == nil)
    }
}
