import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import Testing

/// Real senders over mutual TLS: Unbound's own dnstap TLS, and BIND (whose dnstap has no TLS)
/// through Debian's stunnel4 on the resolver's side: the README's recipes, run as written there.
@Suite("real senders over mutual TLS", .serialized)
struct TLSPeerTests {
    static func ask(_ port: Int, until process: WatchedProcess, name: String) async throws {
        let dig = try tool("dig")
        try await within(60, "\(name) to answer") {
            while true {
                let probe = try await run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=1", "host2.fwd.test", "A"])
                if probe.status == 0 && probe.output.contains("10.99.0.2") { return }
                if !process.process.isRunning { throw TestError.failed("\(name) exited: \(process.text)") }
            }
        }
        for (query, type) in [("host1.fwd.test", "A"), ("cdn1.fwd.test", "AAAA")] {
            let answer = try await run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=5", query, type])
            #expect(answer.status == 0, "dig \(query): \(answer.output)")
        }
    }

    /// Every event came from the resolver (its identity) and is named by its certificate (the
    /// sender); the names dig asked are among the responses.
    static func expectNamedBySender(_ lines: [String], identity: String) {
        let events = TLSListenerTests.events(lines)
        #expect(!events.isEmpty)
        #expect(events.allSatisfy { $0["sender"] as? String == "resolver1.example" }, "\(events.first ?? [:])")
        #expect(events.allSatisfy { $0["identity"] as? String == identity })
        #expect(Set(responses(lines).compactMap { $0["query"] as? String }).isSuperset(of: ["host1.fwd.test", "cdn1.fwd.test"]))
    }

    static func responses(_ lines: [String]) -> [[String: Any]] {
        TLSListenerTests.events(lines).filter { $0["dnstap_type"] as? String == "CLIENT_RESPONSE" }
    }

    @Test("Unbound with dnstap-tls and a client certificate: its events arrive with the certificate's name as sender")
    func unbound() async throws {
        let unbound = try tool("unbound")
        let directory = try TemporaryDirectory()
        let certificates = try await TestCertificates.make(in: directory.path)
        let (lines, summary) = try await withForwarder(TLSListenerTests.tlsConfiguration(certificates)) { forwarder -> [String] in
            try UnboundTests.zone.write(toFile: directory.path + "/fwd.test.zone", atomically: true, encoding: .utf8)
            let port = try freePort()
            let forwarderPort = forwarder.tcpAddress!.port!
            // The README's Unbound configuration for mutual TLS, in place of the unix socket.
            let config = try UnboundTests.config(directory: directory.path, port: port, socket: "unused")
                .replacingOccurrences(of: "  dnstap-socket-path: \"unused\"\n", with: """
                      dnstap-ip: 127.0.0.1@\(forwarderPort)
                      dnstap-tls: yes
                      dnstap-tls-server-name: \(TestCertificates.serverName)
                      dnstap-tls-cert-bundle: \(certificates.caCertificate)
                      dnstap-tls-client-key-file: \(certificates.resolver.key)
                      dnstap-tls-client-cert-file: \(certificates.resolver.certificate)

                    """)
            #expect(config.contains("dnstap-tls: yes"))
            try config.write(toFile: directory.path + "/unbound.conf", atomically: true, encoding: .utf8)
            let resolver = try WatchedProcess(unbound, ["-d", "-c", directory.path + "/unbound.conf"])
            try await Self.ask(port, until: resolver, name: "unbound")
            try await within(60, "unbound's events over TLS") {
                await forwarder.sink.waitUntil { Self.responses($0).count >= 3 }
            }
            resolver.signal(SIGTERM)
            _ = try await within(30, "unbound to stop") { await resolver.waitForExit() }
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            #expect(forwarder.statistics.connectionsRejected.load(ordering: .relaxed) == 0)
            return forwarder.sink.lines
        }
        Self.expectNamedBySender(lines, identity: "test-unbound")
        #expect(summary.undelivered == 0)
    }

    /// config/stunnel/dnstap-client.conf, filled in: stunnel on the resolver's side, accepting the
    /// resolver's plain dnstap on a unix socket and connecting to the forwarder with TLS.
    static func stunnelConfig(socket: String, forwarder: String, certificates: TestCertificates) throws -> String {
        let template = try String(
            contentsOf: packageRoot.appendingPathComponent("config/stunnel/dnstap-client.conf"), encoding: .utf8)
        // In order: the connect address before the bare name in it.
        let values: [(String, String)] = [
            ("/run/dnstap/dnstap.sock", socket), ("dnstap-forwarder.example.net:6000", forwarder),
            ("dnstap-forwarder.example.net", TestCertificates.serverName),
            ("/etc/stunnel/dnstap/resolver.crt", certificates.resolver.certificate),
            ("/etc/stunnel/dnstap/resolver.key", certificates.resolver.key),
            ("/etc/stunnel/dnstap/ca.crt", certificates.caCertificate),
            ("setuid = bind\n", ""), ("setgid = bind\n", ""), ("pid = /run/stunnel-dnstap.pid", "pid ="),
            ("foreground = no", "foreground = yes"),
        ]
        return values.reduce(template) { text, pair in text.replacingOccurrences(of: pair.0, with: pair.1) }
    }

    @Test("BIND through stunnel4 with a client certificate (the recipe for resolvers without dnstap TLS)")
    func bindThroughStunnel() async throws {
        let stunnel = try tool("stunnel4")
        let named = try tool("named")
        let directory = try TemporaryDirectory()
        let certificates = try await TestCertificates.make(in: directory.path)
        let (lines, summary) = try await withForwarder(TLSListenerTests.tlsConfiguration(certificates)) { forwarder -> [String] in
            let socket = directory.path + "/stunnel.sock"
            let config = try Self.stunnelConfig(
                socket: socket, forwarder: "127.0.0.1:\(forwarder.tcpAddress!.port!)", certificates: certificates)
            try config.write(toFile: directory.path + "/stunnel.conf", atomically: true, encoding: .utf8)
            let tunnel = try WatchedProcess(stunnel, [directory.path + "/stunnel.conf"])
            defer { tunnel.signal(SIGKILL) }
            guard try await within(30, "stunnel to start", { await tunnel.waitFor("Configuration successful") }) else {
                throw TestError.failed("stunnel did not start: \(tunnel.text)")
            }
            let port = try freePort()
            let arguments = try ResolverSpec.bind.configure(directory.path, port, socket, 0)
            let resolver = try WatchedProcess(named, arguments)
            try await Self.ask(port, until: resolver, name: "named")
            do {
                try await within(60, "BIND's events through stunnel") {
                    await forwarder.sink.waitUntil { Self.responses($0).count >= 3 }
                }
            } catch {
                throw TestError.failed("\(error): stunnel: \(tunnel.text)\nnamed: \(resolver.text.suffix(3000))")
            }
            resolver.signal(SIGTERM)
            _ = try await within(30, "named to stop") { await resolver.waitForExit() }
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            #expect(forwarder.statistics.connectionsRejected.load(ordering: .relaxed) == 0, "\(tunnel.text)")
            return forwarder.sink.lines
        }
        Self.expectNamedBySender(lines, identity: "test-bind")
        #expect(summary.undelivered == 0)
    }
}
