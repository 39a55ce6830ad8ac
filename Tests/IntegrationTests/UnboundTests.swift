import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import Testing

/// A real resolver: Unbound on loopback answers a local zone and sends dnstap to the forwarder
/// (bidirectional Frame Streams over the unix socket), while `dig` asks it names.
@Suite("Unbound → forwarder")
struct UnboundTests {
    static let zone = """
        $TTL 300
        @ IN SOA ns.fwd.test. hostmaster.fwd.test. 1 3600 600 86400 300
        @ IN NS ns
        ns IN A 127.0.0.1
        host1 IN A 10.99.0.1
        host1 IN AAAA fd00:99::1
        www1 IN CNAME host1
        cdn1 IN CNAME www1
        host2 IN A 10.99.0.2

        """

    /// config/unbound-loopback.conf.template, filled in.
    static func config(directory: String, port: Int, socket: String) throws -> String {
        let template = try String(
            contentsOf: packageRoot.appendingPathComponent("config/unbound-loopback.conf.template"), encoding: .utf8)
        let values = [
            "{{PORT}}": "\(port)", "{{DIRECTORY}}": directory, "{{ZONE}}": "fwd.test",
            "{{ZONEFILE}}": directory + "/fwd.test.zone", "{{SOCKET}}": socket, "{{IDENTITY}}": "test-unbound",
        ]
        return values.reduce(template) { text, pair in text.replacingOccurrences(of: pair.key, with: pair.value) }
    }

