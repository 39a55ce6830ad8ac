extension DNSMessage {
    /// Parses a wire-format DNS message (no TCP length prefix).
    public init(parsing bytes: UnsafeRawBufferPointer) {
        var names = DNSNames.NameBuilder()
        self.init(parsing: bytes, names: &names)
    }

    /// Parses with `names` as the scratch memory for building names, so that a caller parsing
    /// many messages (the event encoder) allocates it once, not once a message.
    init(parsing bytes: UnsafeRawBufferPointer, names: inout DNSNames.NameBuilder) {
        self.init()
        var reader = DNSWireReader(bytes: bytes, names: names.take())
        defer { names = reader.takeNames() }
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
                if index == 0 { question = DNSQuestion(name: name, type: type, qclass: qclass) }
            }
            // One allocation for the usual answer (the count is not trusted beyond that).
            answers.reserveCapacity(min(Int(answerCount), 16))
            for _ in 0..<Int(answerCount) {
                answers.append(try reader.readRecord(section: "answer", render: true))
            }
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

    public init(parsing bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { DNSMessage(parsing: $0) }
    }
}

/// A bounds-checked cursor over a DNS message.
struct DNSWireReader {
    let bytes: UnsafeRawBufferPointer
    var offset = 0
    /// Reused for every name of the message (and, via `takeNames`, of the next message).
    private var names: DNSNames.NameBuilder

    init(bytes: UnsafeRawBufferPointer, names: DNSNames.NameBuilder = DNSNames.NameBuilder()) {
        self.bytes = bytes
        self.names = names
    }

    mutating func takeNames() -> DNSNames.NameBuilder { names.take() }

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

    /// Reads a possibly compressed name at the cursor and moves past it (past the first pointer).
    mutating func readName(section: String) throws(DNSParseError) -> String {
        names.reset()
        do {
            offset = try Self.walkName(bytes, from: offset, into: &names)
        } catch .truncated {
            throw .truncated(section: section)
        }
        return names.finish()
    }

    /// Walks a name starting at `start`, appending labels; returns the offset after the name as it
    /// stands at `start`. Pointers must point strictly backwards (RFC 9267), so no loop is possible.
    static func walkName(
        _ bytes: UnsafeRawBufferPointer, from start: Int, into text: inout DNSNames.NameBuilder
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
                text.appendLabel(UnsafeRawBufferPointer(rebasing: bytes[(position + 1)..<(position + 1 + length)]))
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

    /// Reads one resource record; with `render`, its data is rendered for display.
    mutating func readRecord(section: String, render: Bool) throws(DNSParseError) -> DNSResourceRecord {
        let name = try readName(section: section)
        guard let type = readU16(), let rrclass = readU16(), let rawTTL = readU32(), let rdLength = readU16() else {
            throw .truncated(section: section)
        }
        let dataStart = offset
        let dataEnd = dataStart + Int(rdLength)
        guard dataEnd <= bytes.count else { throw .truncated(section: section) }
        defer { offset = dataEnd }
        let ttl = rawTTL >= 0x8000_0000 ? 0 : rawTTL
        let data: DNSRecordData = render ? try renderData(type: type, from: dataStart, to: dataEnd) : .text("")
        return DNSResourceRecord(name: name, type: type, rrclass: rrclass, ttl: ttl, data: data)
    }

    mutating func readAdditional(into message: inout DNSMessage) throws(DNSParseError) {
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

    mutating func renderData(type: UInt16, from start: Int, to end: Int) throws(DNSParseError) -> DNSRecordData {
        let data = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
        switch type {
        case DNSNames.typeA:
            guard data.count == 4 else { throw .badRecordData(type: type) }
            return .ipv4(IPv4Bytes(data))
        case DNSNames.typeAAAA:
            guard data.count == 16 else { throw .badRecordData(type: type) }
            return .ipv6(IPv6Bytes(data))
        case DNSNames.typeCNAME, DNSNames.typeNS, DNSNames.typePTR, DNSNames.typeDNAME:
            names.reset()
            guard try Self.walkName(bytes, from: start, into: &names) == end else { throw .badRecordData(type: type) }
            return .name(names.finish())
        default:
            return .text(try DNSRecordRenderer(message: bytes).render(type: type, from: start, to: end))
        }
    }
}
