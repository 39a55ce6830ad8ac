import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import Testing

/// `-transactions` in the running service: the table shared by connections, its bound, the
/// timeout and the shutdown, as /stats and /metrics report them.
@Suite("transactions in the service")
struct TransactionServiceTests {
    static func query(_ name: String, id: UInt16) -> [UInt8] {
        DnstapBuilder.message(type: .clientQuery, query: DNSWireBuilder.query(id: id, name: name), responseTime: nil)
    }

    static func response(_ name: String, id: UInt16) -> [UInt8] {
        DnstapBuilder.message(
            type: .clientResponse, response: DNSWireBuilder.response(id: id, name: name, answers: [.a(name, [10, 0, 0, 1])]),
            queryTime: nil)
    }

    @Test("a response on another connection joins its query; a full table writes its oldest early; at shutdown every pending query is written unanswered")
    func tableAndShutdown() async throws {
        let sink = InMemorySink()
        let (_, summary) = try await withForwarder({
            $0.transactions.enabled = true
            $0.transactions.timeout = .seconds(600)
            $0.transactions.tableSize = 5
        }, sink: sink) { forwarder in
            // Two queries, answered on another connection (as PowerDNS does). FINISH comes after
            // the frames before STOP are taken: the queries are held by then.
            let first = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            _ = try await first.handshake()
            try await first.sendData([Self.query("j1.test", id: 1), Self.query("j2.test", id: 2)])
            #expect(try await first.stop()?.type == .finish)
            let second = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            _ = try await second.handshake()
            try await second.sendData([Self.response("j1.test", id: 1), Self.response("j2.test", id: 2)])
            // Then eight that stay unanswered, through a table of five: the three oldest go out early.
            try await second.sendData((1...8).map { Self.query("u\($0).test", id: UInt16(100 + $0)) })
            try await within(30, "2 joined and 3 evicted events") { await sink.waitForCount(5) }
            let events = ResolverTests.parse(sink.lines)
            #expect(events.prefix(2).map { $0["query"] as? String } == ["j1.test", "j2.test"])
            #expect(events.prefix(2).allSatisfy { $0["dnstap_type"] as? String == "CLIENT_RESPONSE" && $0["duration"] as? Double == 0.001 })
            #expect(events.suffix(3).map { $0["query"] as? String } == ["u1.test", "u2.test", "u3.test"])
            #expect(events.suffix(3).allSatisfy { $0["unanswered"] as? Bool == true && $0["dnstap_type"] as? String == "CLIENT_QUERY" })

            let stats = try await forwarder.admin("/stats")
            let transactions = try #require(stats.json["transactions"] as? [String: Any])
            #expect(transactions["enabled"] as? Bool == true)
            #expect(transactions["pending"] as? Int == 5)
            #expect(transactions["capacity"] as? Int == 5)
            let outcomes = try #require(transactions["outcomes"] as? [String: Int])
            #expect(outcomes == ["joined": 2, "evicted": 3, "unanswered": 0, "superseded": 0, "unmatched_response": 0])
            let metrics = try PrometheusText(try await forwarder.admin("/metrics").body)
            #expect(metrics[#"dnstap_transactions_total{outcome="joined"}"#] == 2)
            #expect(metrics[#"dnstap_transactions_total{outcome="evicted"}"#] == 3)
            #expect(metrics["dnstap_transactions_pending"] == 5)
            #expect(metrics["dnstap_transactions_capacity"] == 5)
            try await second.send(FrameStreamsTestClient.stop)
        }
        // The shutdown wrote the five still pending, unanswered: nothing held is lost.
        let events = ResolverTests.parse(sink.lines)
        #expect(events.count == 10)
        #expect(events.suffix(5).map { $0["query"] as? String } == (4...8).map { "u\($0).test" })
        #expect(events.suffix(5).allSatisfy { $0["unanswered"] as? Bool == true })
        #expect(summary.undelivered == 0)
        #expect(summary.eventsOut == 10)
    }

    @Test("a query with no response is written unanswered once -transaction-timeout has passed")
    func timeout() async throws {
        let (_, summary) = try await withForwarder({
            $0.transactions.enabled = true
            $0.transactions.timeout = .milliseconds(300)
        }) { forwarder in
            let client = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            _ = try await client.handshake()
            let sent = ContinuousClock.now
            try await client.sendData([Self.query("late.test", id: 7)])
            try await within(30, "the unanswered query") { await forwarder.sink.waitForCount(1) }
            let waited = ContinuousClock.now - sent
            #expect(waited >= .milliseconds(300), "not before its timeout (\(waited))")
            let event = try #require(ResolverTests.parse(forwarder.sink.lines).first)
            #expect(event["unanswered"] as? Bool == true)
            #expect(event["query"] as? String == "late.test")
            #expect(forwarder.statistics.transactionsByOutcome[.unanswered] == 1)
            // Its response, late: written alone, counted unmatched.
            try await client.sendData([Self.response("late.test", id: 7)])
            try await within(30, "the late response") { await forwarder.sink.waitForCount(2) }
            #expect(forwarder.statistics.transactionsByOutcome[.unmatchedResponse] == 1)
            try await client.send(FrameStreamsTestClient.stop)
        }
        #expect(summary.undelivered == 0)
    }
}
