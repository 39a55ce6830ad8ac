/// A DNS message parsed in place: its header, question, answers and EDNS as `DNSMessage` has them,
/// but each domain name as the offset in `bytes` where it starts (compression is followed when the
/// name is written or turned into a String; every name was walked and checked while parsing).
///
/// Valid only while `bytes` is. The event encoder parses, writes and forgets one within a frame, so
/// its names go from the wire straight into the JSON (`JSONObjectWriter.field(_:name:in:)`) with no
/// String made for them.
struct DNSWireMessage: DNSMessageHeader {
    let bytes: UnsafeRawBufferPointer
    var id: UInt16 = 0
    var flags: UInt16 = 0
    var questionCount: UInt16 = 0
    var answerCount: UInt16 = 0
    var authorityCount: UInt16 = 0
    var additionalCount: UInt16 = 0
    var question: Question?
    var answers: [Record] = []
    var edns: EDNS?
    var parseError: DNSParseError?
    /// Where the answer section ends in `bytes` (0 when it did not parse).
    var answerSectionEnd = 0

    struct Question {
        /// Where the name starts in `bytes`.
        var name: Int
        var type: UInt16
        var qclass: UInt16
    }

    struct Record {
        /// Where the owner name starts in `bytes`.
        var name: Int
        var type: UInt16
        var rrclass: UInt16
        /// TTL with RFC 2181 §8 applied (values ≥ 2³¹ read as 0).
        var ttl: UInt32
        /// Where the TTL's four bytes are in `bytes`.
        var ttlOffset: Int
        var data: RecordData
    }

    enum RecordData {
        case ipv4(IPv4Bytes)
        case ipv6(IPv6Bytes)
        /// CNAME, DNAME, NS, PTR: where the name starts in `bytes`.
        case name(Int)
        /// Any other type, rendered as text (`DNSRecordRenderer`).
        case text(String)
    }

    /// Parses a wire-format DNS message (no TCP length prefix); `answers` is an empty array whose
    /// memory the answers may use.
    init(parsing bytes: UnsafeRawBufferPointer, answers: [Record] = []) {
        self.bytes = bytes
        self.answers = answers
        var reader = DNSWireReader(bytes: bytes)
        guard bytes.count >= 12 else {
            parseError = .tooShort(bytes.count)
            return
        }
        id = reader.u16(at: 0)
        flags = reader.u16(at: 2)
        questionCount = reader.u16(at: 4)
        answerCount = reader.u16(at: 6)
        authorityCount = reader.u16(at: 8)
        additionalCount = reader.u16(at: 10)
        reader.offset = 12
        do {
            for index in 0..<Int(questionCount) {
                let name = try reader.readName(section: "question")
                guard let type = reader.readU16(), let qclass = reader.readU16() else {
                    throw DNSParseError.truncated(section: "question")
                }
                if index == 0 { question = Question(name: name, type: type, qclass: qclass) }
            }
            // At most one allocation for the usual answer, none in a reused array (the count is not
            // trusted beyond that).
            self.answers.reserveCapacity(min(Int(answerCount), 16))
            for _ in 0..<Int(answerCount) {
                self.answers.append(try reader.readRecord(section: "answer", render: true))
            }
            answerSectionEnd = reader.offset
            for _ in 0..<Int(authorityCount) {
                _ = try reader.readRecord(section: "authority", render: false)
            }
            for _ in 0..<Int(additionalCount) {
                try reader.readAdditional(into: &self)
            }
        } catch let error as DNSParseError {
            parseError = error
        } catch {
            parseError = .truncated(section: "message")
        }
    }

    /// The name starting at `offset` in presentation form (`DNSNames.NameBuilder`'s), built in
    /// `names`.
    func name(at offset: Int, using names: inout DNSNames.NameBuilder) -> String {
        names.reset()
        // Walked without an error when the message was parsed: the same bytes walk the same.
        _ = try? DNSWireReader.walkName(bytes, from: offset, into: &names)
        return names.finish()
    }
}

/// What the event encoder keeps from one message to the next, so that a parse allocates nothing
/// of its own: the builder for the names still made Strings, and the answers' array; and the
/// connection's source fields as last written (`SourceFieldsCache`).
struct DNSParseScratch {
    var names = DNSNames.NameBuilder()
    var sources = SourceFieldsCache()
    fileprivate var answers: [DNSWireMessage.Record] = []
    /// Answers whose array is kept for the next message; a larger one's is freed.
    static let keptAnswers = 64
}

