import Foundation
import SwiftProtobuf

/// The mapping from a dnstap message to the event's fields (README, "Output schema").
/// Names follow Splunk CIM's Network Resolution model where one fits.
enum DnstapEventFields {
    /// Writes the fields of one event; returns the event's time in microseconds. With
    /// `collectResolutions`, the address facts of a client/resolver/forwarder response go to it.
    static func write(
        _ dnstap: Dnstap_Dnstap, receivedAtMicros: Int64, into json: JSONObjectWriter,
        resolutions: inout ResolutionCollector, collectResolutions: Bool
    ) -> Int64 {
        let message = dnstap.message
        let messageType = dnstap.hasMessage ? MessageTypeInfo(message) : nil
        let queryTime = message.hasQueryTimeSec ? micros(message.queryTimeSec, message.queryTimeNsec) : nil
        let responseTime = message.hasResponseTimeSec ? micros(message.responseTimeSec, message.responseTimeNsec) : nil
        let eventTime: Int64 =
            (messageType?.isQuery == true ? queryTime : responseTime ?? queryTime) ?? receivedAtMicros

        json.field("timestamp", timestampMicros: eventTime)
        if let messageType {
            json.field("dnstap_type", messageType.name)
            if let isQuery = messageType.isQuery {
                json.field("message_type", static: isQuery ? "Query" : "Response")
            }
        } else {
            json.field("dnstap_type", dnstap.hasType ? "NO_MESSAGE" : "UNKNOWN(\(unknownEnum(dnstap.unknownFields, field: 15)))")
        }
        if dnstap.hasIdentity { dnstap.identity.withUnsafeBytes { json.field("identity", bytes: $0) } }
        if dnstap.hasVersion { dnstap.version.withUnsafeBytes { json.field("version", bytes: $0) } }
        if dnstap.hasExtra { dnstap.extra.withUnsafeBytes { json.field("extra", bytes: $0) } }
        guard dnstap.hasMessage else { return eventTime }

        writeTransport(message, into: json)
        writeAddress("src", message.hasQueryAddress ? message.queryAddress : nil, into: json)
        if message.hasQueryPort { json.field("src_port", message.queryPort) }
        writeAddress("dest", message.hasResponseAddress ? message.responseAddress : nil, into: json)
        if message.hasResponsePort { json.field("dest_port", message.responsePort) }
        if let queryTime { json.field("query_timestamp", timestampMicros: queryTime) }
        if let responseTime { json.field("response_timestamp", timestampMicros: responseTime) }
        if let queryTime, let responseTime, messageType?.isQuery == false {
            json.field("duration", micros: responseTime - queryTime)
        }
        if message.hasQueryZone {
            json.field("query_zone", WireName.render(message.queryZone) ?? "\\# " + DNSRecordRenderer.hex(message.queryZone))
        }
        if message.hasPolicy { writePolicy(message.policy, into: json) }

        // The DNS message: the response for response types, else the query.
        let wire: Data?
        if messageType?.isQuery == false && message.hasResponseMessage {
            wire = message.responseMessage
        } else if message.hasQueryMessage {
            wire = message.queryMessage
        } else if message.hasResponseMessage {
            wire = message.responseMessage
        } else {
            wire = nil
        }
        if let wire {
            let dns = wire.withUnsafeBytes { DNSMessage(parsing: $0) }
            DNSEventFields.write(dns, size: wire.count, into: json)
            if collectResolutions, messageType?.feedsResolutionMap == true, message.hasResponseMessage {
                resolutions.ignored += ResolutionExtractor.extract(
                    from: dns, seenAtMicros: responseTime ?? receivedAtMicros, into: &resolutions.observations)
            }
        }
        return eventTime
    }

    private static func micros(_ seconds: UInt64, _ nanos: UInt32) -> Int64 {
        let clampedSeconds = Int64(clamping: min(seconds, 9_999_999_999))  // year 2286: past any real clock
        return clampedSeconds * 1_000_000 + Int64(min(nanos, 999_999_999) / 1000)
    }

    private static func writeTransport(_ message: Dnstap_Message, into json: JSONObjectWriter) {
        if message.hasSocketFamily {
            json.field("socket_family", static: message.socketFamily == .inet6 ? "INET6" : "INET")
        } else if let raw = unknownEnumIfPresent(message.unknownFields, field: 2) {
            json.field("socket_family", "UNKNOWN(\(raw))")
        }
        if message.hasSocketProtocol {
            let name: StaticString
            switch message.socketProtocol {
            case .udp: name = "udp"
            case .tcp: name = "tcp"
            case .dot: name = "dot"
            case .doh: name = "doh"
            case .dnscryptUdp: name = "dnscrypt-udp"
            case .dnscryptTcp: name = "dnscrypt-tcp"
            case .doq: name = "doq"
            }
            json.field("transport", static: name)
        } else if let raw = unknownEnumIfPresent(message.unknownFields, field: 3) {
            json.field("transport", "unknown(\(raw))")
        }
        if message.hasHTTPProtocol {
            let name: StaticString
            switch message.httpProtocol {
            case .http1: name = "HTTP1"
            case .http2: name = "HTTP2"
            case .http3: name = "HTTP3"
            }
            json.field("http_protocol", static: name)
        }
    }

