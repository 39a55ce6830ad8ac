import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import NIOCore
import Testing

/// The HEC output against an in-process HEC that checks the protocol and can fail on cue.
@Suite("Splunk HEC output", .serialized)
struct HECTests {
    /// A forwarder sending to `server`, with millisecond backoffs so failure runs finish quickly.
    static func configure(_ server: HECTestServer, _ more: @escaping (inout ForwarderConfiguration) -> Void = { _ in })
        -> (inout ForwarderConfiguration) -> Void
    {
        return { config in
            config.output = .hec([try! HECEndpoint(server.url)], token: server.token)
            config.hec.retryInitialDelay = .milliseconds(10)
            config.hec.retryMaxDelay = .milliseconds(100)
            config.hec.requestTimeout = .seconds(2)
            config.batchSize = 50
            more(&config)
        }
    }

    /// Sends `count` messages (CQ/CR pairs) on one connection and ends the stream cleanly.
    static func send(_ count: Int, to forwarder: RunningForwarder, prefix: String = "h") async throws -> Set<String> {
        let (payloads, names) = DnstapBuilder.pairs(count, prefix: prefix, suffix: ".hec.test")
        try await sendSession(payloads, to: forwarder)
        return names
    }

    static func queriesOf(_ server: HECTestServer) -> [String] { queries(server.events) }

    @Test("fstrm_replay → forwarder → HEC: every event arrives once, gzip, strict envelopes")
    func clean() async throws {
        let server = try await HECTestServer()
        let replay = try tool("fstrm_replay")
        let directory = try TemporaryDirectory()
        let (capture, names) = try FstrmReplayTests.capture(in: directory)
        // Once: a request is sent again only when its reply did not come in time (at least once), so
        // the bound is far above what a loaded machine (ThreadSanitizer, 2 cores) takes to answer.
        let (_, summary) = try await withForwarder(Self.configure(server, { $0.hec.requestTimeout = .seconds(30) }), sink: nil) { forwarder in
            let result = try await run(replay, ["-t", "protobuf:dnstap.Dnstap", "-u", forwarder.unixPath!, "-r", capture])
            #expect(result.status == 0, "\(result.output)")
            try await within(60, "events at HEC") { await server.waitForEvents(FstrmReplayTests.messageCount) }
            return ()
        }
        await server.stop()
        #expect(server.violations.isEmpty, "\(server.violations.prefix(3))")
        #expect(server.events.count == FstrmReplayTests.messageCount)
        #expect(Set(Self.queriesOf(server)) == names)
        #expect(summary.eventsOut == FstrmReplayTests.messageCount)
        #expect(summary.undelivered == 0)
    }

