import CDnstapProtobufC

/// The mapping from a PowerDNS protobuf logging message (`PBDNSMessage`, proto/dnsmessage.proto)
/// to the same event schema as dnstap's (README, "Output schema" and "PowerDNS protobuf logging"):
/// the message types become `CLIENT_*` and `RESOLVER_*`, the question and the answer records PowerDNS
/// includes fill the CIM fields, and what only PowerDNS has keeps its own names.
enum PowerDNSEventFields {
    /// Writes the fields of one event; returns the event's time in microseconds. With `collect`,
    /// a response's address facts go to `resolutions`.
    static func write(
        _ message: UnsafePointer<PBDNSMessage>, receivedAtMicros: Int64, sender: String?, into json: JSONObjectWriter,
        collect: Bool, resolutions: inout ResolutionCollector, facts: inout EventFacts
    ) -> Int64 {
        let fields = message.pointee
        let type = MessageType(raw: fields.has_type != 0 ? Int32(bitPattern: fields.type.rawValue) : 0)
        let time = fields.has_timesec != 0 ? micros(fields.timesec, fields.has_timeusec != 0 ? fields.timeusec : 0) : nil
        let response = fields.response.map { UnsafePointer($0) }
        // dnsdist puts the query's time in `response` on queries too; only a response's counts.
        let queryTime: Int64? = {
            guard type.isQuery == false, let response = response?.pointee, response.has_querytimesec != 0,
                  response.querytimesec != 0 else { return type.isQuery == true ? time : nil }
            return micros(response.querytimesec, response.has_querytimeusec != 0 ? response.querytimeusec : 0)
        }()
        let eventTime = time ?? receivedAtMicros

        json.field("timestamp", timestampMicros: eventTime)
        json.field("dnstap_type", type.name)
        facts.typeName = type.name
        facts.isQuery = type.isQuery
        facts.dnsParsed = true
        if let isQuery = type.isQuery { json.field("message_type", static: isQuery ? "Query" : "Response") }
        if fields.has_serveridentity != 0 { json.field("identity", bytes: fields.serveridentity.bytes) }
        if let sender { json.field("sender", sender) }
        if fields.has_messageid != 0 { json.field("message_id", uuid: fields.messageid.bytes) }
        if fields.has_initialrequestid != 0 { json.field("initial_request_id", uuid: fields.initialrequestid.bytes) }
        writeTransport(fields, into: json)
        if fields.has_from != 0 { json.field("src", address: fields.from.bytes) }
        if fields.has_fromport != 0 { json.field("src_port", fields.fromport) }
        if fields.has_to != 0 { json.field("dest", address: fields.to.bytes) }
        if fields.has_toport != 0 { json.field("dest_port", fields.toport) }
        if let queryTime {
            json.field("query_timestamp", timestampMicros: queryTime)
            facts.wroteQueryTime = true
        }
        if type.isQuery == false, let time {
            json.field("response_timestamp", timestampMicros: time)
            if let queryTime {
                json.field("duration", micros: time - queryTime)
                facts.wroteDuration = true
            }
        }
        if fields.has_inbytes != 0 { json.field("message_size", fields.inbytes) }
        if fields.has_id != 0 { json.field("transaction_id", fields.id) }

        var question: DNSQuestion?
        if let asked = fields.question?.pointee {
            if asked.has_qname != 0 {
                json.field("query", bytes: presentation(asked.qname.bytes))
                question = DNSQuestion(name: String(decoding: presentation(asked.qname.bytes), as: UTF8.self), type: 0, qclass: 1)
                facts.questionName = question?.name
            }
            if asked.has_qtype != 0 {
                let qtype = UInt16(truncatingIfNeeded: asked.qtype)
                json.field("record_type", DNSNames.typeName(qtype))
                question?.type = qtype
            }
            if asked.has_qclass != 0 {
                json.field("query_class", DNSNames.className(UInt16(truncatingIfNeeded: asked.qclass)))
                question?.qclass = UInt16(truncatingIfNeeded: asked.qclass)
            }
        }
        if fields.has_originalrequestorsubnet != 0 { json.field("original_requestor_subnet", address: fields.originalrequestorsubnet.bytes) }
        if fields.has_requestorid != 0 { json.field("requestor_id", bytes: fields.requestorid.bytes) }
        if fields.has_deviceid != 0 { json.field("device_id", bytes: fields.deviceid.bytes) }
        if fields.has_devicename != 0 { json.field("device_name", bytes: fields.devicename.bytes) }
        if fields.has_newlyobserveddomain != 0 { json.field("newly_observed_domain", fields.newlyobserveddomain != 0) }
        if fields.has_packetcachehit != 0 { json.field("packet_cache_hit", fields.packetcachehit != 0) }
        if fields.has_outgoingqueries != 0 { json.field("outgoing_queries", fields.outgoingqueries) }
        if fields.has_ede != 0 {
            let text = fields.has_edetext != 0 ? String(decoding: fields.edetext.bytes, as: UTF8.self) : ""
            json.field("edns_ede", strings: ["\(fields.ede)" + (text.isEmpty ? "" : " \(text)")])
        }
        if type.isQuery == false, let response {
            if response.pointee.has_rcode != 0 { facts.rcode = response.pointee.rcode }
            writeResponse(response.pointee, into: json)
            if collect, type.feedsResolutionMap {
                collectResolutions(response.pointee, question: question, seenAtMicros: eventTime, into: &resolutions)
            }
        }
        return eventTime
    }

