/// A DNS message parsed defensively from wire format (RFC 1035 §4, RFC 6891, RFC 9267).
///
/// Parsing never traps and never trusts a count for allocation: records are read one by one until
/// the count or the bytes run out. What parsed is kept; the first problem is in `parseError`.
public struct DNSMessage: Sendable, Equatable {
    public var id: UInt16 = 0
    public var flags: UInt16 = 0
    public var questionCount: UInt16 = 0
    public var answerCount: UInt16 = 0
    public var authorityCount: UInt16 = 0
    public var additionalCount: UInt16 = 0
    public var question: DNSQuestion?
    public var answers: [DNSResourceRecord] = []
    public var edns: EDNS?
    /// The first problem met, or nil when the whole message parsed.
    public var parseError: DNSParseError?

    public init() {}
}

extension DNSMessage: DNSMessageHeader {}

/// The header flags and RCODE of a parsed message (`DNSMessage`, and the encoder's in-place
/// `DNSWireMessage`).
public protocol DNSMessageHeader {
    var flags: UInt16 { get }
    var edns: EDNS? { get }
}

extension DNSMessageHeader {
    public var isResponse: Bool { flags & 0x8000 != 0 }
    public var opcode: UInt8 { UInt8((flags >> 11) & 0xF) }
    public var authoritativeAnswer: Bool { flags & 0x0400 != 0 }
    public var truncated: Bool { flags & 0x0200 != 0 }
    public var recursionDesired: Bool { flags & 0x0100 != 0 }
    public var recursionAvailable: Bool { flags & 0x0080 != 0 }
    public var authenticData: Bool { flags & 0x0020 != 0 }
    public var checkingDisabled: Bool { flags & 0x0010 != 0 }
    /// The full RCODE: 12 bits when EDNS is present (RFC 6891 §6.1.3).
    public var rcode: UInt16 { UInt16(flags & 0xF) | (UInt16(edns?.extendedRcode ?? 0) << 4) }
}

public struct DNSQuestion: Sendable, Equatable {
    /// Presentation form without the trailing dot ("." for the root).
    public var name: String
    public var type: UInt16
    public var qclass: UInt16
}

public struct DNSResourceRecord: Sendable, Equatable {
    public var name: String
    public var type: UInt16
    public var rrclass: UInt16
    /// TTL with RFC 2181 §8 applied (values ≥ 2³¹ read as 0).
    public var ttl: UInt32
    public var data: DNSRecordData
}

public enum DNSRecordData: Sendable, Equatable {
    case ipv4(IPv4Bytes)
    case ipv6(IPv6Bytes)
    /// CNAME, DNAME, NS, PTR: one domain name.
    case name(String)
    /// Any other type, already rendered as text (RFC 3597 `\# len hex` when the type is unknown).
    case text(String)

    public var presentation: String {
        switch self {
        case .ipv4(let address): return IPAddressFormatter.string(fromIPv4: address.bytes)
        case .ipv6(let address): return IPAddressFormatter.string(fromIPv6: address.bytes)
        case .name(let name): return name
        case .text(let text): return text
        }
    }
}

/// An IPv4 address held by value (no allocation), network byte order in `value`'s high byte first.
public struct IPv4Bytes: Sendable, Hashable {
    public var value: UInt32

    public init(_ bytes: UnsafeRawBufferPointer) {
        value = bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }

    public var bytes: [UInt8] { [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)] }
}

/// An IPv6 address held by value (no allocation).
public struct IPv6Bytes: Sendable, Hashable {
    public var high: UInt64
    public var low: UInt64

    public init(_ bytes: UnsafeRawBufferPointer) {
        high = bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
        low = bytes.dropFirst(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        for word in [high, low] {
            for shift in stride(from: UInt64(56), through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: word >> shift)) }
        }
        return bytes
    }
}

/// The OPT pseudo-record (RFC 6891).
public struct EDNS: Sendable, Equatable {
    public var udpPayloadSize: UInt16
    public var extendedRcode: UInt8
    public var version: UInt8
    public var dnssecOK: Bool
    /// Option 3.
    public var nsid: [UInt8]?
    /// Option 8, as "address/source-prefix".
    public var clientSubnet: String?
    /// Option 15: info code and text.
    public var extendedErrors: [(code: UInt16, text: String)] = []

    public static func == (lhs: EDNS, rhs: EDNS) -> Bool {
        lhs.udpPayloadSize == rhs.udpPayloadSize && lhs.extendedRcode == rhs.extendedRcode
            && lhs.version == rhs.version && lhs.dnssecOK == rhs.dnssecOK && lhs.nsid == rhs.nsid
            && lhs.clientSubnet == rhs.clientSubnet
            && lhs.extendedErrors.map(\.code) == rhs.extendedErrors.map(\.code)
            && lhs.extendedErrors.map(\.text) == rhs.extendedErrors.map(\.text)
    }
}

public enum DNSParseError: Error, Sendable, Equatable, CustomStringConvertible {
    case tooShort(Int)
    case truncated(section: String)
    case badLabelType(offset: Int)
    case badPointer(offset: Int)
    case nameTooLong
    case badRecordData(type: UInt16)
    case multipleOPT

    public var description: String {
        switch self {
        case .tooShort(let length): return "message of \(length) bytes is shorter than the 12-byte header"
        case .truncated(let section): return "message ends inside the \(section) section"
        case .badLabelType(let offset): return "reserved label type at offset \(offset)"
        case .badPointer(let offset): return "compression pointer at offset \(offset) does not point backwards"
        case .nameTooLong: return "name longer than 255 octets"
        case .badRecordData(let type): return "record data of type \(DNSNames.typeName(type)) does not fit its length"
        case .multipleOPT: return "more than one OPT record"
        }
    }
}
