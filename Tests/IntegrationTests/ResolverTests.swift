import DnstapForwarder
import Foundation
import Testing

/// Every resolver Debian packages with dnstap, on loopback with local data, sending to the
/// forwarder's unix socket while `dig` asks it names. Knot Resolver, dnsdist and PowerDNS Recursor
/// get the local zone from an authoritative Unbound (no dnstap) on another loopback port; BIND
/// serves the zone itself. Each one's quirks are written down in the README ("Pointing resolvers").
struct ResolverSpec: Sendable, CustomTestStringConvertible {
    let name: String
    let executable: String
    /// The dnstap message types its answers to our queries arrive as.
    let responseType: String
    let needsBackend: Bool
    /// How it is stopped. dnsdist and PowerDNS Recursor leave SIGTERM at its inherited disposition,
    /// which the test process (swift-service-lifecycle's signal handling) has set to ignore, so
    /// they are killed: for them the same end of stream, as neither sends STOP.
    var stopSignal: Int32 = SIGTERM
    /// Writes its configuration into `directory`; returns the command-line arguments.
    let configure: @Sendable (_ directory: String, _ port: Int, _ socket: String, _ backendPort: Int) throws -> [String]

    var testDescription: String { name }

    static let bind = ResolverSpec(name: "BIND", executable: "named", responseType: "CLIENT_RESPONSE", needsBackend: false) {
        directory, port, socket, _ in
        try ResolverTests.zone.write(toFile: directory + "/fwd.test.zone", atomically: true, encoding: .utf8)
        try """
            options {
              directory "\(directory)";
              pid-file "\(directory)/named.pid";
              listen-on port \(port) { 127.0.0.1; };
              listen-on-v6 { none; };
              recursion yes;
              allow-query { 127.0.0.0/8; };
              dnssec-validation no;
              notify no;
              dnstap { client; auth; resolver; forwarder; };
              dnstap-output unix "\(socket)";
              dnstap-identity "test-bind";
            };
            controls { };
            zone "fwd.test" { type primary; file "\(directory)/fwd.test.zone"; };
            """.write(toFile: directory + "/named.conf", atomically: true, encoding: .utf8)
        return ["-g", "-n", "1", "-c", directory + "/named.conf"]
    }

    static let knot = ResolverSpec(name: "Knot Resolver", executable: "kresd", responseType: "CLIENT_RESPONSE", needsBackend: true) {
        directory, port, socket, backendPort in
        try """
            net.ipv6 = false
            net.listen('127.0.0.1', \(port), { kind = 'dns' })
            cache.open(10 * MB, 'lmdb://\(directory)/cache')
            modules.load('dnstap')
            dnstap.config({
              socket_path = '\(socket)',
              identity = 'test-knot',
              client = { log_queries = true, log_responses = true },
            })
            trust_anchors.remove('.')
            policy.add(policy.suffix(policy.STUB({'127.0.0.1@\(backendPort)'}), {todname('fwd.test.')}))
            policy.add(policy.all(policy.DENY))
            """.write(toFile: directory + "/kresd.conf", atomically: true, encoding: .utf8)
        return ["-n", "-c", directory + "/kresd.conf", directory]
    }

    static let dnsdist = ResolverSpec(
        name: "dnsdist", executable: "dnsdist", responseType: "CLIENT_RESPONSE", needsBackend: true, stopSignal: SIGKILL
    ) {
        directory, port, socket, backendPort in
        try """
            setLocal('127.0.0.1:\(port)')
            setACL({'127.0.0.0/8'})
            setSecurityPollSuffix('')
            newServer({address = '127.0.0.1:\(backendPort)', checkName = 'host1.fwd.test.', name = 'backend'})
            local fs = newFrameStreamUnixLogger('\(socket)')
            addAction(AllRule(), DnstapLogAction('test-dnsdist', fs))
            addResponseAction(AllRule(), DnstapLogResponseAction('test-dnsdist', fs))
            addCacheHitResponseAction(AllRule(), DnstapLogResponseAction('test-dnsdist', fs))
            """.write(toFile: directory + "/dnsdist.conf", atomically: true, encoding: .utf8)
        return ["--supervised", "--disable-syslog", "-C", directory + "/dnsdist.conf"]
    }

    static let powerDNS = ResolverSpec(
        name: "PowerDNS Recursor", executable: "pdns_recursor", responseType: "RESOLVER_RESPONSE", needsBackend: true,
        stopSignal: SIGKILL
    ) { directory, port, socket, backendPort in
        try """
            local-address=127.0.0.1
            local-port=\(port)
            allow-from=127.0.0.0/8
            forward-zones=fwd.test=127.0.0.1:\(backendPort)
            dnssec=off
            socket-dir=\(directory)
            lua-config-file=\(directory)/recursor.lua
            daemon=no
            threads=1
            max-cache-ttl=1
            disable-packetcache=yes
            """.write(toFile: directory + "/recursor.conf", atomically: true, encoding: .utf8)
        try "dnstapFrameStreamServer({'\(socket)'}, {logQueries = true, logResponses = true})\n"
            .write(toFile: directory + "/recursor.lua", atomically: true, encoding: .utf8)
        return ["--config-dir=" + directory]
    }
}

@Suite("every resolver → forwarder", .serialized)
struct ResolverTests {
    static let zone = UnboundTests.zone

    static let asked: [(name: String, type: String, rcode: String)] = [
        ("host1.fwd.test", "A", "NOERROR"), ("host1.fwd.test", "AAAA", "NOERROR"), ("cdn1.fwd.test", "AAAA", "NOERROR"),
        ("host2.fwd.test", "A", "NOERROR"), ("nx.fwd.test", "A", "NXDOMAIN"),
    ]