    // MARK: - Parts

    private static func writeTransport(_ fields: PBDNSMessage, into json: JSONObjectWriter) {
        if fields.has_socketfamily != 0 { DnstapEventFields.writeSocketFamily(fields.socketfamily.rawValue, into: json) }
        if fields.has_socketprotocol != 0 { DnstapEventFields.writeSocketProtocol(fields.socketprotocol.rawValue, into: json) }
        if fields.has_httpversion != 0 { DnstapEventFields.writeHTTPProtocol(fields.httpversion.rawValue, into: json) }
    }

    private static let policyTypes = ["UNKNOWN", "QNAME", "CLIENTIP", "RESPONSEIP", "NSDNAME", "NSIP"]
    private static let policyKinds = ["NoAction", "Drop", "NXDOMAIN", "NODATA", "Truncate", "Custom"]
    private static let validationStates = [
        "Indeterminate", "Insecure", "Secure", "BogusNoValidDNSKEY", "BogusInvalidDenial", "BogusUnableToGetDSs",
        "BogusUnableToGetDNSKEYs", "BogusSelfSignedDS", "BogusNoRRSIG", "BogusNoValidRRSIG", "BogusMissingNegativeIndication",
        "BogusSignatureNotYetValid", "BogusSignatureExpired", "BogusUnsupportedDNSKEYAlgo", "BogusUnsupportedDSDigestType",
        "BogusNoZoneKeyBitSet", "BogusRevokedDNSKEY", "BogusInvalidDNSKEYProtocol",
    ]

    private static func name(_ raw: UInt32, in names: [String]) -> String {
        raw >= 1 && Int(raw) <= names.count ? names[Int(raw) - 1] : "UNKNOWN(\(raw))"
    }

    /// PowerDNS's rcode 65536: no DNS answer at all (a network error or a timeout).
    static let networkErrorRcode: UInt32 = 65536

    private static func writeResponse(_ response: PBDNSMessage__DNSResponse, into json: JSONObjectWriter) {
        if response.has_rcode != 0 {
            if response.rcode == networkErrorRcode {
                json.field("reply_code", static: "NETWORK_ERROR")
            } else {
                json.field("reply_code", DNSNames.rcodeName(UInt16(truncatingIfNeeded: response.rcode)))
            }
            json.field("reply_code_id", response.rcode)
        }
        if response.n_rrs > 0, let rrs = response.rrs {
            let records = UnsafeBufferPointer(start: rrs, count: response.n_rrs).compactMap { $0.map { UnsafePointer($0) } }
            json.beginArray("answer")
            for record in records { json.arrayElement(rdata(record.pointee)) }
            json.endArray()
            json.beginArray("answer_type")
            for record in records {
                json.arrayElement(record.pointee.has_type != 0 ? DNSNames.typeName(UInt16(truncatingIfNeeded: record.pointee.type)) : "?")
            }
            json.endArray()
            // PowerDNS Recursor 4.8 leaves the owner out of the records of outgoing responses.
            if records.allSatisfy({ $0.pointee.has_name != 0 }) {
                json.beginArray("answer_name")
                for record in records { json.arrayElement(String(decoding: presentation(record.pointee.name.bytes), as: UTF8.self)) }
                json.endArray()
            }
            json.beginArray("ttl")
            for record in records { json.arrayElement(record.pointee.has_ttl != 0 ? record.pointee.ttl : 0) }
            json.endArray()
        }
        if response.has_appliedpolicy != 0 { json.field("applied_policy", bytes: response.appliedpolicy.bytes) }
        if response.has_appliedpolicytype != 0 { json.field("applied_policy_type", name(response.appliedpolicytype.rawValue, in: policyTypes)) }
        if response.has_appliedpolicykind != 0 { json.field("applied_policy_kind", name(response.appliedpolicykind.rawValue, in: policyKinds)) }
        if response.has_appliedpolicytrigger != 0 { json.field("applied_policy_trigger", bytes: response.appliedpolicytrigger.bytes) }
        if response.has_appliedpolicyhit != 0 { json.field("applied_policy_hit", bytes: response.appliedpolicyhit.bytes) }
        if response.n_tags > 0, let tags = response.tags {
            json.field("tags", strings: UnsafeBufferPointer(start: tags, count: response.n_tags).map { String(decoding: $0.bytes, as: UTF8.self) })
        }
        if response.has_validationstate != 0 { json.field("validation_state", name(response.validationstate, in: validationStates)) }
    }

