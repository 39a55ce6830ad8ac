import CDnstapProtobufC

/// The mapping from a dnstap message (as libprotobuf-c decoded it) to the event's fields (README,
/// "Output schema"). Names follow Splunk CIM's Network Resolution model where one fits.
enum DnstapEventFields {
    /// Writes the fields of one event; returns the event's time in microseconds and what the
    /// filter needs (`facts`; the question's name there only `forFilter`). `joined`: a response that
    /// `-transactions` joins with its query. With `recent`,
    /// the address facts of a client/resolver/forwarder response go to `resolutions`, unless the
    /// same response was already taken this second.
    static func write(
        _ dnstap: UnsafePointer<Dnstap__Dnstap>, receivedAtMicros: Int64, sender: String?, into json: JSONObjectWriter,
        scratch: inout DNSParseScratch, resolutions: inout ResolutionCollector, recent: RecentResponses?,
        joined: Bool = false, forFilter: Bool = false, facts: inout EventFacts
    ) -> Int64 {
        let dnstap = dnstap.pointee
        let message = dnstap.message.map { UnsafePointer($0) }
        let messageType = message.map { MessageTypeInfo($0.pointee) }
        let queryTime = message.flatMap { queryMicros($0.pointee) }
        let responseTime = message.flatMap {
            $0.pointee.has_response_time_sec != 0 ? micros($0.pointee.response_time_sec, $0.pointee.response_time_nsec) : nil
        }
        let eventTime: Int64 =
            (messageType?.isQuery == true ? queryTime : responseTime ?? queryTime) ?? receivedAtMicros

        json.field("timestamp", timestampMicros: eventTime)
        if let messageType {
            facts.typeName = messageType.name
            facts.isQuery = messageType.isQuery
            if let staticName = messageType.staticName {
                json.field("dnstap_type", static: staticName)
            } else {
                json.field("dnstap_type", messageType.name)
            }
            if let isQuery = messageType.isQuery {
                json.field("message_type", static: isQuery ? "Query" : "Response")
            }
        } else {
            // Dnstap.type MESSAGE (1) with no message; any other value is newer than this build.
            let type = dnstap.has_type != 0 ? Int32(bitPattern: dnstap.type.rawValue) : 0
            facts.typeName = type == 1 ? "NO_MESSAGE" : "UNKNOWN(\(type))"
            json.field("dnstap_type", type == 1 ? "NO_MESSAGE" : "UNKNOWN(\(type))")
        }
        scratch.sources.write(
            identity: dnstap.has_identity != 0 ? dnstap.identity.bytes : nil, sender: sender,
            version: dnstap.has_version != 0 ? dnstap.version.bytes : nil, extra: dnstap.has_extra != 0 ? dnstap.extra.bytes : nil,
            into: json)
        guard let message else { return eventTime }
        let fields = message.pointee

        writeTransport(fields, into: json)
        if fields.has_query_address != 0 { json.field("src", address: fields.query_address.bytes) }
        if fields.has_query_port != 0 { json.field("src_port", fields.query_port) }
        if fields.has_response_address != 0 { json.field("dest", address: fields.response_address.bytes) }
        if fields.has_response_port != 0 { json.field("dest_port", fields.response_port) }
        if let queryTime {
            json.field("query_timestamp", timestampMicros: queryTime)
            facts.wroteQueryTime = true
        }
        // A response joined with its query (`-transactions`) leaves it out: it is the `timestamp`.
        if let responseTime, !joined { json.field("response_timestamp", timestampMicros: responseTime) }
        if let queryTime, let responseTime, messageType?.isQuery == false {
            json.field("duration", micros: responseTime - queryTime)
            facts.wroteDuration = true
        }
        if fields.has_query_zone != 0 {
            let zone = fields.query_zone.bytes
            json.field("query_zone", WireName.render(zone) ?? "\\# " + DNSRecordRenderer.hex(zone))
        }
        if let policy = fields.policy { writePolicy(policy.pointee, into: json) }

        // The DNS message: the response for response types, else the query.
        let wire: UnsafeRawBufferPointer?
        if messageType?.isQuery == false && fields.has_response_message != 0 {
            wire = fields.response_message.bytes
        } else if fields.has_query_message != 0 {
            wire = fields.query_message.bytes
        } else if fields.has_response_message != 0 {
            wire = fields.response_message.bytes
        } else {
            wire = nil
        }
        if let wire {
            let dns = DNSWireMessage(parsing: wire, scratch: &scratch)
            // A response the map may learn from: its slot in the recent-responses table is fetched
            // while the message is written.
            let probe = messageType?.feedsResolutionMap == true && fields.has_response_message != 0 ? recent?.probe(dns) : nil
            DNSEventFields.write(dns, size: wire.count, into: json)
            facts.note(dns, withName: forFilter, names: &scratch.names)
            if let recent, let probe {
                let seenAt = responseTime ?? receivedAtMicros
                if !recent.seenBefore(probe, second: seenAt / 1_000_000) {
                    resolutions.ignored += ResolutionExtractor.extract(
                        from: dns, names: &scratch.names, seenAtMicros: seenAt, into: &resolutions.observations)
                }
            }
            dns.recycle(into: &scratch)
        }
        return eventTime
    }

