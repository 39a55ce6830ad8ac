/// Renders record data of the common types as presentation text; anything else (or anything that
/// does not parse) in RFC 3597's generic form `\# LENGTH HEX`.
struct DNSRecordRenderer {
    let message: UnsafeRawBufferPointer

    func render(type: UInt16, from start: Int, to end: Int) throws(DNSParseError) -> String {
        let data = UnsafeRawBufferPointer(rebasing: message[start..<end])
        switch type {
        case DNSNames.typeMX where data.count >= 3:
            let (exchange, next) = try name(at: start + 2)
            if next == end { return "\(u16(data, 0)) \(exchange)" }
        case DNSNames.typeSRV where data.count >= 7:
            let (target, next) = try name(at: start + 6)
            if next == end { return "\(u16(data, 0)) \(u16(data, 2)) \(u16(data, 4)) \(target)" }
        case DNSNames.typeSOA:
            let (mname, afterM) = try name(at: start)
            let (rname, afterR) = try name(at: afterM)
            if afterR + 20 == end {
                let numbers = (0..<5).map { index in
                    let at = afterR - start + index * 4
                    return String(UInt32(u16(data, at)) << 16 | UInt32(u16(data, at + 2)))
                }
                return ([mname, rname] + numbers).joined(separator: " ")
            }
        case DNSNames.typeTXT, 99:
            if let text = characterStrings(data) { return text }
        default:
            break
        }
        return Self.generic(data)
    }

    private func name(at offset: Int) throws(DNSParseError) -> (String, Int) {
        var builder = DNSNames.NameBuilder()
        let next = try DNSWireReader.walkName(message, from: offset, into: &builder)
        return (builder.finish(), next)
    }

    private func u16(_ data: UnsafeRawBufferPointer, _ at: Int) -> UInt16 {
        UInt16(data[at]) << 8 | UInt16(data[at + 1])
    }

    /// TXT: one or more <character-string>s, each quoted, `"` and `\` escaped, others as `\DDD`.
    private func characterStrings(_ data: UnsafeRawBufferPointer) -> String? {
        var out: [UInt8] = []
        var position = 0
        while position < data.count {
            let length = Int(data[position])
            guard position + 1 + length <= data.count else { return nil }
            if !out.isEmpty { out.append(UInt8(ascii: " ")) }
            out.append(UInt8(ascii: "\""))
            for byte in data[(position + 1)..<(position + 1 + length)] {
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                    out.append(UInt8(ascii: "\\"))
                    out.append(byte)
                case 0x20...0x7E:
                    out.append(byte)
                default:
                    out.append(contentsOf: Array("\\\(byte / 100)\((byte / 10) % 10)\(byte % 10)".utf8))
                }
            }
            out.append(UInt8(ascii: "\""))
            position += 1 + length
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func generic(_ data: UnsafeRawBufferPointer) -> String {
        "\\# \(data.count)" + (data.isEmpty ? "" : " " + hex(data))
    }

    static func hex<Bytes: Sequence<UInt8>>(_ data: Bytes) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in data {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// EDNS Client Subnet (RFC 7871): "address/source-prefix", or nil when malformed.
    static func clientSubnet(_ option: UnsafeRawBufferPointer) -> String? {
        guard option.count >= 4 else { return nil }
        let family = UInt16(option[0]) << 8 | UInt16(option[1])
        let sourcePrefix = Int(option[2])
        let address = option.dropFirst(4)
        switch family {
        case 1 where address.count <= 4 && sourcePrefix <= 32:
            let padded = Array(address) + Array(repeating: 0, count: 4 - address.count)
            return IPAddressFormatter.string(fromIPv4: padded) + "/\(sourcePrefix)"
        case 2 where address.count <= 16 && sourcePrefix <= 128:
            let padded = Array(address) + Array(repeating: 0, count: 16 - address.count)
            return IPAddressFormatter.string(fromIPv6: padded) + "/\(sourcePrefix)"
        default:
            return nil
        }
    }
}

/// IPv4 dotted quads and RFC 5952 IPv6 text.
public enum IPAddressFormatter {
    public static func string<Bytes: Collection<UInt8>>(fromIPv4 bytes: Bytes) -> String {
        bytes.map { String($0) }.joined(separator: ".")
    }

    public static func string<Bytes: Collection<UInt8>>(fromIPv6 bytes: Bytes) -> String {
        guard bytes.count == 16 else { return DNSRecordRenderer.hex(bytes) }
        let address = Array(bytes).withUnsafeBytes { IPv6Bytes($0) }
        return String(unsafeUninitializedCapacity: maxIPv6Length) { format(address, into: $0.baseAddress!) }
    }

    /// The longest RFC 5952 text: eight groups of four hex digits and seven colons, or ::ffff: and
    /// a dotted quad.
    static let maxIPv6Length = 45

    /// Writes the RFC 5952 text of `address` at `out` (room for `maxIPv6Length` bytes) without
    /// allocating; returns the number of bytes written.
    static func format(_ address: IPv6Bytes, into out: UnsafeMutablePointer<UInt8>) -> Int {
        func group(_ index: Int) -> UInt16 {
            UInt16(truncatingIfNeeded: (index < 4 ? address.high : address.low) >> UInt64(48 - 16 * (index % 4)))
        }
        // The longest run of two or more zero groups becomes "::" (the first, on a tie).
        var bestStart = -1, bestLength = 0, runStart = -1
        for index in 0...8 {
            if index < 8 && group(index) == 0 {
                if runStart < 0 { runStart = index }
            } else if runStart >= 0 {
                if index - runStart > bestLength && index - runStart >= 2 {
                    bestStart = runStart
                    bestLength = index - runStart
                }
                runStart = -1
            }
        }
        var count = 0
        func put(_ byte: UInt8) {
            out[count] = byte
            count += 1
        }
        func putDecimal(_ value: UInt8) {
            if value >= 100 { put(UInt8(ascii: "0") + value / 100) }
            if value >= 10 { put(UInt8(ascii: "0") + value / 10 % 10) }
            put(UInt8(ascii: "0") + value % 10)
        }
        // IPv4-mapped addresses read as ::ffff:a.b.c.d.
        if bestStart == 0 && bestLength == 5 && group(5) == 0xFFFF {
            for byte in "::ffff:".utf8 { put(byte) }
            for shift in stride(from: UInt64(24), through: 0, by: -8) {
                if shift != 24 { put(UInt8(ascii: ".")) }
                putDecimal(UInt8(truncatingIfNeeded: address.low >> shift))
            }
            return count
        }
        let digits: StaticString = "0123456789abcdef"
        var index = 0
        while index < 8 {
            if index == bestStart {
                put(UInt8(ascii: ":"))
                put(UInt8(ascii: ":"))
                index += bestLength
                continue
            }
            if index > 0 && index != bestStart + bestLength { put(UInt8(ascii: ":")) }
            let value = group(index)
            var started = false
            for shift in stride(from: 12, through: 0, by: -4) {
                let nibble = Int(value >> UInt16(shift) & 0xF)
                if nibble != 0 || started || shift == 0 {
                    put(digits.utf8Start[nibble])
                    started = true
                }
            }
            index += 1
        }
        return count
    }
}