    private static func writeAddress(_ key: StaticString, _ bytes: Data?, into json: JSONObjectWriter) {
        guard let bytes else { return }
        bytes.withUnsafeBytes { json.field(key, address: $0) }
    }

    private static func writePolicy(_ policy: Dnstap_Policy, into json: JSONObjectWriter) {
        if policy.hasType { json.field("policy_type", bytes: Array(policy.type.utf8)) }
        if policy.hasRule { json.field("policy_rule", WireName.render(policy.rule) ?? DNSRecordRenderer.hex(policy.rule)) }
        if policy.hasAction { json.field("policy_action", "\(policy.action)".uppercased()) }
        if policy.hasMatch { json.field("policy_match", "\(policy.match)".uppercased()) }
        if policy.hasValue {
            let value = policy.value
            switch (policy.match, value.count) {
            case (.clientIp, 4), (.responseIp, 4), (.nsIp, 4): json.field("policy_value", IPAddressFormatter.string(fromIPv4: value))
            case (.clientIp, 16), (.responseIp, 16), (.nsIp, 16): json.field("policy_value", IPAddressFormatter.string(fromIPv6: value))
            default: json.field("policy_value", DNSRecordRenderer.hex(value))
            }
        }
    }

    /// The raw value of an enum field swift-protobuf did not recognise (proto2 enums are closed, so
    /// a newer producer's value lands in the unknown fields), or 0 when absent.
    static func unknownEnum(_ unknown: UnknownStorage, field: Int) -> UInt64 {
        unknownEnumIfPresent(unknown, field: field) ?? 0
    }

    static func unknownEnumIfPresent(_ unknown: UnknownStorage, field: Int) -> UInt64? {
        guard !unknown.data.isEmpty else { return nil }
        return unknown.data.withUnsafeBytes { ProtobufVarintScanner.varint(field: field, in: $0) }
    }
}

/// Describes a dnstap Message.Type, including values newer than this build knows.
struct MessageTypeInfo {
    let name: String
    /// true for *_QUERY, false for *_RESPONSE, nil when unknown.
    let isQuery: Bool?
    /// CLIENT_, RESOLVER_ and FORWARDER_RESPONSE: the responses the resolution map learns from.
    let feedsResolutionMap: Bool

    init(_ message: Dnstap_Message) {
        if message.hasType {
            let raw = message.type.rawValue
            name = Self.names[raw - 1]
            isQuery = raw % 2 == 1
            feedsResolutionMap = raw == 4 || raw == 6 || raw == 8
        } else {
            name = "UNKNOWN(\(DnstapEventFields.unknownEnum(message.unknownFields, field: 1)))"
            isQuery = nil
            feedsResolutionMap = false
        }
    }

    private static let names = [
        "AUTH_QUERY", "AUTH_RESPONSE", "RESOLVER_QUERY", "RESOLVER_RESPONSE", "CLIENT_QUERY", "CLIENT_RESPONSE",
        "FORWARDER_QUERY", "FORWARDER_RESPONSE", "STUB_QUERY", "STUB_RESPONSE", "TOOL_QUERY", "TOOL_RESPONSE",
        "UPDATE_QUERY", "UPDATE_RESPONSE",
    ]
}

/// Renders an uncompressed wire-format name (query_zone, Policy.rule), where pointers are illegal.
enum WireName {
    static func render(_ data: Data) -> String? {
        data.withUnsafeBytes { bytes -> String? in
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
}

/// Finds a varint field in raw protobuf bytes (used only for unknown enum values).
enum ProtobufVarintScanner {
    static func varint(field wanted: Int, in bytes: UnsafeRawBufferPointer) -> UInt64? {
        var position = 0
        func readVarint() -> UInt64? {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while position < bytes.count, shift < 64 {
                let byte = bytes[position]
                position += 1
                result |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return result }
                shift += 7
            }
            return nil
        }
        var found: UInt64?
        while position < bytes.count {
            guard let tag = readVarint() else { return found }
            let field = Int(tag >> 3)
            switch tag & 7 {
            case 0:
                guard let value = readVarint() else { return found }
                if field == wanted { found = value }
            case 1: position += 8
            case 2:
                guard let length = readVarint(), length <= UInt64(bytes.count - position) else { return found }
                position += Int(length)
            case 5: position += 4
            default: return found
            }
        }
        return found
    }
}
