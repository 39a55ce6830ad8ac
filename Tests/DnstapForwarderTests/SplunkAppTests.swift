import DnstapForwarderTesting
import Foundation
import NIOCore
import Testing

@testable import DnstapForwarder

/// config/splunk/TA-dnstap-forwarder: its .conf files parse, the events get the CIM tags, and every
/// field its settings and dashboard name is one the forwarder writes.
@Suite("Splunk app")
struct SplunkAppTests {
    static let app = DocumentationTests.root.appendingPathComponent("config/splunk/TA-dnstap-forwarder")

    /// A .conf file: stanzas of `key = value`, `#` comments; anything else is an error.
    static func parse(_ relativePath: String) throws -> [String: [String: String]] {
        let text = try String(contentsOf: app.appendingPathComponent(relativePath), encoding: .utf8)
        var stanzas: [String: [String: String]] = [:]
        var current: String?
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("[") {
                try #require(line.hasSuffix("]"), "\(relativePath):\(number + 1): a stanza header: \(line)")
                current = String(line.dropFirst().dropLast())
                stanzas[current!, default: [:]] = stanzas[current!] ?? [:]
                continue
            }
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            try #require(parts.count == 2 && !parts[0].isEmpty, "\(relativePath):\(number + 1): not key = value: \(line)")
            let stanza = try #require(current, "\(relativePath):\(number + 1): a setting before any stanza")
            try #require(stanzas[stanza]?[parts[0]] == nil, "\(relativePath):\(number + 1): \(parts[0]) set twice")
            stanzas[stanza]![parts[0]] = parts[1]
        }
        return stanzas
    }

    /// The fields of real events: dnstap client queries and responses (answers, EDNS, sampled) and
    /// PowerDNS messages, as the encoder writes them.
    static func forwarderFields() throws -> Set<String> {
        var encoder = DnstapEventEncoder()
        encoder.sender = "127.0.0.1"
        var settings = FilterSettings()
        settings.sampleRate = 1
        for payload in DnstapBuilder.pair(name: "a.test", id: 1) {
            try encoder.append(frame: ByteBuffer(bytes: payload), receivedAtMicros: 1)
        }
        let edns = DnstapBuilder.message(
            type: .clientResponse, response: DNSWireBuilder.response(id: 2, name: "b.test", rcode: 3, answers: [], edns: true))
        settings.sampleRate = 2
        encoder.filter = (settings, nil, nil)
        try encoder.append(frame: ByteBuffer(bytes: edns), receivedAtMicros: 1)
        encoder.filter = nil
        try encoder.append(powerDNS: ByteBuffer(bytes: try PowerDNSTests.clientResponse().serializedBytes() as [UInt8]), receivedAtMicros: 1)
        var fields = Set<String>()
        for event in encoder.takeEvents() {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(event.json.readableBytesView)) as? [String: Any])
            fields.formUnion(object.keys)
        }
        return fields
    }

    /// Splunk's own fields and the words of SPL that look like fields in a search.
    static let splunkNames: Set<String> = ["sourcetype", "eventtype", "source", "host", "index", "limit", "count"]

    /// The field names a search refers to: `f=`, `f IN (`, `by f`, `top limit=N f`, `avg(f)` and the like.
    static func fields(inSearch search: String) -> Set<String> {
        let patterns = [
            #"\b([a-z_]+)\s*(?:=|!=)"#, #"\b([a-z_]+) IN \("#, #"\bby ([a-z_]+)"#, #"\btop (?:limit=\d+ )?([a-z_]+)"#,
            #"\b(?:avg|p95|p99|dc|max|min|sum|values)\(([a-z_]+)\)"#, #"\bisnull\(([a-z_]+)\)"#,
        ]
        var found = Set<String>()
        for pattern in patterns {
            let expression = try! NSRegularExpression(pattern: pattern)
            for match in expression.matches(in: search, range: NSRange(search.startIndex..., in: search)) {
                if let range = Range(match.range(at: 1), in: search) { found.insert(String(search[range])) }
            }
        }
        return found.subtracting(splunkNames)
    }

    @Test("the sourcetype is the forwarder's default, its events are tagged network, resolution and dns")
    func tags() throws {
        let props = try Self.parse("default/props.conf")
        let sourcetype = try #require(Setting.splunkSourcetype.defaultValue)
        let stanza = try #require(props[sourcetype], "props.conf has no [\(sourcetype)]")
        #expect(stanza["KV_MODE"] == "json")
        #expect(stanza["TIME_PREFIX"] == #""timestamp":""#)
        #expect(stanza["TIME_FORMAT"] == "%Y-%m-%dT%H:%M:%S.%6NZ")
        let eventtypes = try Self.parse("default/eventtypes.conf")
        #expect(eventtypes["dnstap_dns"]?["search"] == "sourcetype=\(sourcetype)")
        let tags = try Self.parse("default/tags.conf")
        #expect(tags["eventtype=dnstap_dns"] == ["network": "enabled", "resolution": "enabled", "dns": "enabled"])
        #expect(try Self.parse("default/app.conf")["package"]?["id"] == "TA-dnstap-forwarder")
        #expect(try Self.parse("metadata/default.meta")[""]?["export"] == "system")
    }

    @Test("every field the app names (aliases, evaluations, searches, the dashboard) is one the forwarder writes")
    func fieldsExist() throws {
        let written = try Self.forwarderFields()
        // A sanity check of the check: the CIM fields the events carry are there.
        for field in ["query", "record_type", "reply_code", "src", "dest", "answer", "duration", "sender", "sample_rate", "message_id"] {
            #expect(written.contains(field), "\(field) not in \(written.sorted())")
        }
        var named: [(String, String)] = []
        let props = try Self.parse("default/props.conf")
        for (key, value) in props["dnstap"] ?? [:] {
            if key.hasPrefix("FIELDALIAS-") {
                let parts = value.components(separatedBy: " AS ")
                try #require(parts.count == 2, "\(key): not `field AS alias`")
                named.append((key, parts[0].trimmingCharacters(in: .whitespaces)))
            } else if key.hasPrefix("EVAL-") {
                named += Self.fields(inSearch: value).map { (key, $0) }
            }
        }
        for (name, stanza) in try Self.parse("default/eventtypes.conf") {
            named += Self.fields(inSearch: stanza["search"] ?? "").map { ("eventtype \(name)", $0) }
        }
        let dashboard = try String(contentsOf: Self.app.appendingPathComponent("default/data/ui/views/dnstap_overview.xml"), encoding: .utf8)
        let queries = dashboard.components(separatedBy: "<query>").dropFirst().map { $0.components(separatedBy: "</query>")[0] }
        #expect(queries.count >= 5)
        for query in queries {
            let decoded = query.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            named += Self.fields(inSearch: decoded).map { ("dashboard: \(decoded)", $0) }
        }
        #expect(named.count >= 10)
        for (where_, field) in named {
            #expect(written.contains(field), "\(where_) names \(field), which the forwarder does not write")
        }
        // The check can fail: a field the forwarder does not write is caught.
        #expect(!Self.fields(inSearch: "eventtype=dnstap_dns | top limit=5 query_name").isSubset(of: written))
    }
}
