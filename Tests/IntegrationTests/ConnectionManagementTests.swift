import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import NIOCore
import Testing

@Suite("connection management", .serialized)
struct ConnectionManagementTests {
    @Test("cap + 5 clients: exactly cap accepted, the rest rejected and counted; a freed slot is reused")
    func cap() async throws {
        let cap = 4
        _ = try await withForwarder({ $0.maxConnections = cap }) { forwarder in
            var accepted: [FrameStreamsTestClient] = []
            var rejected = 0
            for _ in 0..<(cap + 5) {
                let client = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
                if try await client.handshake() == .accept {
                    accepted.append(client)
                } else {
                    rejected += 1
                }
            }
            #expect(accepted.count == cap)
            #expect(rejected == 5)
            #expect(forwarder.statistics.connectionsRejected.load(ordering: .relaxed) == 5)
            #expect(forwarder.application.registry.active == cap)

            // The ones inside the cap were never disturbed: each still delivers.
            for (index, client) in accepted.enumerated() {
                try await client.sendData(DnstapBuilder.pair(name: "c\(index).test", id: UInt16(index)))
            }
            try await within(30, "events") { await forwarder.sink.waitForCount(2 * cap) }

            // End one stream cleanly: its slot frees and a new client gets in.
            #expect(try await accepted[0].stop() == .finish)
            // No waiting: the slot is free before FINISH is sent.
            let late = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            #expect(try await late.handshake() == .accept)
            #expect(forwarder.statistics.connectionsRejected.load(ordering: .relaxed) == 5)
            for client in accepted.dropFirst() + [late] { await client.close() }
            return ()
        }
    }

    @Test("a peer that connects and says nothing is closed by the handshake timeout")
    func silentPeer() async throws {
        // Long enough for READY to be answered on a loaded machine under ThreadSanitizer, with the
        // whole suite running beside it (1 s was missed there once).
        _ = try await withForwarder({ $0.handshakeTimeout = .seconds(3) }) { forwarder in
            let silent = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            let halfway = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            try await halfway.send(FrameStreamsTestClient.ready)  // READY, then never START
            #expect(try await halfway.readControlFrame() == .accept)
            try await within(20, "handshake timeout") {
                await silent.waitForClose()
                await halfway.waitForClose()
            }
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            #expect(forwarder.statistics.closedByReason[.handshakeTimeout] == 2)
            return ()
        }
    }

    @Test("a connection idle past the idle timeout is closed; a busy one is not")
    func idle() async throws {
        _ = try await withForwarder({ $0.idleTimeout = .milliseconds(300); $0.handshakeTimeout = .seconds(5) }) { forwarder in
            let idle = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            #expect(try await idle.handshake() == .accept)
            try await within(10, "idle timeout") { await idle.waitForClose() }
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            #expect(forwarder.statistics.closedByReason[.idleTimeout] == 1)
            return ()
        }
    }

