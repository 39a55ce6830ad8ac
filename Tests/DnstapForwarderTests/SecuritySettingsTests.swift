import NIOCore
import NIOEmbedded
import Testing

@testable import DnstapForwarder

@Suite("allow-list, TLS settings, cap per peer")
struct SecuritySettingsTests {
    @Test("CIDRs: IPv4 and IPv6, bare hosts, host bits ignored, IPv4-mapped IPv6 matched as IPv4")
    func allowList() throws {
        let list = try AllowList(parsing: " 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32, 172.16.5.9/12 ")
        #expect(list.networks.map(\.prefixLength) == [8, 32, 32, 12])
        for allowed in ["10.0.0.1", "10.255.255.255", "192.0.2.7", "2001:db8::1", "2001:db8:ffff::", "172.31.0.1", "::ffff:10.1.2.3", "[2001:db8::5]"] {
            #expect(list.allows(allowed), "\(allowed)")
        }
        for refused in ["11.0.0.1", "192.0.2.8", "2001:db9::1", "172.32.0.1", "::ffff:11.0.0.1", "::1", "127.0.0.1", "not an address", ""] {
            #expect(!list.allows(refused), "\(refused)")
        }
        #expect(try AllowList(parsing: "0.0.0.0/0").allows("203.0.113.9"))
        #expect(!(try AllowList(parsing: "0.0.0.0/0").allows("2001:db8::1")), "an IPv4 network never matches a real IPv6 address")
        #expect(try AllowList(parsing: "::/0").allows("2001:db8::1"))
        #expect(try AllowList(parsing: "fe80::/10").allows("fe80::1%eth0"), "a zone does not take part")
        for bad in ["10.0.0.0/33", "2001:db8::/129", "10.0.0/8", "10.0.0.0/-1", "example.com", "10.0.0.0/8/9", ",", ""] {
            #expect(throws: InvalidValue.self, "\(bad)") { try AllowList(parsing: bad) }
        }
    }

    @Test("TLS and allow-list settings: each needs what it secures, and half a TLS configuration is an error")
    func tlsSettings() throws {
        let tcp: [Setting: String] = [.tcpListen: "127.0.0.1:6000"]
        let full = try ForwarderConfiguration.resolve(
            flags: tcp.merging([.tlsCertFile: "/c.crt", .tlsKeyFile: "/c.key", .tlsClientCAFile: "/ca.crt"]) { $1 }, environment: [:])
        #expect(full.tls == TLSFiles(certificate: "/c.crt", key: "/c.key", clientCA: "/ca.crt"))
        let fromEnvironment = try ForwarderConfiguration.resolve(flags: [:], environment: [
            "DNSTAP_TCP_LISTEN": "127.0.0.1:6000", "DNSTAP_TLS_CERT_FILE": "/c.crt", "DNSTAP_TLS_KEY_FILE": "/c.key",
            "DNSTAP_ALLOW_FROM": "10.0.0.0/8", "DNSTAP_MAX_CONNECTIONS_PER_PEER": "4",
        ])
        #expect(fromEnvironment.tls == TLSFiles(certificate: "/c.crt", key: "/c.key"))
        #expect(fromEnvironment.allowFrom?.description == "10.0.0.0/8")
        #expect(fromEnvironment.maxConnectionsPerPeer == 4)
        let plain = try ForwarderConfiguration.resolve(flags: tcp, environment: [:])
        #expect(plain.tls == nil && plain.allowFrom == nil && plain.maxConnectionsPerPeer == nil)

        let invalid: [[Setting: String]] = [
            tcp.merging([.tlsCertFile: "/c.crt"]) { $1 },
            tcp.merging([.tlsKeyFile: "/c.key"]) { $1 },
            tcp.merging([.tlsClientCAFile: "/ca.crt"]) { $1 },
            [.tlsCertFile: "/c.crt", .tlsKeyFile: "/c.key"],
            [.allowFrom: "10.0.0.0/8"],
            tcp.merging([.allowFrom: "10.0.0.0/99"]) { $1 },
            tcp.merging([.maxConnectionsPerPeer: "-1"]) { $1 },
        ]
        for flags in invalid {
            #expect(throws: ConfigurationError.self, "\(flags)") { try ForwarderConfiguration.resolve(flags: flags, environment: [:]) }
        }
    }

    @Test("the cap per peer: per address, released on close, off without a limit")
    func perPeer() {
        let registry = ConnectionRegistry(maxConnections: 10, maxPerPeer: 2)
        #expect(registry.tryReservePeer("192.0.2.1"))
        #expect(registry.tryReservePeer("192.0.2.1"))
        #expect(!registry.tryReservePeer("192.0.2.1"))
        #expect(registry.tryReservePeer("192.0.2.2"), "another address has its own slots")
        #expect(registry.tryReservePeer(nil), "no address (the unix socket): not capped")
        registry.releasePeer("192.0.2.1")
        #expect(registry.openConnections(from: "192.0.2.1") == 1)
        #expect(registry.tryReservePeer("192.0.2.1"))
        registry.releasePeer("192.0.2.2")
        #expect(registry.openConnections(from: "192.0.2.2") == 0)
        let uncapped = ConnectionRegistry(maxConnections: 10)
        for _ in 0..<50 { #expect(uncapped.tryReservePeer("192.0.2.1")) }
    }

    @Test("a TLS error is a refusal by its BoringSSL reason")
    func refusalReasons() {
        struct Failure: Error, CustomStringConvertible { let description: String }
        #expect(TLSCredentials.refusal(for: Failure(description: "error:100000c0:SSL routines:OPENSSL_internal:PEER_DID_NOT_RETURN_A_CERTIFICATE")) == .noClientCertificate)
        #expect(TLSCredentials.refusal(for: Failure(description: "error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED")) == .untrustedCertificate)
        #expect(TLSCredentials.refusal(for: Failure(description: "error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER")) == .tlsHandshakeFailed)
    }
}