    /// The time of a query's event (as `write` returns it), without writing it.
    static func queryEventTime(_ message: Dnstap__Message, receivedAtMicros: Int64) -> Int64 {
        queryMicros(message) ?? receivedAtMicros
    }

    private static func queryMicros(_ message: Dnstap__Message) -> Int64? {
        message.has_query_time_sec != 0 ? micros(message.query_time_sec, message.query_time_nsec) : nil
    }

    private static func micros(_ seconds: UInt64, _ nanos: UInt32) -> Int64 {
        let clampedSeconds = Int64(clamping: min(seconds, 9_999_999_999))  // year 2286: past any real clock
        return clampedSeconds * 1_000_000 + Int64(min(nanos, 999_999_999) / 1000)
    }

    private static func writeTransport(_ message: Dnstap__Message, into json: JSONObjectWriter) {
        if message.has_socket_family != 0 { writeSocketFamily(message.socket_family.rawValue, into: json) }
        if message.has_socket_protocol != 0 { writeSocketProtocol(message.socket_protocol.rawValue, into: json) }
        if message.has_http_protocol != 0 { writeHTTPProtocol(message.http_protocol.rawValue, into: json) }
    }

    // The enums' numbers are the same in dnstap and in PowerDNS's protobuf logging.

    static func writeSocketFamily(_ raw: UInt32, into json: JSONObjectWriter) {
        switch raw {
        case 1: json.field("socket_family", static: "INET")
        case 2: json.field("socket_family", static: "INET6")
        default: json.field("socket_family", "UNKNOWN(\(Int32(bitPattern: raw)))")
        }
    }

    static func writeSocketProtocol(_ raw: UInt32, into json: JSONObjectWriter) {
        let name: StaticString
        switch raw {
        case 1: name = "udp"
        case 2: name = "tcp"
        case 3: name = "dot"
        case 4: name = "doh"
        case 5: name = "dnscrypt-udp"
        case 6: name = "dnscrypt-tcp"
        case 7: name = "doq"
        default: return json.field("transport", "unknown(\(Int32(bitPattern: raw)))")
        }
        json.field("transport", static: name)
    }

    static func writeHTTPProtocol(_ raw: UInt32, into json: JSONObjectWriter) {
        switch raw {
        case 1: json.field("http_protocol", static: "HTTP1")
        case 2: json.field("http_protocol", static: "HTTP2")
        case 3: json.field("http_protocol", static: "HTTP3")
        default: json.field("http_protocol", "UNKNOWN(\(Int32(bitPattern: raw)))")
        }
    }

    private static let policyActions = ["NXDOMAIN", "NODATA", "PASS", "DROP", "TRUNCATE", "LOCAL_DATA"]
    private static let policyMatches = ["QNAME", "CLIENT_IP", "RESPONSE_IP", "NS_NAME", "NS_IP"]