extension DNSWireMessage {
    /// Parses into `scratch`'s answer array; give it back with `recycle(into:)`.
    init(parsing bytes: UnsafeRawBufferPointer, scratch: inout DNSParseScratch) {
        var answers: [Record] = []
        swap(&answers, &scratch.answers)
        self.init(parsing: bytes, answers: answers)
    }

    /// Gives the answers' array back to `scratch`, emptied, for the next message.
    consuming func recycle(into scratch: inout DNSParseScratch) {
        guard answers.capacity <= DNSParseScratch.keptAnswers else { return }
        answers.removeAll(keepingCapacity: true)
        swap(&answers, &scratch.answers)
    }
}

extension DNSMessage {
    /// Parses a wire-format DNS message (no TCP length prefix).
    public init(parsing bytes: UnsafeRawBufferPointer) {
        var names = DNSNames.NameBuilder()
        self.init(parsing: bytes, names: &names)
    }

    /// Parses with `names` as the scratch memory for building names, so that a caller parsing
    /// many messages allocates it once, not once a message.
    init(parsing bytes: UnsafeRawBufferPointer, names: inout DNSNames.NameBuilder) {
        self.init(DNSWireMessage(parsing: bytes), names: &names)
    }

    /// The message with its names made Strings (while `wire`'s bytes are still valid).
    init(_ wire: DNSWireMessage, names: inout DNSNames.NameBuilder) {
        self.init()
        id = wire.id
        flags = wire.flags
        questionCount = wire.questionCount
        answerCount = wire.answerCount
        authorityCount = wire.authorityCount
        additionalCount = wire.additionalCount
        if let question = wire.question {
            self.question = DNSQuestion(name: wire.name(at: question.name, using: &names), type: question.type, qclass: question.qclass)
        }
        answers.reserveCapacity(wire.answers.count)
        for record in wire.answers {
            let data: DNSRecordData
            switch record.data {
            case .ipv4(let address): data = .ipv4(address)
            case .ipv6(let address): data = .ipv6(address)
            case .name(let offset): data = .name(wire.name(at: offset, using: &names))
            case .text(let text): data = .text(text)
            }
            answers.append(DNSResourceRecord(
                name: wire.name(at: record.name, using: &names), type: record.type, rrclass: record.rrclass, ttl: record.ttl,
                data: data))
        }
        edns = wire.edns
        parseError = wire.parseError
    }

    public init(parsing bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { DNSMessage(parsing: $0) }
    }
}

/// Takes a name's labels as `DNSWireReader.walkName` finds them.
protocol DNSLabelSink {
    mutating func appendLabel(_ label: UnsafeRawBufferPointer)
}

/// Walks a name only to check it (the event encoder's parse: the name is written later, from the wire).
struct DNSNameCheck: DNSLabelSink {
    @inline(__always) mutating func appendLabel(_ label: UnsafeRawBufferPointer) {}
}

