/// Builds DNS wire-format messages for tests (uncompressed unless a test adds pointers itself).
public enum DNSWireBuilder {
    public struct Record {
        public var name: String
        public var type: UInt16
        public var ttl: UInt32
        public var data: [UInt8]

        public init(name: String, type: UInt16, ttl: UInt32 = 300, data: [UInt8]) {
            self.name = name
            self.type = type
            self.ttl = ttl
            self.data = data
        }

        public static func a(_ name: String, _ address: [UInt8], ttl: UInt32 = 300) -> Record {
            Record(name: name, type: 1, ttl: ttl, data: address)
        }

        public static func aaaa(_ name: String, _ address: [UInt8], ttl: UInt32 = 300) -> Record {
            Record(name: name, type: 28, ttl: ttl, data: address)
        }

        public static func cname(_ name: String, _ target: String, ttl: UInt32 = 300) -> Record {
            Record(name: name, type: 5, ttl: ttl, data: DNSWireBuilder.name(target))
        }
    }

    /// A wire-format name: "www.example.com" → 3www7example3com0.
    public static func name(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        for label in text.split(separator: ".") where !label.isEmpty {
            bytes.append(UInt8(label.utf8.count))
            bytes += Array(label.utf8)
        }
        return bytes + [0]
    }

    public static func query(id: UInt16 = 0x1234, name: String, type: UInt16 = 1, recursionDesired: Bool = true) -> [UInt8] {
        message(id: id, flags: recursionDesired ? 0x0100 : 0, name: name, type: type, answers: [])
    }

    public static func response(
        id: UInt16 = 0x1234, name: String, type: UInt16 = 1, rcode: UInt8 = 0, answers: [Record], edns: Bool = false
    ) -> [UInt8] {
        message(id: id, flags: 0x8180 | UInt16(rcode & 0xF), name: name, type: type, answers: answers, edns: edns)
    }

    public static func message(
        id: UInt16, flags: UInt16, name: String, type: UInt16, answers: [Record], edns: Bool = false
    ) -> [UInt8] {
        var bytes: [UInt8] = []
        func u16(_ value: UInt16) { bytes += [UInt8(value >> 8), UInt8(value & 0xFF)] }
        func u32(_ value: UInt32) { u16(UInt16(value >> 16)); u16(UInt16(value & 0xFFFF)) }
        u16(id)
        u16(flags)
        u16(1)
        u16(UInt16(answers.count))
        u16(0)
        u16(edns ? 1 : 0)
        bytes += Self.name(name)
        u16(type)
        u16(1)
        for record in answers {
            bytes += Self.name(record.name)
            u16(record.type)
            u16(1)
            u32(record.ttl)
            u16(UInt16(record.data.count))
            bytes += record.data
        }
        if edns {
            bytes += [0]
            u16(41)
            u16(1232)
            u32(0x0000_8000)  // DO
            u16(0)
        }
        return bytes
    }
}