    private static func enumName(_ raw: UInt32, _ names: [String]) -> String {
        let value = Int32(bitPattern: raw)
        return value >= 1 && Int(value) <= names.count ? names[Int(value) - 1] : "UNKNOWN(\(value))"
    }

    private static func writePolicy(_ policy: Dnstap__Policy, into json: JSONObjectWriter) {
        if policy.has_type != 0 { json.field("policy_type", bytes: policy.type.bytes) }
        if policy.has_rule != 0 {
            let rule = policy.rule.bytes
            json.field("policy_rule", WireName.render(rule) ?? DNSRecordRenderer.hex(rule))
        }
        if policy.has_action != 0 { json.field("policy_action", enumName(policy.action.rawValue, policyActions)) }
        if policy.has_match != 0 { json.field("policy_match", enumName(policy.match.rawValue, policyMatches)) }
        if policy.has_value != 0 {
            let value = policy.value.bytes
            // CLIENT_IP, RESPONSE_IP, NS_IP: an address.
            let addressMatch = policy.has_match != 0 && [2, 3, 5].contains(policy.match.rawValue)
            switch (addressMatch, value.count) {
            case (true, 4): json.field("policy_value", IPAddressFormatter.string(fromIPv4: value))
            case (true, 16): json.field("policy_value", IPAddressFormatter.string(fromIPv6: value))
            default: json.field("policy_value", DNSRecordRenderer.hex(value))
            }
        }
    }
}

extension ProtobufCBinaryData {
    /// The bytes (owned by the decoder's arena: valid until its next decode).
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: data, count: len) }
}

/// Describes a dnstap Message.Type, including values newer than this build knows.
struct MessageTypeInfo {
    let name: String
    /// The same for the types this build knows, to write without scanning a String.
    let staticName: StaticString?
    /// true for *_QUERY, false for *_RESPONSE, nil when unknown.
    let isQuery: Bool?
    /// CLIENT_, RESOLVER_ and FORWARDER_RESPONSE: the responses the resolution map learns from.
    let feedsResolutionMap: Bool

    init(_ message: Dnstap__Message) {
        // A missing type (the field is required, but decoded leniently) reads as 0: unknown.
        let raw = message.has_type != 0 ? Int32(bitPattern: message.type.rawValue) : 0
        if raw >= 1 && Int(raw) <= Self.names.count {
            name = Self.names[Int(raw) - 1]
            staticName = Self.staticNames[Int(raw) - 1]
            isQuery = raw % 2 == 1
            feedsResolutionMap = raw == 4 || raw == 6 || raw == 8
        } else {
            name = "UNKNOWN(\(raw))"
            staticName = nil
            isQuery = nil
            feedsResolutionMap = false
        }
    }

    private static let names = staticNames.map { "\($0)" }
    private static let staticNames: [StaticString] = [
        "AUTH_QUERY", "AUTH_RESPONSE", "RESOLVER_QUERY", "RESOLVER_RESPONSE", "CLIENT_QUERY", "CLIENT_RESPONSE",
        "FORWARDER_QUERY", "FORWARDER_RESPONSE", "STUB_QUERY", "STUB_RESPONSE", "TOOL_QUERY", "TOOL_RESPONSE",
        "UPDATE_QUERY", "UPDATE_RESPONSE",
    ]
}

/// Renders an uncompressed wire-format name (query_zone, Policy.rule), where pointers are illegal.
enum WireName {
    static func render(_ bytes: UnsafeRawBufferPointer) -> String? {
        var builder = DNSNames.NameBuilder()
        var position = 0
        while position < bytes.count {
            let length = Int(bytes[position])
            if length == 0 { return position == bytes.count - 1 ? builder.finish() : nil }
            guard length < 64, position + 1 + length < bytes.count else { return nil }
            builder.appendLabel(UnsafeRawBufferPointer(rebasing: bytes[(position + 1)..<(position + 1 + length)]))
            position += 1 + length
        }
        return nil
    }
}
