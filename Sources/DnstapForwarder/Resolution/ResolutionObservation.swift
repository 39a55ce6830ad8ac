#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IP address as a map key: IPv6 bytes, IPv4 held as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
public struct IPAddressKey: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(_ address: IPv4Bytes) {
        high = 0
        low = 0x0000_FFFF_0000_0000 | UInt64(address.value)
    }

    public init(_ address: IPv6Bytes) {
        high = address.high
        low = address.low
    }

    /// Parses the presentation form of an IPv4 or IPv6 address (nil for anything else).
    public init?(_ text: String) {
        guard !text.isEmpty, text.utf8.count <= 64 else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(IPv4Bytes(value: UInt32(bigEndian: v4.s_addr)))
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let parsed = withUnsafeBytes(of: &v6) { IPv6Bytes($0) }
        self.init(parsed)
    }

    public var isIPv4: Bool { high == 0 && low >> 32 == 0x0000_FFFF }

    public var description: String {
        if isIPv4 { return IPAddressFormatter.string(fromIPv4: IPv4Bytes(value: UInt32(truncatingIfNeeded: low)).bytes) }
        return IPAddressFormatter.string(fromIPv6: IPv6Bytes(high: high, low: low).bytes)
    }
}

extension IPv4Bytes {
    init(value: UInt32) { self.value = value }
}

extension IPv6Bytes {
    init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }
}

/// What one DNS response says about one address: it was the answer for `name`.
public struct ResolutionObservation: Sendable, Equatable {
    public var address: IPAddressKey
    /// The queried name, lowercased.
    public var name: String
    /// The CNAME targets followed from `name` to the owner of the address (empty without CNAMEs,
    /// so a plain answer allocates nothing for it).
    public var targets: [String]
    /// The smallest TTL along the chain and of the address record, seconds.
    public var ttl: UInt32
    /// When the response was given (dnstap response time, else receipt), microseconds since the epoch.
    public var seenAtMicros: Int64

    /// From the queried name to the owner of the address; the last one is the canonical name.
    public var chain: [String] { [name] + targets }

    public init(address: IPAddressKey, name: String, targets: [String] = [], ttl: UInt32, seenAtMicros: Int64) {
        self.address = address
        self.name = name
        self.targets = targets
        self.ttl = ttl
        self.seenAtMicros = seenAtMicros
    }
}

/// Reads address → name facts out of DNS responses (PROTOCOLS.md §4.5), strictly: only addresses
/// owned by the end of the queried name's CNAME chain count.
public enum ResolutionExtractor {
    /// CNAME hops followed at most; a longer chain is cut there.
    public static let maxChainHops = 16
    /// Answer records looked at, at most (a larger answer is unusual and is cut).
    static let maxAnswers = 64

    /// Appends the observations of `message` to `observations`; returns the number of addresses
    /// in the answer that were not for the queried name's chain end (ignored, and counted).
    @discardableResult
    public static func extract(
        from message: DNSMessage, seenAtMicros: Int64, into observations: inout [ResolutionObservation]
    ) -> Int {
        guard let question = message.question,
              mayMap(message, qclass: question.qclass, types: message.answers.prefix(maxAnswers).lazy.map(\.type))
        else { return 0 }
        let answers = message.answers
        let count = min(answers.count, maxAnswers)

        let queried = question.name.asciiLowercased()
        var targets: [String] = []
        var ttl = UInt32.max
        var current = queried
        // Follow the chain: RR order is not guaranteed, so look through every answer each hop.
        hops: for _ in 0..<maxChainHops {
            for index in 0..<count where answers[index].type == 5 && answers[index].rrclass == 1 {
                guard case .name(let target) = answers[index].data, answers[index].name.equalsLowercased(current) else { continue }
                let next = target.asciiLowercased()
                if next == queried || targets.contains(next) { break hops }  // a loop: keep what we have
                targets.append(next)
                ttl = min(ttl, answers[index].ttl)
                current = next
                continue hops
            }
            break
        }

        var ignored = 0
        for index in 0..<count where answers[index].type == 1 || answers[index].type == 28 {
            guard answers[index].rrclass == 1, answers[index].name.equalsLowercased(current) else {
                ignored += 1
                continue
            }
            let address: IPAddressKey
            switch answers[index].data {
            case .ipv4(let bytes): address = IPAddressKey(bytes)
            case .ipv6(let bytes): address = IPAddressKey(bytes)
            default: continue
            }
            observations.append(ResolutionObservation(
                address: address, name: queried, targets: targets, ttl: min(ttl, answers[index].ttl), seenAtMicros: seenAtMicros))
        }
        return ignored
    }

    /// The same for a message parsed in place: its names are made Strings only when it has an
    /// address to map.
    static func extract(
        from message: DNSWireMessage, names: inout DNSNames.NameBuilder, seenAtMicros: Int64,
        into observations: inout [ResolutionObservation]
    ) -> Int {
        guard let question = message.question,
              mayMap(message, qclass: question.qclass, types: message.answers.prefix(maxAnswers).lazy.map(\.type))
        else { return 0 }
        return extract(from: DNSMessage(message, names: &names), seenAtMicros: seenAtMicros, into: &observations)
    }

    /// A successful IN query answered with at least one address among the answers looked at.
    private static func mayMap(_ header: some DNSMessageHeader, qclass: UInt16, types: some Sequence<UInt16>) -> Bool {
        header.isResponse && header.opcode == 0 && header.rcode == 0 && qclass == 1 && types.contains { $0 == 1 || $0 == 28 }
    }
}

extension String {
    /// ASCII-only lowercasing (DNS names compare case-insensitively in ASCII only, RFC 4343).
    func asciiLowercased() -> String {
        guard utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) else { return self }
        return String(decoding: utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    /// Whether self, lowercased in ASCII, equals `lowercased` (already lowercase).
    func equalsLowercased(_ lowercased: String) -> Bool {
        if self == lowercased { return true }  // the usual case: names arrive in lowercase
        guard utf8.count == lowercased.utf8.count else { return false }
        var mine = self
        var theirs = lowercased
        return mine.withUTF8 { left in
            theirs.withUTF8 { right in
                for index in 0..<left.count {
                    let byte = left[index]
                    if (byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte) != right[index] { return false }
                }
                return true
            }
        }
    }
}
