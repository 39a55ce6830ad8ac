import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import Testing

/// The durable buffer (-hec-persistent-buf): what HEC has not taken survives a stop and a kill -9.
@Suite("HEC durable buffer", .serialized)
struct SpoolTests {
    @Test("events left in the spool at shutdown are not lost: the next start sends them")
    func restartReplays() async throws {
        let directory = try TemporaryDirectory()
        let spool = directory.path + "/spool"
        let down = try await HECTestServer()
        down.setDefault(.respond(status: 503, body: #"{"text":"Server is busy","code":9}"#))
        let recorder = LogRecorder()
        let (names, first) = try await withForwarder(
            HECTests.configure(down, { $0.hec.spoolPath = spool; $0.shutdownTimeout = .milliseconds(500) }), sink: nil,
            logger: recorder.logger(level: .debug)
        ) { forwarder in
            let names = try await HECTests.send(100, to: forwarder)
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            // The spool's bytes and bound in /metrics, once all 100 are in it.
            try await within(30, "all spooled") { await recorder.waitFor("spooled_total=100") }
            let metrics = try PrometheusText(try await forwarder.admin("/metrics").body)
            #expect((metrics["dnstap_spool_bytes"] ?? 0) > 0)
            #expect(metrics["dnstap_spool_capacity_bytes"] == Double(forwarder.application.configuration.hec.spoolMaxBytes))
            return names
        }
        await down.stop()
        #expect(down.events.isEmpty)
        #expect(first.undelivered == 0, "nothing dropped")
        #expect(first.spoolPending == 100, "all 100 wait in the spool")
        #expect(first.exitStatus == 0, "the run failed: \(first.failure ?? "-")")

        let up = try await HECTestServer()
        // A request timeout no loaded machine reaches: a request cut off after the receiver took
        // it is sent again (at-least-once), and this test counts exactly (under ThreadSanitizer a
        // 2 s timeout once gave 150).
        let (_, second) = try await withForwarder(
            HECTests.configure(up, { $0.hec.spoolPath = spool; $0.hec.requestTimeout = .seconds(30) }), sink: nil
        ) { _ in
            try await within(60, "replayed events at HEC") { await up.waitForEvents(100) }
            return ()
        }
        await up.stop()
        #expect(Set(HECTests.queriesOf(up)) == names)
        #expect(up.events.count == 100)
        #expect(second.eventsOut == 100)
        #expect(second.spoolPending == 0)
    }

    @Test("kill -9 while HEC hangs, then restart: every spooled event reaches HEC")
    func killNine() async throws {
        let replay = try tool("fstrm_replay")
        let directory = try TemporaryDirectory()
        let spool = directory.path + "/spool"
        let (payloads, names) = DnstapBuilder.pairs(200, prefix: "k", suffix: ".spool.test")
        let capture = directory.path + "/k.fstrm"
        try Data(FrameStreamsFile.file(payloads: payloads)).write(to: URL(fileURLWithPath: capture))
        let server = try await HECTestServer()
        server.setDefault(.hang)
        func start(_ socket: String) throws -> WatchedProcess {
            try WatchedProcess(
                ShutdownTests.binary,
                [
                    "-unix-socket", socket, "-output-type", "hec", "-hec-url", server.url, "-hec-token", server.token,
                    "-hec-persistent-buf", "true", "-hec-buf-path", spool, "-log-level", "debug", "-batch-size", "50",
                    "-flush-interval", "20ms", "-hec-retry-initial-delay", "10ms", "-hec-retry-max-delay", "100ms",
                    "-stats-interval", "0", "-admin-listen", "127.0.0.1:0",
                ])
        }
        let first = try start(directory.path + "/a.sock")
        #expect(try await within(30, "listening") { await first.waitFor("listening for dnstap") })
        let sent = try await run(replay, ["-t", "protobuf:dnstap.Dnstap", "-u", directory.path + "/a.sock", "-r", capture])
        #expect(sent.status == 0)
        #expect(try await within(30, "all spooled") { await first.waitFor("spooled_total=200") }, "\(first.text.suffix(2000))")
        first.signal(SIGKILL)
        _ = await first.waitForExit()

        server.setDefault(.success)
        let second = try start(directory.path + "/b.sock")
        #expect(try await within(30, "replay logged") { await second.waitFor("replaying batches left from an earlier run") })
        try await within(60, "events at HEC") { await server.waitForEvents(200) }
        second.signal(SIGTERM)
        let status = try await within(60, "exit") { await second.waitForExit() }
        await server.stop()
        #expect(status == 0, "\(second.text.suffix(2000))")
        #expect(Set(HECTests.queriesOf(server)) == names, "every event arrived")
        #expect(server.events.count <= 200 + 50, "at most the batch in flight went twice")
    }
}