    /// An answer record's data as text: A and AAAA come as address bytes, other types as
    /// PowerDNS's presentation text (a name's trailing dot dropped, as in the dnstap events).
    private static func rdata(_ record: PBDNSMessage__DNSResponse__DNSRR) -> String {
        guard record.has_rdata != 0 else { return "" }
        let bytes = record.rdata.bytes
        switch (record.has_type != 0 ? record.type : 0, bytes.count) {
        case (1, 4): return IPAddressFormatter.string(fromIPv4: bytes)
        case (28, 16): return IPAddressFormatter.string(fromIPv6: bytes)
        case (2, _), (5, _), (12, _), (39, _): return String(decoding: presentation(bytes), as: UTF8.self)
        default: return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// The records as the resolution map reads a DNS answer; records without an owner are left out
    /// (the map follows the CNAME chain by owner).
    private static func collectResolutions(
        _ response: PBDNSMessage__DNSResponse, question: DNSQuestion?, seenAtMicros: Int64, into resolutions: inout ResolutionCollector
    ) {
        guard let question, response.has_rcode != 0, response.rcode == 0, response.n_rrs > 0, let rrs = response.rrs else { return }
        var dns = DNSMessage()
        dns.flags = 0x8000
        dns.question = question
        for pointer in UnsafeBufferPointer(start: rrs, count: min(response.n_rrs, ResolutionExtractor.maxAnswers)) {
            guard let record = pointer?.pointee, record.has_name != 0, record.has_type != 0, record.has_rdata != 0 else { continue }
            let bytes = record.rdata.bytes
            let data: DNSRecordData
            switch (record.type, bytes.count) {
            case (1, 4): data = .ipv4(IPv4Bytes(bytes))
            case (28, 16): data = .ipv6(IPv6Bytes(bytes))
            case (5, _): data = .name(String(decoding: presentation(bytes), as: UTF8.self))
            default: continue
            }
            dns.answers.append(DNSResourceRecord(
                name: String(decoding: presentation(record.name.bytes), as: UTF8.self), type: UInt16(truncatingIfNeeded: record.type),
                rrclass: record.has_class_ != 0 ? UInt16(truncatingIfNeeded: record.class_) : 1, ttl: record.has_ttl != 0 ? min(record.ttl, 0x7FFF_FFFF) : 0,
                data: data))
        }
        resolutions.ignored += ResolutionExtractor.extract(from: dns, seenAtMicros: seenAtMicros, into: &resolutions.observations)
    }

    /// A name as PowerDNS writes it ("www.example.com.", the root "."), without the trailing dot,
    /// as the dnstap events write names.
    static func presentation(_ name: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        guard name.count > 1, name[name.count - 1] == UInt8(ascii: "."), name[name.count - 2] != UInt8(ascii: "\\") else { return name }
        return UnsafeRawBufferPointer(rebasing: name[..<(name.count - 1)])
    }

    private static func micros(_ seconds: UInt32, _ microseconds: UInt32) -> Int64 {
        Int64(seconds) * 1_000_000 + Int64(min(microseconds, 999_999))
    }

    /// PBDNSMessage.Type in dnstap's terms.
    struct MessageType {
        let name: String
        let isQuery: Bool?
        /// The responses the resolution map learns from: to clients, and from other servers.
        let feedsResolutionMap: Bool

        init(raw: Int32) {
            switch raw {
            case 1: (name, isQuery, feedsResolutionMap) = ("CLIENT_QUERY", true, false)
            case 2: (name, isQuery, feedsResolutionMap) = ("CLIENT_RESPONSE", false, true)
            case 3: (name, isQuery, feedsResolutionMap) = ("RESOLVER_QUERY", true, false)
            case 4: (name, isQuery, feedsResolutionMap) = ("RESOLVER_RESPONSE", false, true)
            case 5: (name, isQuery, feedsResolutionMap) = ("PDNS_INTERNAL", nil, false)
            default: (name, isQuery, feedsResolutionMap) = ("UNKNOWN(\(raw))", nil, false)
            }
        }
    }
}

extension JSONObjectWriter {
    /// 16 bytes as a UUID ("8-4-4-4-12" lowercase hex); any other length as plain hex.
    func field(_ name: StaticString, uuid bytes: UnsafeRawBufferPointer) {
        let hex = DNSRecordRenderer.hex(bytes).lowercased()
        guard bytes.count == 16 else { return field(name, hex) }
        let digits = Array(hex.utf8)
        var text: [UInt8] = []
        text.reserveCapacity(36)
        for (index, digit) in digits.enumerated() {
            if index == 8 || index == 12 || index == 16 || index == 20 { text.append(UInt8(ascii: "-")) }
            text.append(digit)
        }
        field(name, String(decoding: text, as: UTF8.self))
    }
}
