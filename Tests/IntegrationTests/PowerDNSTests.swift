import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import NIOCore
import Testing

/// PowerDNS's protobuf logging (`-pdns-listen`) from a real PowerDNS Recursor 4.8 and dnsdist 1.7
/// (Debian), on loopback, forwarding to an authoritative Unbound for fwd.test; and hostile senders.
@Suite("PowerDNS protobuf logging", .serialized)
struct PowerDNSTests {
    static let asked = ResolverTests.asked

    /// A forwarder with `-pdns-listen` on an ephemeral port (and its unix socket for dnstap).
    static func configure(_ more: @escaping (inout ForwarderConfiguration) -> Void = { _ in }) -> (inout ForwarderConfiguration) -> Void {
        { configuration in
            configuration.pdnsListen = HostPort(host: "127.0.0.1", port: 0)
            more(&configuration)
        }
    }

    static func pdnsPort(_ forwarder: RunningForwarder) -> Int { forwarder.tcpAddress!.port! }

    /// Asks every name of `asked` (after the resolver answers at all).
    static func ask(port: Int, resolver: WatchedProcess, name: String) async throws {
        let dig = try tool("dig")
        try await within(60, "\(name) to answer") {
            while true {
                let probe = try await run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=1", "host2.fwd.test", "A"])
                if probe.status == 0 && probe.output.contains("10.99.0.2") { return }
                if !resolver.process.isRunning { throw TestError.timedOut("\(name) exited: \(resolver.text)") }
            }
        }
        for query in asked {
            let answer = try await run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=5", query.name, query.type])
            #expect(answer.status == 0 && answer.output.contains("status: \(query.rcode)"), "dig \(query.name): \(answer.output)")
        }
    }

    static func events(_ lines: [String], type: String) -> [[String: Any]] {
        ResolverTests.parse(lines).filter { $0["dnstap_type"] as? String == type }
    }