    @Test("a peer trickling bytes without ever completing a frame is idle: closed by the idle timeout")
    func trickle() async throws {
        _ = try await withForwarder({ $0.idleTimeout = .milliseconds(300); $0.handshakeTimeout = .seconds(5) }) { forwarder in
            let slow = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            #expect(try await slow.handshake() == .accept)
            // A data frame announced as 1000 bytes, then its bytes one at a time, each well inside
            // the idle timeout. The pause paces the sender (a slow peer); nothing waits on it.
            try await slow.send([0, 0, 0x03, 0xE8])
            let trickling = Task {
                for _ in 0..<1000 {
                    guard (try? await slow.send([0x41])) != nil else { return }
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
            try await within(10, "the idle timeout") { await slow.waitForClose() }
            trickling.cancel()
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            #expect(forwarder.statistics.closedByReason[.idleTimeout] == 1)
            return ()
        }
    }

    @Test("garbage, bad handshakes and oversized frames affect only their own connection")
    func badInputIsolated() async throws {
        _ = try await withForwarder({ $0.maxFrameSize = 1024 }) { forwarder in
            let good = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            #expect(try await good.handshake() == .accept)

            let garbage = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            try await garbage.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            let early = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            try await early.sendData([1, 2, 3])  // data before START
            let wrongType = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            try await wrongType.send(ControlFrame(type: .ready, contentTypes: [Array("protobuf:other".utf8)]))
            for client in [garbage, early, wrongType] {
                try await within(10, "protocol error close") { await client.waitForClose() }
            }

            // On the good connection: an oversized frame and a malformed protobuf are skipped and counted.
            try await good.sendData([UInt8](repeating: 0x42, count: 5000))
            try await good.sendData([0xff, 0xff, 0xff])
            try await good.sendData(DnstapBuilder.pair(name: "still.fine.test", id: 1))
            try await within(30, "events") { await forwarder.sink.waitForCount(2) }
            #expect(try await good.stop() == .finish)
            await forwarder.application.registry.waitUntilActive(atMost: 0)

            let statistics = forwarder.statistics
            #expect(statistics.closedByReason[.protocolError] == 3)
            #expect(statistics.closedByReason[.stop] == 1)
            #expect(statistics.oversizedFrames.load(ordering: .relaxed) == 1)
            #expect(statistics.protobufErrors.load(ordering: .relaxed) == 1)
            #expect(queries(forwarder.sink.lines) == ["still.fine.test", "still.fine.test"])
            return ()
        }
    }

    @Test("a stream cut off mid-frame keeps the whole frames before the cut")
    func cutMidFrame() async throws {
        _ = try await withForwarder { forwarder in
            let client = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            #expect(try await client.handshake() == .accept)
            let whole = DnstapBuilder.pair(name: "whole.test", id: 9)
            let partial = FrameStreamsFile.dataFrame(whole[0]).prefix(20)
            try await client.send(whole.flatMap(FrameStreamsFile.dataFrame) + partial)
            await client.close()
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            try await within(30, "events") { await forwarder.sink.waitForCount(2) }
            #expect(forwarder.statistics.closedByReason[.peerClosed] == 1)
            #expect(forwarder.sink.count == 2)
            return ()
        }
    }

    @Test("when the output stalls, connections stop reading, logged and counted; nothing is dropped")
    func backpressure() async throws {
        let sink = InMemorySink()
        sink.hold()
        let total = 400
        let recorder = LogRecorder()
        _ = try await withForwarder(
            { $0.bufferSize = 50; $0.batchSize = 10; $0.maxConnections = 10 }, sink: sink, logger: recorder.logger()
        ) { forwarder in
            let client = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            #expect(try await client.handshake() == .accept)
            try await client.sendData(DnstapBuilder.pairs(total, prefix: "bp", suffix: ".test").payloads)
            try await within(30, "the sink to be called") { await sink.waitUntilWriteStarted() }
            try await within(30, "the buffer-full line") { await recorder.waitFor("event buffer full") }
            #expect(forwarder.statistics.bufferFullPauses.load(ordering: .relaxed) >= 1)
            #expect(forwarder.application.buffer.fill <= 50, "the buffer never holds more than its size")
            sink.release()
            try await within(60, "events") { await sink.waitForCount(total) }
            #expect(Set(queries(sink.lines)).count == total / 2)
            #expect(forwarder.statistics.droppedTotal == 0)
            return ()
        }
    }
}

@Suite("shutdown bound")
struct ShutdownBoundTests {
    @Test("an output blocked past the shutdown bound: the undelivered events are counted, exit status 3")
    func blockedOutput() async throws {
        let sink = InMemorySink()
        sink.hold()
        let (_, summary) = try await withForwarder({ $0.shutdownTimeout = .milliseconds(400); $0.batchSize = 10 }, sink: sink) {
            forwarder in
            let client = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            #expect(try await client.handshake() == .accept)
            try await client.sendData(DnstapBuilder.pairs(50, prefix: "b", suffix: ".test").payloads)
            #expect(try await client.stop() == .finish)
            try await within(30, "the output to be called") { await sink.waitUntilWriteStarted() }
            return ()
        }
        #expect(sink.count == 0)
        #expect(summary.undelivered == 50, "every accepted event is accounted for")
        #expect(summary.exitStatus == 3, "\(summary.failure ?? "")")
    }

    @Test("the bound runs on the shutdown clock: a blocked output is cut off only when it passes, and every event is counted")
    func manualClock() async throws {
        let clock = ManualClock()
        let sink = InMemorySink()
        sink.hold()
        let application = Locked<ForwarderApplication?>(nil)
        let (_, summary) = try await withForwarder(
            { $0.shutdownTimeout = .seconds(30); $0.batchSize = 10 }, sink: sink, clock: clock,
            whileStopping: {
                // The exporter waits out the bound on the clock; until it passes nothing is cut off.
                await clock.waitForSleepers(1)
                #expect(application.withLock { $0 }?.statistics.droppedTotal == 0)
                #expect(sink.count == 0)
                clock.advance(by: .seconds(29))
                #expect(application.withLock { $0 }?.statistics.droppedTotal == 0, "29 s: still within the bound")
                clock.advance(by: .seconds(1))
            }
        ) { forwarder in
            application.withLock { $0 = forwarder.application }
            let client = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            #expect(try await client.handshake() == .accept)
            try await client.sendData(DnstapBuilder.pairs(50, prefix: "m", suffix: ".test").payloads)
            #expect(try await client.stop() == .finish)
            try await within(30, "the output to be called") { await sink.waitUntilWriteStarted() }
            return ()
        }
        #expect(sink.count == 0)
        #expect(summary.undelivered == 50, "the batch cut off and the queued events are all counted")
        #expect(summary.exitStatus == 3)
    }

    @Test("a failing output: batches are dropped, counted and the exit status says so")
    func failingOutput() async throws {
        let sink = InMemorySink()
        sink.setFailing(true)
        let (_, summary) = try await withForwarder({ $0.batchSize = 10 }, sink: sink) { forwarder in
            let client = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            #expect(try await client.handshake() == .accept)
            try await client.sendData(DnstapBuilder.pair(name: "f.test", id: 1))
            #expect(try await client.stop() == .finish)
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            return ()
        }
        #expect(summary.undelivered == 2)
        #expect(summary.exitStatus == 3)
    }
}
