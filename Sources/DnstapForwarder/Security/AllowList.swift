#if canImport(Glibc)
import Glibc
#endif

/// `-allow-from`: the networks a TCP sender may connect from, IPv4 and IPv6 CIDRs. A bare address
/// is one host (`/32`, `/128`). An IPv4 sender reaching a dual-stack socket as `::ffff:a.b.c.d` is
/// matched as the IPv4 address it is.
///
/// Pure: parsed once at start, read by every accept.
public struct AllowList: Equatable, Sendable, CustomStringConvertible {
    public struct Network: Equatable, Sendable, CustomStringConvertible {
        /// 4 or 16 bytes, the host bits cleared.
        public let address: [UInt8]
        public let prefixLength: Int
        let text: String

        public var description: String { text }

        func contains(_ candidate: [UInt8]) -> Bool {
            guard candidate.count == address.count else { return false }
            var bits = prefixLength
            for index in address.indices where bits > 0 {
                let mask: UInt8 = bits >= 8 ? 0xFF : ~(0xFF >> UInt8(bits))
                if candidate[index] & mask != address[index] { return false }
                bits -= 8
            }
            return true
        }
    }

    public let networks: [Network]

    public var description: String { networks.map(\.description).joined(separator: ",") }

    /// Parses a comma-separated list (`10.0.0.0/8, 2001:db8::/32, 192.0.2.7`).
    public init(parsing text: String) throws {
        var networks: [Network] = []
        for item in text.split(separator: ",") {
            let entry = String(item).trimmingSpaces()
            guard !entry.isEmpty else { continue }
            networks.append(try Self.network(entry))
        }
        guard !networks.isEmpty else { throw InvalidValue("expected CIDRs such as 10.0.0.0/8,::1/128") }
        self.networks = networks
    }

    /// Whether an address (4 or 16 bytes) is in the list.
    public func allows(_ address: [UInt8]) -> Bool {
        let candidate = Self.unmapped(address)
        return networks.contains { $0.contains(candidate) }
    }

    /// Whether a textual address (as `SocketAddress.ipAddress` gives it) is in the list.
    public func allows(_ address: String) -> Bool {
        guard let bytes = IPAddressText.parse(address) else { return false }
        return allows(bytes)
    }

    private static func network(_ entry: String) throws -> Network {
        let parts = entry.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddressText.parse(String(parts[0])) else {
            throw InvalidValue("'\(entry)' is not an IPv4 or IPv6 address or CIDR")
        }
        let bits = address.count * 8
        let prefix: Int
        if parts.count == 2 {
            guard let value = Int(parts[1]), (0...bits).contains(value) else {
                throw InvalidValue("'\(entry)': the prefix length must be 0 to \(bits)")
            }
            prefix = value
        } else {
            prefix = bits
        }
        var masked = address
        var remaining = prefix
        for index in masked.indices {
            let mask: UInt8 = remaining >= 8 ? 0xFF : (remaining <= 0 ? 0 : ~(0xFF >> UInt8(remaining)))
            masked[index] &= mask
            remaining -= 8
        }
        return Network(address: masked, prefixLength: prefix, text: entry)
    }

    /// `::ffff:a.b.c.d` as the IPv4 address it carries.
    static func unmapped(_ address: [UInt8]) -> [UInt8] {
        guard address.count == 16, address[0..<10].allSatisfy({ $0 == 0 }), address[10] == 0xFF, address[11] == 0xFF else {
            return address
        }
        return Array(address[12..<16])
    }
}

/// Textual IP addresses to bytes, with `inet_pton` (so exactly the forms the C library accepts).
enum IPAddressText {
    static func parse(_ text: String) -> [UInt8]? {
        var host = text
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        // A zone (fe80::1%eth0) does not take part in matching.
        if let percent = host.firstIndex(of: "%") { host = String(host[..<percent]) }
        if host.contains(":") {
            var bytes = [UInt8](repeating: 0, count: 16)
            return inet_pton(AF_INET6, host, &bytes) == 1 ? bytes : nil
        }
        var bytes = [UInt8](repeating: 0, count: 4)
        return inet_pton(AF_INET, host, &bytes) == 1 ? bytes : nil
    }
}
