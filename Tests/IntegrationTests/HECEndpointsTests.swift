import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import Testing

/// Several HEC endpoints (`-hec-url a,b,c`): round-robin, one breaker each, acks per endpoint.
@Suite("Splunk HEC, several endpoints", .serialized)
struct HECEndpointsTests {
    static func configure(_ servers: [HECTestServer], _ more: @escaping (inout ForwarderConfiguration) -> Void = { _ in })
        -> (inout ForwarderConfiguration) -> Void
    {
        return { config in
            config.output = .hec(servers.map { try! HECEndpoint($0.url) }, token: servers[0].token)
            config.hec.retryInitialDelay = .milliseconds(10)
            config.hec.retryMaxDelay = .milliseconds(100)
            config.hec.requestTimeout = .seconds(10)
            config.batchSize = 25
            more(&config)
        }
    }

    /// `name{endpoint="url"}` from /metrics.
    static func perEndpoint(_ name: String, _ server: HECTestServer, in forwarder: RunningForwarder) async throws -> Double? {
        try PrometheusText(try await forwarder.admin("/metrics").body)[name + #"{endpoint="\#(server.url)"}"#]
    }

    /// The same, once the forwarder has stopped (every delivery counted).
    static func perEndpoint(_ name: String, _ server: HECTestServer, after application: ForwarderApplication) throws -> Double? {
        try PrometheusText(String(buffer: application.metrics.render()))[name + #"{endpoint="\#(server.url)"}"#]
    }

    @Test("three endpoints, one stopped mid-run and started again: every event arrives once, the load moves and comes back")
    func oneStoppedAndBack() async throws {
        let a = try await HECTestServer(), b = try await HECTestServer(), c = try await HECTestServer()
        let bPort = b.port
        let recorder = LogRecorder()
        // One failure opens an endpoint's circuit, so the test does not depend on how batches fall.
        let ((again, application), summary) = try await withForwarder(
            Self.configure([a, b, c], { $0.hec.circuitBreakerThreshold = 1 }), sink: nil, logger: recorder.logger()
        ) { forwarder in
            var names = try await HECTests.send(300, to: forwarder, prefix: "one")
            try await within(60, "the first events at HEC") { await waitForTotal(300, [a, b, c]) }
            for server in [a, b, c] {
                #expect(server.events.count > 0, "round-robin reaches every endpoint: \([a, b, c].map(\.events.count))")
            }
            let bBefore = b.events.count

            await b.stop()
            names.formUnion(try await HECTests.send(300, to: forwarder, prefix: "two"))
            try await within(60, "the second events at the two left") { await waitForTotal(600 - bBefore, [a, c]) }
            try await within(30, "b's circuit to open") { await recorder.waitFor("HEC circuit open after repeated failures") }
            #expect(try await Self.perEndpoint("dnstap_hec_endpoint_circuit_open", b, in: forwarder) == 1)
            #expect(try await Self.perEndpoint("dnstap_hec_endpoint_circuit_open", a, in: forwarder) == 0)
            #expect(try PrometheusText(try await forwarder.admin("/metrics").body)["dnstap_hec_circuit_open"] == 0, "two endpoints still take events")
            #expect(try await forwarder.admin("/readyz").status == 200)
            #expect(try await Self.perEndpoint("dnstap_hec_endpoint_failures_total", b, in: forwarder) ?? 0 >= 1)

            let again = try await HECTestServer(port: bPort)
            try await within(30, "b's circuit to close") { await recorder.waitFor("closing the circuit") }
            #expect(try await Self.perEndpoint("dnstap_hec_endpoint_circuit_open", b, in: forwarder) == 0)
            names.formUnion(try await HECTests.send(300, to: forwarder, prefix: "three"))
            try await within(60, "every event at HEC") { await waitForTotal(900, [a, c, again], before: bBefore) }
            #expect(again.events.count > 0, "the restarted endpoint takes its share again")

            let all = [a, b, c, again].flatMap { HECTests.queriesOf($0) }
            #expect(all.count == 900, "each event once")
            #expect(Set(all) == names)
            return (again, forwarder.application)
        }
        for server in [a, c] {
            #expect(try Self.perEndpoint("dnstap_hec_endpoint_events_total", server, after: application) == Double(server.events.count))
            #expect(try Self.perEndpoint("dnstap_hec_endpoint_requests_total", server, after: application) ?? 0 >= 1)
        }
        #expect(try Self.perEndpoint("dnstap_hec_endpoint_events_total", b, after: application) == Double(b.events.count + again.events.count))
        for server in [a, c, again] {
            await server.stop()
            #expect(server.violations.isEmpty, "\(server.violations.prefix(3))")
        }
        #expect(summary.eventsOut == 900)
        #expect(summary.undelivered == 0)
    }

    @Test("indexer acknowledgement per endpoint: acks are asked where the request went; one that never acks loses nothing")
    func acknowledgementsPerEndpoint() async throws {
        let silent = try await HECTestServer(), acking = try await HECTestServer()
        silent.enableAcknowledgements(losing: Set(0..<10_000))
        acking.enableAcknowledgements()
        let (application, summary) = try await withForwarder(
            Self.configure([silent, acking], {
                $0.hec.acknowledgements = true
                $0.hec.ackPollInterval = .milliseconds(20)
                $0.hec.ackTimeout = .milliseconds(200)
                $0.batchSize = 20
            }), sink: nil
        ) { forwarder in
            let names = try await HECTests.send(200, to: forwarder, prefix: "ack")
            try await within(60, "every event acknowledged") { await acking.waitForEvents(200) }
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            #expect(Set(HECTests.queriesOf(acking)) == names)
            return forwarder.application
        }
        await silent.stop()
        await acking.stop()
        #expect(silent.ackQueries >= 1 && acking.ackQueries >= 1, "each endpoint asked for its own acks")
        #expect(silent.events.count > 0, "requests went to the endpoint that never acks, and were sent again")
        #expect(acking.events.count == 200, "asking the other endpoint for an ack would have sent these again")
        #expect(try Self.perEndpoint("dnstap_hec_endpoint_events_total", silent, after: application) == 0, "nothing counted delivered without its ack")
        #expect(try Self.perEndpoint("dnstap_hec_endpoint_events_total", acking, after: application) == 200)
        #expect(summary.eventsOut == 200)
        #expect(summary.undelivered == 0)
    }
}

/// Returns once the servers hold `count` events together (`before`: events already counted elsewhere).
private func waitForTotal(_ count: Int, _ servers: [HECTestServer], before: Int = 0) async {
    await withTaskGroup(of: Void.self) { group in
        // Each server wakes its waiters as events arrive; poll the sum on each arrival.
        for server in servers {
            group.addTask {
                var seen = server.events.count
                while !Task.isCancelled && before + servers.reduce(0, { $0 + $1.events.count }) < count {
                    await server.waitForEvents(seen + 1)
                    seen = server.events.count
                }
            }
        }
        // The first to see the total is enough: the others would wait for events that do not come.
        await group.next()
        group.cancelAll()
    }
}