    /// An authoritative Unbound for fwd.test with no dnstap: the upstream of the forwarding resolvers.
    static func startBackend(directory: String) async throws -> (WatchedProcess, Int) {
        try zone.write(toFile: directory + "/fwd.test.zone", atomically: true, encoding: .utf8)
        let port = try freePort()
        let config = try UnboundTests.config(directory: directory, port: port, socket: "/nonexistent")
            .replacingOccurrences(of: "dnstap-enable: yes", with: "dnstap-enable: no")
        try config.write(toFile: directory + "/backend.conf", atomically: true, encoding: .utf8)
        let backend = try WatchedProcess(try tool("unbound"), ["-d", "-c", directory + "/backend.conf"])
        guard try await within(30, "the backend to start", { await backend.waitFor("start of service") }) else {
            throw TestError.timedOut("backend unbound: \(backend.text)")
        }
        return (backend, port)
    }

    @Test("the events' names, types and rcodes are what dig asked", arguments: [ResolverSpec.bind, .knot, .dnsdist, .powerDNS])
    func resolverSendsDnstap(_ spec: ResolverSpec) async throws {
        try await exercise(spec, transactions: false)
    }

    /// PowerDNS Recursor's dnstap has its outgoing queries only (RESOLVER_QUERY/RESPONSE): those join.
    @Test("-transactions: one event per query, the response's with a plausible duration, no query left over",
          arguments: [ResolverSpec.bind, .knot, .dnsdist, .powerDNS])
    func resolverTransactions(_ spec: ResolverSpec) async throws {
        try await exercise(spec, transactions: true)
    }

    func exercise(_ spec: ResolverSpec, transactions: Bool) async throws {
        let executable = try tool(spec.executable)
        let dig = try tool("dig")
        let directory = try TemporaryDirectory()
        let backendDirectory = try TemporaryDirectory()
        let (backend, backendPort) = spec.needsBackend ? try await Self.startBackend(directory: backendDirectory.path) : (nil, 0)
        defer { backend?.signal(SIGTERM) }
        let ((lines, joined), summary) = try await withForwarder({ $0.transactions.enabled = transactions }) {
            forwarder -> ([String], Int) in
            let port = try freePort()
            let arguments = try spec.configure(directory.path, port, forwarder.unixPath!, backendPort)
            let resolver = try WatchedProcess(executable, arguments)
            // Ready when it answers: dig until the first answer (each attempt waits up to 1 s).
            try await within(60, "\(spec.name) to answer") {
                while true {
                    let probe = try await run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=1", "host2.fwd.test", "A"])
                    if probe.status == 0 && probe.output.contains("10.99.0.2") { return }
                    if !resolver.process.isRunning { throw TestError.timedOut("\(spec.name) exited: \(resolver.text)") }
                }
            }
            for query in Self.asked {
                let answer = try await run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=5", query.name, query.type])
                #expect(answer.status == 0, "dig \(query.name): \(answer.output)")
                #expect(answer.output.contains("status: \(query.rcode)"), "\(answer.output)")
            }
            let wanted = Set(Self.asked.map { "\($0.name)/\($0.type)" })
            try await within(60, "\(spec.name)'s dnstap events") {
                await forwarder.sink.waitUntil { lines in
                    let seen = Set(Self.parse(lines).filter { $0["dnstap_type"] as? String == spec.responseType }.map(Self.key))
                    return wanted.isSubset(of: seen)
                }
            }
            resolver.signal(spec.stopSignal)
            _ = try await within(30, "\(spec.name) to stop") { await resolver.waitForExit() }
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            #expect(forwarder.statistics.closedByReason[.protocolError] == nil, "\(spec.name) ended its streams cleanly")
            #expect(forwarder.statistics.protobufErrors.load(ordering: .relaxed) == 0)
            return (forwarder.sink.lines, forwarder.statistics.transactionsByOutcome[.joined] ?? 0)
        }
        let events = Self.parse(lines)
        let responses = events.filter { $0["dnstap_type"] as? String == spec.responseType }
        for query in Self.asked {
            let matching = responses.filter { Self.key($0) == "\(query.name)/\(query.type)" }
            #expect(!matching.isEmpty, "\(spec.name): no \(spec.responseType) for \(query.name) \(query.type)")
            #expect(matching.allSatisfy { $0["reply_code"] as? String == query.rcode }, "\(spec.name): \(query.name)")
        }
        #expect(events.allSatisfy { $0["dns_parse_error"] == nil }, "\(spec.name): every DNS message parsed")
        #expect(summary.undelivered == 0)
        guard transactions else { return }
        // Joined: each response carries its query's time and a duration; no query event is left
        // for the names asked (an unanswered one would be marked).
        let queryType = spec.responseType.replacingOccurrences(of: "RESPONSE", with: "QUERY")
        let asked = Set(Self.asked.map { "\($0.name)/\($0.type)" })
        for response in responses where asked.contains(Self.key(response)) {
            let duration = response["duration"] as? Double
            #expect(duration.map { $0 >= 0 && $0 < 5 } == true, "\(spec.name): \(Self.key(response)) duration \(String(describing: duration))")
            #expect(response["query_timestamp"] != nil)
        }
        let leftOver = events.filter { $0["dnstap_type"] as? String == queryType && asked.contains(Self.key($0)) }
        #expect(leftOver.isEmpty, "\(spec.name): queries not joined: \(leftOver)")
        #expect(joined >= Self.asked.count, "\(spec.name): joined \(joined)")
    }

    static func parse(_ lines: [String]) -> [[String: Any]] {
        lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    static func key(_ event: [String: Any]) -> String {
        "\(event["query"] as? String ?? "?")/\(event["record_type"] as? String ?? "?")"
    }
}