    /// Every asked name, type and rcode came as a CLIENT_RESPONSE; each has its CLIENT_QUERY with the
    /// same message_id; the CNAME chain and the address are in the answer.
    static func checkClientView(_ lines: [String], identity: String) {
        let responses = events(lines, type: "CLIENT_RESPONSE")
        let queries = events(lines, type: "CLIENT_QUERY")
        for query in asked {
            let response = responses.first { ResolverTests.key($0) == "\(query.name)/\(query.type)" }
            #expect(response?["reply_code"] as? String == query.rcode, "\(query.name) \(query.type): \(response ?? [:])")
            #expect(response?["identity"] as? String == identity)
            #expect(response?["sender"] as? String == "127.0.0.1")
            #expect(response?["message_type"] as? String == "Response")
            #expect(response?["src"] as? String == "127.0.0.1")
            #expect((response?["src_port"] as? Int ?? 0) > 0)
            let id = response?["message_id"] as? String
            #expect(id?.count == 36, "a UUID: \(id ?? "-")")
            #expect(queries.contains { $0["message_id"] as? String == id && ResolverTests.key($0) == ResolverTests.key(response ?? [:]) },
                    "the query of \(query.name) with the same message_id")
            let duration = response?["duration"] as? Double
            #expect(duration.map { $0 >= 0 && $0 < 10 } == true, "a plausible duration: \(duration.map { "\($0)" } ?? "none")")
        }
        let chain = responses.first { ResolverTests.key($0) == "cdn1.fwd.test/AAAA" }
        #expect(chain?["answer"] as? [String] == ["www1.fwd.test", "host1.fwd.test", "fd00:99::1"], "\(chain ?? [:])")
        #expect(chain?["answer_type"] as? [String] == ["CNAME", "CNAME", "AAAA"])
        #expect(chain?["answer_name"] as? [String] == ["cdn1.fwd.test", "www1.fwd.test", "host1.fwd.test"])
    }

    @Test("PowerDNS Recursor's protobuf and its dnstap at once: the client and the resolver view of the same queries")
    func recursor() async throws {
        let executable = try tool("pdns_recursor")
        let directory = try TemporaryDirectory()
        let backendDirectory = try TemporaryDirectory()
        let (backend, backendPort) = try await ResolverTests.startBackend(directory: backendDirectory.path)
        defer { backend.signal(SIGTERM) }
        let (lines, summary) = try await withForwarder(Self.configure()) { forwarder -> [String] in
            let port = try freePort()
            var arguments = try ResolverSpec.powerDNS.configure(directory.path, port, forwarder.unixPath!, backendPort)
            arguments.append("--server-id=test-pdns")
            try """
                dnstapFrameStreamServer({'\(forwarder.unixPath!)'}, {logQueries = true, logResponses = true})
                protobufServer('127.0.0.1:\(Self.pdnsPort(forwarder))', {logQueries = true, logResponses = true})

                """.write(toFile: directory.path + "/recursor.lua", atomically: true, encoding: .utf8)
            let resolver = try WatchedProcess(executable, arguments)
            try await Self.ask(port: port, resolver: resolver, name: "PowerDNS Recursor")
            let wanted = Set(Self.asked.map { "\($0.name)/\($0.type)" })
            try await within(60, "the recursor's protobuf and dnstap events") {
                await forwarder.sink.waitUntil { lines in
                    let client = Set(Self.events(lines, type: "CLIENT_RESPONSE").map(ResolverTests.key))
                    let resolver = Set(Self.events(lines, type: "RESOLVER_RESPONSE").map(ResolverTests.key))
                    return wanted.isSubset(of: client) && resolver.contains("host1.fwd.test/A")
                }
            }
            // The map learned from the protobuf responses (the client view).
            let learned = forwarder.application.resolutionMap.lookup(IPAddressKey("fd00:99::1")!)
            #expect(learned?.contains { $0.name == "cdn1.fwd.test" && $0.targets == ["www1.fwd.test", "host1.fwd.test"] } == true,
                    "\(learned.map { "\($0)" } ?? "nothing")")
            resolver.signal(SIGKILL)
            _ = try await within(30, "the recursor to stop") { await resolver.waitForExit() }
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            #expect(forwarder.statistics.protobufErrors.load(ordering: .relaxed) == 0)
            #expect(forwarder.statistics.closedByReason[.protocolError] == nil)
            return forwarder.sink.lines
        }
        #expect(summary.exitStatus == 0, "\(summary.failure ?? "")")
        Self.checkClientView(lines, identity: "test-pdns")
        // The dnstap side of the same queries: the recursor's own outgoing queries.
        let outgoing = Self.events(lines, type: "RESOLVER_RESPONSE")
        #expect(outgoing.contains { ResolverTests.key($0) == "host1.fwd.test/A" && $0["sender"] as? String != "127.0.0.1" })
    }

    @Test("dnsdist's remote logger: client queries and responses with names, answers and rcodes")
    func dnsdist() async throws {
        let executable = try tool("dnsdist")
        let directory = try TemporaryDirectory()
        let backendDirectory = try TemporaryDirectory()
        let (backend, backendPort) = try await ResolverTests.startBackend(directory: backendDirectory.path)
        defer { backend.signal(SIGTERM) }
        let (lines, summary) = try await withForwarder(Self.configure()) { forwarder -> [String] in
            let port = try freePort()
            try """
                setLocal('127.0.0.1:\(port)')
                setACL({'127.0.0.0/8'})
                setSecurityPollSuffix('')
                newServer({address = '127.0.0.1:\(backendPort)', name = 'backend', checkName = 'host1.fwd.test.'})
                local logger = newRemoteLogger('127.0.0.1:\(Self.pdnsPort(forwarder))')
                addAction(AllRule(), RemoteLogAction(logger, nil, {serverID = 'test-dnsdist'}))
                addResponseAction(AllRule(), RemoteLogResponseAction(logger, nil, true, {serverID = 'test-dnsdist'}))
                addCacheHitResponseAction(AllRule(), RemoteLogResponseAction(logger, nil, true, {serverID = 'test-dnsdist'}))

                """.write(toFile: directory.path + "/dnsdist.conf", atomically: true, encoding: .utf8)
            let resolver = try WatchedProcess(executable, ["--supervised", "--disable-syslog", "-C", directory.path + "/dnsdist.conf"])
            try await Self.ask(port: port, resolver: resolver, name: "dnsdist")
            let wanted = Set(Self.asked.map { "\($0.name)/\($0.type)" })
            try await within(60, "dnsdist's protobuf events") {
                await forwarder.sink.waitUntil { lines in
                    wanted.isSubset(of: Set(Self.events(lines, type: "CLIENT_RESPONSE").map(ResolverTests.key)))
                }
            }
            resolver.signal(SIGKILL)
            _ = try await within(30, "dnsdist to stop") { await resolver.waitForExit() }
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            #expect(forwarder.statistics.protobufErrors.load(ordering: .relaxed) == 0)
            return forwarder.sink.lines
        }
        #expect(summary.exitStatus == 0, "\(summary.failure ?? "")")
        Self.checkClientView(lines, identity: "test-dnsdist")
    }

    /// One message as PowerDNS frames it.
    static func framed(_ message: [UInt8]) -> [UInt8] {
        [UInt8(message.count >> 8), UInt8(message.count & 0xFF)] + message
    }

    /// A minimal valid message: type DNSQueryType, question "ok.test." A.
    static let valid: [UInt8] = [0x08, 0x01, 0x62, 0x0C, 0x0A, 0x08] + Array("ok.test.".utf8) + [0x10, 0x01]

    @Test("hostile senders: garbage, an empty or oversized length, a cut-off message, an address outside -allow-from; each counted and closed")
    func hostile() async throws {
        let recorder = LogRecorder()
        let (_, summary) = try await withForwarder(Self.configure { $0.maxFrameSize = 1000 }, logger: recorder.logger()) { forwarder in
            let address = forwarder.tcpAddress!
            /// Sends `bytes` (then closes, with `close`), and waits for the close to be logged with `detail`.
            func closed(after bytes: [UInt8], close: Bool = false, logging detail: String) async throws {
                let client = try await FrameStreamsTestClient.connect(to: address)
                try await client.send(bytes)
                if close { await client.close() } else { _ = try await within(10, "closed") { await client.waitForClose() } }
                try await within(30, "the close logged: \(detail)") { await recorder.waitFor(detail) }
            }
            // An HTTP request: its first two bytes read as a length of 18245, over -max-frame-size.
            try await closed(after: Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8), logging: "a message of 18245 bytes, over the 1000-byte limit")
            #expect(forwarder.statistics.oversizedFrames.load(ordering: .relaxed) == 1)
            // A length of 0.
            try await closed(after: Self.framed(Self.valid) + [0, 0], logging: "a message of length 0")
            // Bytes of the right length that are not a PBDNSMessage.
            try await closed(after: Self.framed(Self.valid) + Self.framed([0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), logging: "not a PowerDNS protobuf")
            #expect(forwarder.statistics.protobufErrors.load(ordering: .relaxed) == 2)
            // A message cut off by the close: the whole one before it is kept.
            try await closed(after: Self.framed(Self.valid) + Array(Self.framed(Self.valid).prefix(7)), close: true, logging: "the stream ended inside a message")
            #expect(forwarder.statistics.truncatedMessages.load(ordering: .relaxed) == 1)
            #expect(forwarder.statistics.closedByReason[.protocolError] == 4)
            // Every whole valid message before the bad ones became an event: three.
            try await within(10, "the three valid events") { await forwarder.sink.waitUntil { $0.count >= 3 } }
            #expect(forwarder.sink.lines.count == 3)
            #expect(forwarder.sink.lines.allSatisfy { $0.contains(#""query":"ok.test""#) && $0.contains(#""dnstap_type":"CLIENT_QUERY""#) })
            return ()
        }
        #expect(summary.exitStatus == 0)

        // -allow-from holds for -pdns-listen too: refused at accept, counted.
        let (_, refused) = try await withForwarder(Self.configure { $0.allowFrom = try! AllowList(parsing: "10.0.0.0/8") }) { forwarder in
            let client = try await FrameStreamsTestClient.connect(to: forwarder.tcpAddress!)
            try? await client.send(Self.framed(Self.valid))
            _ = try await within(10, "refused") { await client.waitForClose() }
            #expect(forwarder.statistics.rejectedByReason[.notAllowed] == 1)
            #expect(forwarder.sink.lines.isEmpty)
            return ()
        }
        #expect(refused.exitStatus == 0)
    }
}