/// A bounds-checked cursor over a DNS message.
struct DNSWireReader {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    func u16(at position: Int) -> UInt16 { UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1]) }

    mutating func readU16() -> UInt16? {
        guard offset + 2 <= bytes.count else { return nil }
        defer { offset += 2 }
        return u16(at: offset)
    }

    mutating func readU32() -> UInt32? {
        guard let high = readU16(), let low = readU16() else { return nil }
        return UInt32(high) << 16 | UInt32(low)
    }

    /// Checks a possibly compressed name at the cursor and moves past it (past the first pointer);
    /// returns where it starts.
    mutating func readName(section: String) throws(DNSParseError) -> Int {
        let start = offset
        var check = DNSNameCheck()
        do {
            offset = try Self.walkName(bytes, from: offset, into: &check)
        } catch .truncated {
            throw .truncated(section: section)
        }
        return start
    }

    /// Walks a name starting at `start`, handing its labels to `sink`; returns the offset after the
    /// name as it stands at `start`. Pointers must point strictly backwards (RFC 9267), so no loop
    /// is possible.
    static func walkName<Sink: DNSLabelSink>(
        _ bytes: UnsafeRawBufferPointer, from start: Int, into sink: inout Sink
    ) throws(DNSParseError) -> Int {
        var position = start
        var end: Int?
        var wireLength = 0
        var lowestAllowed = start  // a pointer must go before where we are
        while true {
            guard position < bytes.count else { throw .truncated(section: "name") }
            let length = Int(bytes[position])
            switch length & 0xC0 {
            case 0x00:
                if length == 0 {
                    return end ?? position + 1
                }
                wireLength += length + 1
                guard wireLength + 1 <= 255 else { throw .nameTooLong }
                guard position + 1 + length <= bytes.count else { throw .truncated(section: "name") }
                sink.appendLabel(UnsafeRawBufferPointer(rebasing: bytes[(position + 1)..<(position + 1 + length)]))
                position += 1 + length
            case 0xC0:
                guard position + 1 < bytes.count else { throw .truncated(section: "name") }
                let target = (length & 0x3F) << 8 | Int(bytes[position + 1])
                guard target < lowestAllowed else { throw .badPointer(offset: position) }
                if end == nil { end = position + 2 }
                lowestAllowed = target
                position = target
            default:
                throw .badLabelType(offset: position)
            }
        }
    }

    /// Reads one resource record; with `render`, its data is read for display.
    mutating func readRecord(section: String, render: Bool) throws(DNSParseError) -> DNSWireMessage.Record {
        let name = try readName(section: section)
        let ttlOffset = offset + 4
        guard let type = readU16(), let rrclass = readU16(), let rawTTL = readU32(), let rdLength = readU16() else {
            throw .truncated(section: section)
        }
        let dataStart = offset
        let dataEnd = dataStart + Int(rdLength)
        guard dataEnd <= bytes.count else { throw .truncated(section: section) }
        defer { offset = dataEnd }
        let ttl = rawTTL >= 0x8000_0000 ? 0 : rawTTL
        let data: DNSWireMessage.RecordData = render ? try renderData(type: type, from: dataStart, to: dataEnd) : .text("")
        return DNSWireMessage.Record(name: name, type: type, rrclass: rrclass, ttl: ttl, ttlOffset: ttlOffset, data: data)
    }

    mutating func readAdditional(into message: inout DNSWireMessage) throws(DNSParseError) {
        let nameStart = offset
        _ = try readName(section: "additional")
        guard let type = readU16(), type == DNSNames.typeOPT else {
            offset = nameStart
            _ = try readRecord(section: "additional", render: false)
            return
        }
        guard let payloadSize = readU16(), let ttl = readU32(), let rdLength = readU16() else {
            throw .truncated(section: "additional")
        }
        let dataEnd = offset + Int(rdLength)
        guard dataEnd <= bytes.count else { throw .truncated(section: "additional") }
        defer { offset = dataEnd }
        guard message.edns == nil else { throw .multipleOPT }
        var edns = EDNS(
            udpPayloadSize: payloadSize, extendedRcode: UInt8(ttl >> 24), version: UInt8((ttl >> 16) & 0xFF),
            dnssecOK: ttl & 0x8000 != 0)
        var position = offset
        while position + 4 <= dataEnd {
            let code = u16(at: position)
            let length = Int(u16(at: position + 2))
            let start = position + 4
            guard start + length <= dataEnd else { break }
            let option = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)])
            switch code {
            case 3: edns.nsid = Array(option)
            case 8: edns.clientSubnet = DNSRecordRenderer.clientSubnet(option)
            case 15 where length >= 2:
                let info = UInt16(option[0]) << 8 | UInt16(option[1])
                edns.extendedErrors.append((info, String(decoding: option.dropFirst(2), as: UTF8.self)))
            default: break
            }
            position = start + length
        }
        message.edns = edns
    }

    func renderData(type: UInt16, from start: Int, to end: Int) throws(DNSParseError) -> DNSWireMessage.RecordData {
        let data = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
        switch type {
        case DNSNames.typeA:
            guard data.count == 4 else { throw .badRecordData(type: type) }
            return .ipv4(IPv4Bytes(data))
        case DNSNames.typeAAAA:
            guard data.count == 16 else { throw .badRecordData(type: type) }
            return .ipv6(IPv6Bytes(data))
        case DNSNames.typeCNAME, DNSNames.typeNS, DNSNames.typePTR, DNSNames.typeDNAME:
            var check = DNSNameCheck()
            guard try Self.walkName(bytes, from: start, into: &check) == end else { throw .badRecordData(type: type) }
            return .name(start)
        default:
            return .text(try DNSRecordRenderer(message: bytes).render(type: type, from: start, to: end))
        }
    }
}