    @Test("the events' query names, types and rcodes are what dig asked")
    func unboundSendsDnstap() async throws {
        let unbound = try tool("unbound")
        let dig = try tool("dig")
        let directory = try TemporaryDirectory()
        let asked: [(name: String, type: String)] = [
            ("host1.fwd.test", "A"), ("host1.fwd.test", "AAAA"), ("cdn1.fwd.test", "AAAA"), ("host2.fwd.test", "A"),
            ("nx.fwd.test", "A"),
        ]
        let (lines, summary) = try await withForwarder { forwarder in
            try Self.zone.write(toFile: directory.path + "/fwd.test.zone", atomically: true, encoding: .utf8)
            let port = try freePort()
            let configPath = directory.path + "/unbound.conf"
            try Self.config(directory: directory.path, port: port, socket: forwarder.unixPath!)
                .write(toFile: configPath, atomically: true, encoding: .utf8)
            let resolver = try WatchedProcess(unbound, ["-d", "-c", configPath])
            guard try await within(30, "unbound to start", { await resolver.waitFor("start of service") }) else {
                Issue.record("unbound did not start: \(resolver.text)")
                return [String]()
            }
            for query in asked {
                let answer = try await run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=5", query.name, query.type])
                #expect(answer.status == 0, "dig \(query.name): \(answer.output)")
            }
            // Every query gives a CLIENT_QUERY and a CLIENT_RESPONSE event.
            let expected = asked.count * 2
            try await within(30, "dnstap events") { await forwarder.sink.waitUntil { queries($0).count >= expected } }
            // The resolution map learned the answers: each address maps back to the names asked.
            let host1 = try await forwarder.admin("/v1/resolve/10.99.0.1")
            #expect(host1.status == 200, "\(host1.body)")
            #expect((host1.json["names"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["host1.fwd.test"])
            let host1v6 = try await forwarder.admin("/v1/resolve/fd00:99::1")
            let v6Names = (host1v6.json["names"] as? [[String: Any]]) ?? []
            #expect(Set(v6Names.compactMap { $0["name"] as? String }) == ["host1.fwd.test", "cdn1.fwd.test"])
            #expect(v6Names.first { $0["name"] as? String == "cdn1.fwd.test" }?["chain"] as? [String]
                == ["cdn1.fwd.test", "www1.fwd.test", "host1.fwd.test"])
            #expect(try await forwarder.admin("/v1/resolve/10.99.0.3").status == 404)
            resolver.signal(SIGTERM)
            _ = await resolver.waitForExit()
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            #expect(forwarder.statistics.closedByReason[.protocolError] == nil, "unbound's STOP without reading FINISH is a clean end")
            return forwarder.sink.lines
        }
        let events = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let asKeys = asked.map { "\($0.name)/\($0.type)" }
        let responses = events.filter { $0["dnstap_type"] as? String == "CLIENT_RESPONSE" }
        let queriesSeen = events.filter { $0["dnstap_type"] as? String == "CLIENT_QUERY" }
        #expect(responses.map { "\($0["query"] as? String ?? "?")/\($0["record_type"] as? String ?? "?")" } == asKeys)
        #expect(queriesSeen.map { "\($0["query"] as? String ?? "?")/\($0["record_type"] as? String ?? "?")" } == asKeys)
        #expect(responses.map { $0["reply_code"] as? String } == ["NOERROR", "NOERROR", "NOERROR", "NOERROR", "NXDOMAIN"])
        #expect(responses[2]["answer"] as? [String] == ["www1.fwd.test", "host1.fwd.test", "fd00:99::1"])
        #expect(events.allSatisfy { $0["identity"] as? String == "test-unbound" })
        #expect(events.allSatisfy { ($0["version"] as? String)?.hasPrefix("unbound") == true })
        #expect(summary.undelivered == 0)
    }
    @Test("-transactions with a real Unbound: one event per query with its duration; its queries to a blackholed upstream come out unanswered after the timeout")
    func transactions() async throws {
        let unbound = try tool("unbound")
        let dig = try tool("dig")
        let directory = try TemporaryDirectory()
        // The upstream of dark.test: a UDP socket that takes every query and never answers.
        let blackhole = try UDPBlackhole()
        defer { blackhole.close() }
        let asked: [(name: String, type: String)] = [("host1.fwd.test", "A"), ("cdn1.fwd.test", "AAAA"), ("nx.fwd.test", "A")]
        let timeout = Duration.milliseconds(800)
        let (result, summary) = try await withForwarder({
            $0.transactions.enabled = true
            $0.transactions.timeout = timeout
        }) { forwarder -> (InMemorySink, ForwarderStatistics) in
            try Self.zone.write(toFile: directory.path + "/fwd.test.zone", atomically: true, encoding: .utf8)
            let port = try freePort()
            let configPath = directory.path + "/unbound.conf"
            var config = try Self.config(directory: directory.path, port: port, socket: forwarder.unixPath!)
            config = config.replacingOccurrences(of: "  local-zone: \"test.\" nodefault\n", with: """
                  local-zone: "test." nodefault
                  do-not-query-localhost: no
                forward-zone:
                  name: "dark.test."
                  forward-addr: 127.0.0.1@\(blackhole.port)

                """)
            // Unbound logs the queries of a forward zone as FORWARDER_QUERY.
            config += "  dnstap-log-forwarder-query-messages: yes\n  dnstap-log-forwarder-response-messages: yes\n"
            try config.write(toFile: configPath, atomically: true, encoding: .utf8)
            let resolver = try WatchedProcess(unbound, ["-d", "-c", configPath])
            guard try await within(30, "unbound to start", { await resolver.waitFor("start of service") }) else {
                Issue.record("unbound did not start: \(resolver.text)")
                return (forwarder.sink, forwarder.statistics)
            }
            for query in asked {
                let answer = try await run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=5", query.name, query.type])
                #expect(answer.status == 0, "dig \(query.name): \(answer.output)")
            }
            // dig gives up after a second; unbound goes on trying the silent upstream meanwhile.
            _ = try await run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=1", "www.dark.test", "A"])
            try await within(30, "the joined events and the unanswered resolver query") {
                await forwarder.sink.waitUntil { lines in
                    let events = ResolverTests.parse(lines)
                    let joined = events.filter { $0["dnstap_type"] as? String == "CLIENT_RESPONSE" && $0["duration"] != nil }
                    let unanswered = events.filter {
                        $0["dnstap_type"] as? String == "FORWARDER_QUERY" && $0["unanswered"] as? Bool == true
                            && $0["query"] as? String == "www.dark.test"
                    }
                    return joined.count >= asked.count && !unanswered.isEmpty
                }
            }
            #expect(blackhole.received() > 0, "unbound asked the blackhole")
            resolver.signal(SIGTERM)
            _ = await resolver.waitForExit()
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            return (forwarder.sink, forwarder.statistics)
        }
        // Read once the forwarder has stopped: every query it held is written and counted by then.
        // (Read before, an expired query could be counted and not yet in the sink: 6 counted, 4
        // written, under ThreadSanitizer.)
        let (lines, outcomes) = (result.0.lines, result.1.transactionsByOutcome)
        let events = ResolverTests.parse(lines)
        let asKeys = asked.map { "\($0.name)/\($0.type)" }
        let clientEvents = events.filter { asKeys.contains(ResolverTests.key($0)) }
        #expect(clientEvents.map(ResolverTests.key) == asKeys, "one event per query, in order")
        for event in clientEvents {
            #expect(event["dnstap_type"] as? String == "CLIENT_RESPONSE")
            let duration = event["duration"] as? Double
            #expect(duration.map { $0 >= 0 && $0 < 5 } == true, "\(ResolverTests.key(event)): duration \(String(describing: duration))")
            #expect(event["query_timestamp"] != nil && event["timestamp"] != nil)
            #expect(event["response_timestamp"] == nil, "joined: the response's time is the timestamp, once")
        }
        #expect(clientEvents.map { $0["reply_code"] as? String } == ["NOERROR", "NOERROR", "NXDOMAIN"])
        // The silent upstream: each of unbound's tries is a FORWARDER_QUERY written unanswered, with
        // its own fields, the timeout after it was sent.
        let dark = events.filter { $0["dnstap_type"] as? String == "FORWARDER_QUERY" && $0["query"] as? String == "www.dark.test" }
        #expect(!dark.isEmpty && dark.allSatisfy { $0["unanswered"] as? Bool == true }, "\(dark)")
        #expect(dark.allSatisfy { $0["dest_port"] as? Int == blackhole.port })
        #expect((outcomes[.joined] ?? 0) >= asked.count)
        #expect((outcomes[.unanswered] ?? 0) >= dark.count)
        let markedUnanswered: Int = events.filter { $0["unanswered"] as? Bool == true }.count
        let countedUnanswered: Int = [TransactionOutcome.unanswered, .evicted, .superseded].map { outcomes[$0] ?? 0 }.reduce(0, +)
        #expect(markedUnanswered == countedUnanswered, "every unanswered event counted once")
        #expect(summary.undelivered == 0)
    }
}

/// A UDP socket on 127.0.0.1 that receives and never answers: an upstream gone dark.
final class UDPBlackhole: @unchecked Sendable {
    let fd: Int32
    let port: Int

    init() throws {
        (fd, port) = try boundUDPSocket()
    }

    /// The datagrams waiting in its queue (read without answering).
    func received() -> Int {
        var count = 0
        var buffer = [UInt8](repeating: 0, count: 2048)
        while recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT)) > 0 { count += 1 }
        return count
    }

    func close() { Glibc.close(fd) }
}
