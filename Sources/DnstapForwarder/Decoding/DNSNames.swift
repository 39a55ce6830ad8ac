#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Names for DNS numbers, and presentation-form domain names (RFC 1035 §5.1, RFC 4343).
public enum DNSNames {
    static let typeA: UInt16 = 1
    static let typeNS: UInt16 = 2
    static let typeCNAME: UInt16 = 5
    static let typeSOA: UInt16 = 6
    static let typePTR: UInt16 = 12
    static let typeMX: UInt16 = 15
    static let typeTXT: UInt16 = 16
    static let typeAAAA: UInt16 = 28
    static let typeSRV: UInt16 = 33
    static let typeDNAME: UInt16 = 39
    static let typeOPT: UInt16 = 41

    private static let types: [UInt16: String] = [
        1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT", 17: "RP",
        18: "AFSDB", 24: "SIG", 25: "KEY", 28: "AAAA", 29: "LOC", 33: "SRV", 35: "NAPTR", 36: "KX",
        37: "CERT", 39: "DNAME", 41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG",
        47: "NSEC", 48: "DNSKEY", 49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA",
        55: "HIP", 59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD", 64: "SVCB",
        65: "HTTPS", 99: "SPF", 108: "EUI48", 109: "EUI64", 249: "TKEY", 250: "TSIG", 251: "IXFR",
        252: "AXFR", 255: "ANY", 256: "URI", 257: "CAA",
    ]

    /// "A", "AAAA", ... or RFC 3597's "TYPE1234".
    public static func typeName(_ type: UInt16) -> String { types[type] ?? "TYPE\(type)" }

    /// The names of the types most answers carry, without a dictionary lookup (nil for the rest).
    static func commonTypeName(_ type: UInt16) -> StaticString? {
        switch type {
        case typeA: return "A"
        case typeNS: return "NS"
        case typeCNAME: return "CNAME"
        case typeSOA: return "SOA"
        case typePTR: return "PTR"
        case typeMX: return "MX"
        case typeTXT: return "TXT"
        case typeAAAA: return "AAAA"
        case typeSRV: return "SRV"
        case 65: return "HTTPS"
        default: return nil
        }
    }

    public static func className(_ qclass: UInt16) -> String {
        switch qclass {
        case 1: return "IN"
        case 3: return "CH"
        case 4: return "HS"
        case 254: return "NONE"
        case 255: return "ANY"
        default: return "CLASS\(qclass)"
        }
    }

    private static let rcodes = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET",
        "NOTAUTH", "NOTZONE", "DSOTYPENI",
    ]

    public static func rcodeName(_ rcode: UInt16) -> String {
        if Int(rcode) < rcodes.count { return rcodes[Int(rcode)] }
        switch rcode {
        case 16: return "BADVERS"
        case 17: return "BADKEY"
        case 18: return "BADTIME"
        case 19: return "BADMODE"
        case 20: return "BADNAME"
        case 21: return "BADALG"
        case 22: return "BADTRUNC"
        case 23: return "BADCOOKIE"
        default: return "RCODE\(rcode)"
        }
    }

    /// The CIM `query_type`: the opcode's name.
    public static func opcodeName(_ opcode: UInt8) -> String {
        switch opcode {
        case 0: return "Query"
        case 1: return "IQuery"
        case 2: return "Status"
        case 4: return "Notify"
        case 5: return "Update"
        case 6: return "DSO"
        default: return "Opcode\(opcode)"
        }
    }

    /// Builds a presentation-form name label by label: `.` and `\` escaped, bytes outside
    /// printable ASCII as `\DDD`; no trailing dot, the root as ".".
    ///
    /// It also remembers the last few names it made that needed memory of their own (longer than
    /// 15 bytes): a name seen again (the question's name as the answers' owner, a CNAME target as
    /// the next record's owner, a query's name in its response) is the same String, not a new one.
    struct NameBuilder: DNSLabelSink {
        private var bytes: [UInt8] = []
        private var recent: [String] = []
        private var nextRecent = 0
        static let recentCount = 8

        init() {
            bytes.reserveCapacity(64)
            recent = Array(repeating: "", count: Self.recentCount)
        }

        mutating func reset() { bytes.removeAll(keepingCapacity: true) }

        mutating func appendLabel(_ label: UnsafeRawBufferPointer) {
            if !bytes.isEmpty { bytes.append(UInt8(ascii: ".")) }
            // The usual label (letters, digits, hyphens) needs no escape: one copy.
            if label.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ".") && $0 != UInt8(ascii: "\\") }) {
                bytes.append(contentsOf: label)
                return
            }
            for byte in label {
                switch byte {
                case UInt8(ascii: "."), UInt8(ascii: "\\"):
                    bytes.append(UInt8(ascii: "\\"))
                    bytes.append(byte)
                case 0x21...0x7E:
                    bytes.append(byte)
                default:
                    bytes.append(UInt8(ascii: "\\"))
                    bytes.append(UInt8(ascii: "0") + byte / 100)
                    bytes.append(UInt8(ascii: "0") + (byte / 10) % 10)
                    bytes.append(UInt8(ascii: "0") + byte % 10)
                }
            }
        }

        mutating func finish() -> String {
            if bytes.isEmpty { return "." }
            guard bytes.count > 15 else { return String(decoding: bytes, as: UTF8.self) }  // a small string: no memory
            for index in recent.indices where recent[index].utf8.count == bytes.count {
                let same = recent[index].utf8.withContiguousStorageIfAvailable { known in
                    bytes.withUnsafeBufferPointer { memcmp($0.baseAddress!, known.baseAddress!, known.count) == 0 }
                }
                if same == true { return recent[index] }
            }
            let name = String(decoding: bytes, as: UTF8.self)
            if !recent.isEmpty {
                recent[nextRecent] = name
                nextRecent = (nextRecent + 1) % recent.count
            }
            return name
        }
    }
}
