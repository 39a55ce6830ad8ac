/// The DNS part of an event: header, question, answers, EDNS (README, "Output schema"). Names are
/// written from the message's bytes.
enum DNSEventFields {
    static func write(_ dns: DNSWireMessage, size: Int, into json: JSONObjectWriter) {
        json.field("message_size", size)
        if let error = dns.parseError, case .tooShort = error {
            json.field("dns_parse_error", error.description)
            return
        }
        json.field("transaction_id", dns.id)
        // The usual values as static text (no String to scan).
        if dns.opcode == 0 { json.field("query_type", static: "Query") } else { json.field("query_type", DNSNames.opcodeName(dns.opcode)) }
        if let question = dns.question {
            json.field("query", name: question.name, in: dns.bytes)
            if let name = DNSNames.commonTypeName(question.type) {
                json.field("record_type", static: name)
            } else {
                json.field("record_type", DNSNames.typeName(question.type))
            }
            if question.qclass == 1 {
                json.field("query_class", static: "IN")
            } else {
                json.field("query_class", DNSNames.className(question.qclass))
            }
        }
        if dns.isResponse {
            switch dns.rcode {
            case 0: json.field("reply_code", static: "NOERROR")
            case 3: json.field("reply_code", static: "NXDOMAIN")
            default: json.field("reply_code", DNSNames.rcodeName(dns.rcode))
            }
            json.field("reply_code_id", dns.rcode)
        }
        writeFlags(dns, into: json)
        json.field("answer_count", dns.answerCount)
        json.field("authority_answer_count", dns.authorityCount)
        json.field("additional_answer_count", dns.additionalCount)
        if !dns.answers.isEmpty {
            // By index: the records are read in place, not copied (with their strings) one by one.
            let answers = dns.answers.indices
            json.beginArray("answer")
            for index in answers {
                switch dns.answers[index].data {
                case .ipv4(let address): json.arrayElement(address)
                case .name(let offset): json.arrayElement(name: offset, in: dns.bytes)
                case .text(let text): json.arrayElement(text)
                case .ipv6(let address): json.arrayElement(address)
                }
            }
            json.endArray()
            json.beginArray("answer_type")
            for index in answers {
                let type = dns.answers[index].type
                if let name = DNSNames.commonTypeName(type) {
                    json.arrayElement(static: name)
                } else {
                    json.arrayElement(DNSNames.typeName(type))
                }
            }
            json.endArray()
            json.beginArray("answer_name")
            for index in answers { json.arrayElement(name: dns.answers[index].name, in: dns.bytes) }
            json.endArray()
            json.beginArray("ttl")
            for index in answers { json.arrayElement(dns.answers[index].ttl) }
            json.endArray()
        }
        if let edns = dns.edns {
            json.field("edns_udp_size", edns.udpPayloadSize)
            json.field("edns_version", edns.version)
            json.field("edns_do", edns.dnssecOK)
            if let nsid = edns.nsid { json.field("edns_nsid", bytes: nsid) }
            if let subnet = edns.clientSubnet { json.field("edns_client_subnet", subnet) }
            if !edns.extendedErrors.isEmpty {
                json.field("edns_ede", strings: edns.extendedErrors.map { "\($0.code)" + ($0.text.isEmpty ? "" : " \($0.text)") })
            }
        }
        if let error = dns.parseError { json.field("dns_parse_error", error.description) }
    }

    private static func writeFlags(_ dns: DNSWireMessage, into json: JSONObjectWriter) {
        json.beginArray("flags")
        if dns.isResponse { json.arrayElement(static: "qr") }
        if dns.authoritativeAnswer { json.arrayElement(static: "aa") }
        if dns.truncated { json.arrayElement(static: "tc") }
        if dns.recursionDesired { json.arrayElement(static: "rd") }
        if dns.recursionAvailable { json.arrayElement(static: "ra") }
        if dns.authenticData { json.arrayElement(static: "ad") }
        if dns.checkingDisabled { json.arrayElement(static: "cd") }
        json.endArray()
    }
}