    @Test("a run of 503s, a dropped connection and a 429 with Retry-After: retried until delivered")
    func transientFailures() async throws {
        let server = try await HECTestServer()
        server.script([
            .respond(status: 503, body: #"{"text":"Server is busy","code":9}"#),
            .respond(status: 503, body: #"{"text":"Server is busy","code":9}"#),
            .dropConnection,
            .respond(status: 429, body: #"{"text":"HEC queue is at capacity","code":26}"#, headers: [("Retry-After", "0")]),
            .respond(status: 500, body: #"{"text":"Internal server error","code":8}"#),
            .respond(status: 503, body: #"{"text":"Server is busy","code":9}"#),
        ])
        let (retries, summary) = try await withForwarder(Self.configure(server), sink: nil) { forwarder in
            let names = try await Self.send(200, to: forwarder)
            try await within(60, "events at HEC") { await server.waitForEvents(200) }
            #expect(Set(Self.queriesOf(server)) == names)
            return forwarder.statistics.outputRetries.load(ordering: .relaxed)
        }
        await server.stop()
        #expect(retries >= 6)
        #expect(server.violations.isEmpty)
        #expect(server.events.count == 200, "each event once: failed requests stored nothing")
        #expect(summary.undelivered == 0)
    }

    @Test("HEC down for a while, then back: nothing lost")
    func serverDownThenBack() async throws {
        let first = try await HECTestServer()
        let port = first.port
        await first.stop()
        let recorder = LogRecorder()
        let placeholder = first
        let (_, summary) = try await withForwarder(Self.configure(placeholder), sink: nil, logger: recorder.logger()) { forwarder in
            let names = try await Self.send(100, to: forwarder)
            try await within(30, "a failed attempt") { await recorder.waitFor("HEC request failed") }
            // Failures in a row open the circuit, which /metrics shows.
            try await within(30, "the circuit to open") { await recorder.waitFor("HEC circuit open after repeated failures") }
            #expect(try PrometheusText(try await forwarder.admin("/metrics").body)["dnstap_hec_circuit_open"] == 1)
            let again = try await HECTestServer(port: port)
            try await within(60, "events at HEC") { await again.waitForEvents(100) }
            try await within(30, "the circuit to close") { await recorder.waitFor("closing the circuit") }
            #expect(try PrometheusText(try await forwarder.admin("/metrics").body)["dnstap_hec_circuit_open"] == 0)
            #expect(Set(Self.queriesOf(again)) == names)
            #expect(again.violations.isEmpty)
            await again.stop()
            return ()
        }
        #expect(summary.undelivered == 0)
        #expect(summary.eventsOut == 100)
    }

    @Test("a 403 keeps the events buffered and is logged plainly; once the token works they are delivered")
    func forbiddenThenFixed() async throws {
        let server = try await HECTestServer()
        server.script(Array(repeating: .respond(status: 403, body: #"{"text":"Invalid token","code":4}"#), count: 4))
        let recorder = LogRecorder()
        let (_, summary) = try await withForwarder(Self.configure(server), sink: nil, logger: recorder.logger()) { forwarder in
            let names = try await Self.send(60, to: forwarder)
            try await within(60, "events at HEC") { await server.waitForEvents(60) }
            #expect(Set(Self.queriesOf(server)) == names)
            return ()
        }
        await server.stop()
        #expect(recorder.lines.contains { $0.contains("HEC refuses the token") })
        #expect(!recorder.lines.contains { $0.contains(server.token) }, "the token never appears in a log")
        #expect(summary.undelivered == 0)
    }

    @Test("400 code 6 names one bad event: it alone is dropped and counted, the rest resent")
    func invalidEvent() async throws {
        let server = try await HECTestServer()
        server.script([.respond(status: 400, body: #"{"text":"Invalid data format","code":6,"invalid-event-number":3}"#)])
        let (statistics, summary) = try await withForwarder(Self.configure(server), sink: nil) { forwarder in
            _ = try await Self.send(40, to: forwarder)
            try await within(60, "events at HEC") { await server.waitForEvents(39) }
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            return forwarder.statistics
        }
        await server.stop()
        #expect(server.events.count == 39)
        #expect(statistics.droppedByReason[.invalidEvent] == 1)
        #expect(summary.eventsOut + summary.undelivered == 40, "delivered + counted-dropped = received")
        #expect(summary.exitStatus == 3)
    }

    @Test("413 splits the batch; another 4xx drops the batch and counts it")
    func tooLargeAndRejected() async throws {
        let server = try await HECTestServer()
        server.script([
            .respond(status: 413, body: "Request Entity Too Large"),
            .success,
            .respond(status: 400, body: #"{"text":"Incorrect index","code":7}"#),
        ])
        let (statistics, summary) = try await withForwarder(Self.configure(server, { $0.batchSize = 50 }), sink: nil) { forwarder in
            _ = try await Self.send(50, to: forwarder)
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            try await within(60, "first half at HEC") { await server.waitForEvents(25) }
            return forwarder.statistics
        }
        await server.stop()
        // 413 → halves of 25: the first half is accepted, the second rejected (code 7).
        #expect(server.events.count == 25)
        #expect(statistics.droppedByReason[.rejected] == 25)
        #expect(summary.eventsOut + summary.undelivered == 50)
    }

    @Test("a batch over -hec-max-batch-bytes goes out as several requests")
    func byteLimit() async throws {
        let server = try await HECTestServer()
        let (_, summary) = try await withForwarder(
            Self.configure(server, { $0.hec.maxBatchBytes = 4096; $0.batchSize = 100 }), sink: nil
        ) { forwarder in
            _ = try await Self.send(100, to: forwarder)
            try await within(60, "events at HEC") { await server.waitForEvents(100) }
            return ()
        }
        await server.stop()
        #expect(server.requests >= 100 * 600 / 4096, "several requests of at most 4 KiB each")
        #expect(summary.undelivered == 0)
    }

    @Test("events HEC rejects for good go to the dead-letter file, with the reason")
    func deadLetters() async throws {
        let server = try await HECTestServer()
        server.script([.respond(status: 400, body: #"{"text":"Incorrect index","code":7}"#)])
        let directory = try TemporaryDirectory()
        let path = directory.path + "/dlq.jsonl"
        let (_, summary) = try await withForwarder(
            Self.configure(server, { $0.hec.deadLetterPath = path; $0.batchSize = 10 }), sink: nil
        ) { forwarder in
            _ = try await Self.send(10, to: forwarder)
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            return ()
        }
        await server.stop()
        #expect(summary.undelivered == 10)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 10)
        let first = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(first["reason"] as? String == "rejected")
        #expect((first["reply"] as? String)?.contains("code 7") == true)
        #expect((first["event"] as? [String: Any])?["query"] as? String == "h0.hec.test")
    }

    @Test("indexer acknowledgement: delivered only when acknowledged; a lost ack forces a resend")
    func acknowledgements() async throws {
        let server = try await HECTestServer()
        server.enableAcknowledgements(losing: [0])
        let (retries, summary) = try await withForwarder(
            Self.configure(server, {
                $0.hec.acknowledgements = true
                $0.hec.ackPollInterval = .milliseconds(20)
                $0.hec.ackTimeout = .milliseconds(300)
                $0.batchSize = 20
                $0.hec.maxInFlight = 1
            }), sink: nil
        ) { forwarder in
            let names = try await Self.send(40, to: forwarder)
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            try await within(60, "events at HEC") { await server.waitForEvents(60) }
            #expect(Set(Self.queriesOf(server)) == names)
            return forwarder.statistics.outputRetries.load(ordering: .relaxed)
        }
        await server.stop()
        #expect(server.violations.isEmpty)
        #expect(server.events.count == 60, "the batch whose ack was lost was sent twice (at-least-once)")
        #expect(server.ackQueries >= 3)
        #expect(retries >= 1)
        #expect(summary.eventsOut == 40)
        #expect(summary.undelivered == 0)
    }

    /// A self-signed certificate for 127.0.0.1, made with openssl for this test.
    static func certificate(in directory: TemporaryDirectory) async throws -> (certificate: String, key: String) {
        let certificate = directory.path + "/hec.pem", key = directory.path + "/hec.key"
        let made = try await run(try tool("openssl"), [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ])
        #expect(made.status == 0, "\(made.output)")
        return (certificate, key)
    }

    @Test("TLS: verified against -hec-ca-file; an unknown CA is reported as a TLS problem and retried; skipping verification works and warns")
    func tls() async throws {
        let directory = try TemporaryDirectory()
        let (certificate, key) = try await Self.certificate(in: directory)
        let server = try await HECTestServer(certificate: certificate, privateKey: key)
        #expect(server.url.hasPrefix("https://"))

        let (_, trusted) = try await withForwarder(Self.configure(server, { $0.hec.caFile = certificate }), sink: nil) { forwarder in
            _ = try await Self.send(20, to: forwarder)
            try await within(60, "events over TLS") { await server.waitForEvents(20) }
            return ()
        }
        #expect(trusted.undelivered == 0)

        let recorder = LogRecorder()
        let (_, untrusted) = try await withForwarder(
            Self.configure(server, { $0.shutdownTimeout = .seconds(1) }), sink: nil, logger: recorder.logger()
        ) { forwarder in
            _ = try await Self.send(20, to: forwarder, prefix: "untrusted")
            try await within(30, "the TLS failure") { await recorder.waitFor("TLS") }
            return ()
        }
        #expect(recorder.lines.contains { $0.contains("cannot reach HEC") && $0.contains("TLS") }, "the start probe names TLS")
        #expect(server.events.count == 20, "nothing was sent to a server that failed verification")
        #expect(untrusted.undelivered == 20, "kept and retried until the shutdown bound, then counted")

        let insecure = LogRecorder()
        _ = try await withForwarder(Self.configure(server, { $0.hec.insecureSkipVerify = true }), sink: nil, logger: insecure.logger()) {
            forwarder in
            _ = try await Self.send(20, to: forwarder, prefix: "insecure")
            try await within(60, "events without verification") { await server.waitForEvents(40) }
            return ()
        }
        await server.stop()
        #expect(insecure.lines.contains { $0.contains("verification is OFF") })
        #expect(server.violations.isEmpty)
    }
}
