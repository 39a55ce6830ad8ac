import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import NIOCore
import NIOSSL
import Testing

/// The TCP listener secured: TLS, mutual TLS, the allow-list, the cap per peer, the sender of
/// every event, refusals by reason, certificate rotation. Certificates made with openssl.
@Suite("securing the TCP listener", .serialized)
struct TLSListenerTests {
    static func tlsConfiguration(_ certificates: TestCertificates, clientCA: Bool = true) -> (inout ForwarderConfiguration) -> Void {
        { configuration in
            configuration.tcpListen = HostPort(host: "127.0.0.1", port: 0)
            configuration.tls = TLSFiles(
                certificate: certificates.serverCertificate, key: certificates.serverKey,
                clientCA: clientCA ? certificates.caCertificate : nil)
        }
    }

    static func events(_ lines: [String]) -> [[String: Any]] {
        lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    @Test("mutual TLS: a client certificate from the CA gets in; each event's sender is the certificate's first DNS name, else its CN")
    func mutualTLS() async throws {
        let directory = try TemporaryDirectory()
        let certificates = try await TestCertificates.make(in: directory.path)
        let (lines, summary) = try await withForwarder(Self.tlsConfiguration(certificates)) { forwarder in
            let address = forwarder.tcpAddress!
            let resolver = try await FrameStreamsTestClient.connect(
                to: address, tls: (try certificates.clientContext(certificates.resolver), nil))
            #expect(try await resolver.handshake() == .accept)
            try await resolver.sendData(DnstapBuilder.pair(name: "san.fwd.test", id: 1))
            let cnOnly = try await FrameStreamsTestClient.connect(
                to: address, tls: (try certificates.clientContext(certificates.commonNameOnly), nil))
            #expect(try await cnOnly.handshake() == .accept)
            try await cnOnly.sendData(DnstapBuilder.pair(name: "cn.fwd.test", id: 2))
            try await within(30, "events over TLS") { await forwarder.sink.waitForCount(4) }

            // Shown in /v1/connections and /stats while open.
            let connections = try await forwarder.admin("/v1/connections?client_id=tls-test")
            let active = connections.json["active"] as? [[String: Any]] ?? []
            #expect(Set(active.compactMap { $0["sender"] as? String }) == ["resolver1.example", "resolver-cn-only"])
            #expect(active.allSatisfy { $0["transport"] as? String == "tls" })
            let stats = try await forwarder.admin("/stats")
            let senders = stats.json["senders"] as? [[String: Any]] ?? []
            #expect(Set(senders.compactMap { $0["sender"] as? String }) == ["resolver1.example", "resolver-cn-only"])

            #expect(try await resolver.stop() == .finish)
            #expect(try await cnOnly.stop() == .finish)
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            #expect(forwarder.statistics.connectionsRejected.load(ordering: .relaxed) == 0)
            return forwarder.sink.lines
        }
        let events = Self.events(lines)
        #expect(events.count == 4)
        for event in events {
            let expected = (event["query"] as? String) == "san.fwd.test" ? "resolver1.example" : "resolver-cn-only"
            #expect(event["sender"] as? String == expected, "\(event)")
            #expect(event["identity"] as? String == "test-resolver", "the resolver's own identity stays")
        }
        #expect(summary.undelivered == 0)
    }

    @Test("refused by reason, counted, no slot held: plain Frame Streams, garbage, no certificate, another CA, expired")
    func refusals() async throws {
        let directory = try TemporaryDirectory()
        let certificates = try await TestCertificates.make(in: directory.path)
        let recorder = LogRecorder()
        _ = try await withForwarder(Self.tlsConfiguration(certificates), logger: recorder.logger()) { forwarder in
            let address = forwarder.tcpAddress!
            let plain = try await FrameStreamsTestClient.connect(to: address)
            #expect(try await plain.handshake() == nil, "a plain Frame Streams client gets no ACCEPT")
            await plain.waitForClose()

            let garbage = try await FrameStreamsTestClient.connect(to: address)
            try await garbage.send(Array(repeating: 0x41, count: 300))
            await garbage.waitForClose()

            for (client, what) in [(nil, "no certificate"), (certificates.otherCA, "another CA"), (certificates.expired, "expired")] {
                let refused = try await FrameStreamsTestClient.connect(to: address, tls: (try certificates.clientContext(client), nil))
                #expect(try await refused.handshake() == nil, "\(what): refused")
                await refused.waitForClose()
            }
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            let refusedBy = forwarder.statistics.rejectedByReason
            #expect(refusedBy[.tlsHandshakeFailed] == 2, "\(refusedBy)")
            #expect(refusedBy[.noClientCertificate] == 1, "\(refusedBy)")
            #expect(refusedBy[.untrustedCertificate] == 2, "\(refusedBy)")
            #expect(forwarder.statistics.closedByReason[.tlsRefused] == 5)
            #expect(forwarder.sink.lines.isEmpty)

            let metrics = try PrometheusText(try await forwarder.admin("/metrics").body)
            #expect(metrics["dnstap_connections_rejected_total{reason=\"tls_handshake_failed\"}"] == 2)
            #expect(metrics["dnstap_connections_rejected_total{reason=\"no_client_certificate\"}"] == 1)
            #expect(metrics["dnstap_connections_rejected_total{reason=\"unknown_ca_or_expired\"}"] == 2)
            let stats = try await forwarder.admin("/stats")
            let byReason = (stats.json["connections"] as? [String: Any])?["rejected_by_reason"] as? [String: Int]
            #expect(byReason?["unknown_ca_or_expired"] == 2)
            return ()
        }
        #expect(recorder.lines.contains { $0.contains("TLS connection refused: the client sent no certificate") })
        #expect(recorder.lines.contains { $0.contains("TLS connection refused: the client certificate is not from the client CA") })
        #expect(recorder.lines.contains { $0.contains("TLS connection refused: the handshake failed") })
    }

    @Test("-allow-from closes other addresses at accept, before any TLS; -max-connections-per-peer caps one address")
    func admission() async throws {
        let directory = try TemporaryDirectory()
        let certificates = try await TestCertificates.make(in: directory.path)
        _ = try await withForwarder({
            Self.tlsConfiguration(certificates)(&$0)
            $0.allowFrom = try! AllowList(parsing: "10.0.0.0/8, 2001:db8::/32")
        }) { forwarder in
            let outsider = try await FrameStreamsTestClient.connect(to: forwarder.tcpAddress!)
            #expect(await outsider.waitForClose() == 0, "closed at accept: not one byte of TLS from the server")
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            #expect(forwarder.statistics.rejectedByReason[.notAllowed] == 1)
            #expect(forwarder.statistics.connectionsAccepted.load(ordering: .relaxed) == 0)
            return ()
        }

        _ = try await withForwarder({
            $0.tcpListen = HostPort(host: "127.0.0.1", port: 0)
            $0.allowFrom = try! AllowList(parsing: "127.0.0.0/8,::1")
            $0.maxConnectionsPerPeer = 2
        }) { forwarder in
            var open: [FrameStreamsTestClient] = []
            for _ in 0..<2 {
                let client = try await FrameStreamsTestClient.connect(to: forwarder.tcpAddress!)
                #expect(try await client.handshake() == .accept)
                open.append(client)
            }
            let third = try await FrameStreamsTestClient.connect(to: forwarder.tcpAddress!)
            #expect(try await third.handshake() == nil, "over the cap per peer")
            #expect(forwarder.statistics.rejectedByReason[.perPeerCap] == 1)
            // The unix socket is not capped per peer (it has no address).
            let local = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            #expect(try await local.handshake() == .accept)
            // A freed slot of that address is reused.
            #expect(try await open[0].stop() == .finish)
            let again = try await FrameStreamsTestClient.connect(to: forwarder.tcpAddress!)
            #expect(try await again.handshake() == .accept)
            #expect(forwarder.statistics.rejectedByReason[.perPeerCap] == 1)
            for client in [open[1], again, local] { await client.close() }
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            #expect(forwarder.application.registry.openConnections(from: "127.0.0.1") == 0)
            return ()
        }
    }

    @Test("a TLS handshake that stalls is closed by the handshake timeout; a flood past the cap is refused before any TLS work")
    func stalledHandshakes() async throws {
        let directory = try TemporaryDirectory()
        let certificates = try await TestCertificates.make(in: directory.path)
        _ = try await withForwarder({
            Self.tlsConfiguration(certificates)(&$0)
            $0.maxConnections = 3
            $0.handshakeTimeout = .seconds(2)
        }) { forwarder in
            let address = forwarder.tcpAddress!
            var flood: [FrameStreamsTestClient] = []
            for _ in 0..<8 { flood.append(try await FrameStreamsTestClient.connect(to: address)) }
            // One of those inside the cap stops in the middle of a ClientHello (a record header
            // announcing 512 bytes, then 5 of them).
            // (Under ThreadSanitizer its timeout may already have closed it: the same end.)
            try? await flood[0].send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03])
            let opened = flood
            try await within(20, "every connection closed") {
                for client in opened { await client.waitForClose() }
            }
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            // Each one either found the cap full or held a slot until the timeout. (Where the first
            // ones time out before the last connect, as under ThreadSanitizer, more get a slot.)
            let capped = forwarder.statistics.rejectedByReason[.connectionCap] ?? 0
            let timedOut = forwarder.statistics.closedByReason[.handshakeTimeout] ?? 0
            #expect(capped + timedOut == 8, "\(capped) at the cap, \(timedOut) timed out")
            #expect(capped >= 1 && timedOut >= 3, "\(capped) at the cap, \(timedOut) timed out")
            #expect(forwarder.statistics.rejectedByReason[.tlsHandshakeFailed] == nil, "a timeout is counted as a timeout")
            // Nothing held: a real sender gets in at once.
            let sender = try await FrameStreamsTestClient.connect(
                to: address, tls: (try certificates.clientContext(certificates.resolver), nil))
            #expect(try await sender.handshake() == .accept)
            await sender.close()
            return ()
        }
    }

    @Test("certificates rotate without a restart: new connections get the changed files; a bad file is logged and the old kept")
    func rotation() async throws {
        let directory = try TemporaryDirectory()
        let certificates = try await TestCertificates.make(in: directory.path)
        let live = try TemporaryDirectory()
        let liveCertificate = live.path + "/tls.crt", liveKey = live.path + "/tls.key"
        try FileManager.default.copyItem(atPath: certificates.serverCertificate, toPath: liveCertificate)
        try FileManager.default.copyItem(atPath: certificates.serverKey, toPath: liveKey)
        let recorder = LogRecorder()
        _ = try await withForwarder({
            $0.tcpListen = HostPort(host: "127.0.0.1", port: 0)
            $0.tls = TLSFiles(certificate: liveCertificate, key: liveKey, clientCA: certificates.caCertificate)
        }, logger: recorder.logger()) { forwarder in
            func serverName() async throws -> String? {
                let client = try await FrameStreamsTestClient.connect(
                    to: forwarder.tcpAddress!, tls: (try certificates.clientContext(certificates.resolver), nil))
                defer { Task { await client.close() } }
                guard try await client.handshake() == .accept else { return nil }
                return try await client.peerCertificate().flatMap(TLSCredentials.senderName(of:))
            }
            #expect(try await serverName() == TestCertificates.serverName)
            let held = try await FrameStreamsTestClient.connect(
                to: forwarder.tcpAddress!, tls: (try certificates.clientContext(certificates.resolver), nil))
            #expect(try await held.handshake() == .accept)

            // Replaced the way a Kubernetes secret is: new files moved into place.
            let next = try await certificates.issueServer("rotated", commonName: "rotated.fwd.test")
            try FileManager.default.copyItem(atPath: next.key, toPath: live.path + "/new.key")
            try FileManager.default.copyItem(atPath: next.certificate, toPath: live.path + "/new.crt")
            rename(live.path + "/new.key", liveKey)
            rename(live.path + "/new.crt", liveCertificate)
            try await within(30, "the reload") { await recorder.waitFor("TLS certificates reloaded") }
            #expect(try await serverName() == "rotated.fwd.test")
            // The connection opened before goes on with its session.
            try await held.sendData(DnstapBuilder.pair(name: "held.fwd.test", id: 9))
            try await within(30, "events on the older connection") { await forwarder.sink.waitForCount(2) }

            // A broken file: logged, the old certificates stay in use.
            try "-----BEGIN CERTIFICATE-----\nnot base64\n".write(toFile: liveCertificate, atomically: true, encoding: .utf8)
            try await within(30, "the failed reload") { await recorder.waitFor("TLS certificates not reloaded") }
            #expect(try await serverName() == "rotated.fwd.test")
            #expect(forwarder.statistics.tlsReloadFailures.load(ordering: .relaxed) >= 1)
            await held.close()
            return ()
        }
    }

    @Test("the sender without TLS: the peer address on TCP, the peer's uid on the unix socket")
    func plainSenders() async throws {
        let (lines, _) = try await withForwarder({ $0.tcpListen = HostPort(host: "127.0.0.1", port: 0) }) { forwarder in
            let tcp = try await FrameStreamsTestClient.connect(to: forwarder.tcpAddress!)
            #expect(try await tcp.handshake() == .accept)
            try await tcp.sendData(DnstapBuilder.pair(name: "tcp.fwd.test", id: 1))
            #expect(try await tcp.stop() == .finish)
            let unix = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            #expect(try await unix.handshake() == .accept)
            try await unix.sendData(DnstapBuilder.pair(name: "unix.fwd.test", id: 2))
            #expect(try await unix.stop() == .finish)
            try await within(30, "events") { await forwarder.sink.waitForCount(4) }
            return forwarder.sink.lines
        }
        for event in Self.events(lines) {
            let expected = (event["query"] as? String) == "tcp.fwd.test" ? "127.0.0.1" : "uid=\(getuid())"
            #expect(event["sender"] as? String == expected, "\(event)")
        }
    }

    @Test("the binary: SIGHUP reloads the certificates and the service goes on; a TLS file that does not load stops the start (exit 1)")
    func binary() async throws {
        let directory = try TemporaryDirectory()
        let certificates = try await TestCertificates.make(in: directory.path)
        let common = ["-unix-socket", "", "-tcp-listen", "127.0.0.1:0", "-admin-listen", "", "-stats-interval", "0"]

        let wrongKey = try await within(30, "exit") {
            try await run(ShutdownTests.binary, common + [
                "-tls-cert-file", certificates.serverCertificate, "-tls-key-file", certificates.resolver.key])
        }
        #expect(wrongKey.status == 1, "\(wrongKey.output)")
        #expect(wrongKey.output.contains(certificates.serverCertificate) && wrongKey.output.contains("key"), "\(wrongKey.output)")
        let missing = try await within(30, "exit") {
            try await run(ShutdownTests.binary, common + ["-tls-cert-file", directory.path + "/none.crt", "-tls-key-file", certificates.serverKey])
        }
        #expect(missing.status == 1 && missing.output.contains(directory.path + "/none.crt"), "\(missing.output)")
        let halfConfigured = try await within(30, "exit") {
            try await run(ShutdownTests.binary, common + ["-tls-cert-file", certificates.serverCertificate])
        }
        #expect(halfConfigured.status == 2 && halfConfigured.output.contains("-tls-key-file"), "\(halfConfigured.output)")

        let forwarder = try WatchedProcess(ShutdownTests.binary, common + [
            "-tls-cert-file", certificates.serverCertificate, "-tls-key-file", certificates.serverKey,
            "-tls-client-ca-file", certificates.caCertificate,
        ])
        #expect(try await within(30, "listening") { await forwarder.waitFor("listening for dnstap") }, "\(forwarder.text)")
        forwarder.signal(SIGHUP)
        #expect(try await within(30, "the reload") { await forwarder.waitFor("cause=SIGHUP") }, "\(forwarder.text)")
        #expect(forwarder.text.contains("TLS certificates reloaded"), "\(forwarder.text)")
        forwarder.signal(SIGTERM)
        #expect(try await within(30, "exit") { await forwarder.waitForExit() } == 0, "\(forwarder.text)")
    }
}
