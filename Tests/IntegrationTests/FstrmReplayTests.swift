import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import NIOCore
import Testing

/// The reference Frame Streams sender (libfstrm's `fstrm_replay`) against the forwarder.
@Suite("fstrm_replay → forwarder", .serialized)
struct FstrmReplayTests {
    static let messageCount = 20_000

    /// A capture made by this project: CQ/CR pairs for distinct names, in a Frame Streams file.
    static func capture(in directory: TemporaryDirectory) throws -> (path: String, names: Set<String>) {
        let (payloads, names) = DnstapBuilder.pairs(messageCount, prefix: "host", suffix: ".replay.test")
        let path = directory.path + "/capture.fstrm"
        try Data(FrameStreamsFile.file(payloads: payloads)).write(to: URL(fileURLWithPath: path))
        return (path, names)
    }

    @Test("over a unix socket every message arrives, once")
    func unix() async throws {
        let directory = try TemporaryDirectory()
        let (capture, names) = try Self.capture(in: directory)
        let replay = try tool("fstrm_replay")
        let ((result, lines), summary) = try await withForwarder { forwarder in
            let result = try await run(replay, ["-t", "protobuf:dnstap.Dnstap", "-u", forwarder.unixPath!, "-r", capture])
            try await within(60, "events") { await forwarder.sink.waitForCount(Self.messageCount) }
            return (result, forwarder.sink.lines)
        }
        #expect(result.status == 0, "fstrm_replay: \(result.output)")
        #expect(lines.count == Self.messageCount)
        let seen = queries(lines)
        #expect(seen.count == Self.messageCount)
        #expect(Set(seen) == names)
        #expect(summary.undelivered == 0)
        #expect(summary.exitStatus == 0)
    }

    @Test("over TCP every message arrives, once")
    func tcp() async throws {
        let directory = try TemporaryDirectory()
        let (capture, names) = try Self.capture(in: directory)
        let replay = try tool("fstrm_replay")
        let (lines, _) = try await withForwarder({ $0.tcpListen = HostPort(host: "127.0.0.1", port: 0) }) { forwarder in
            let port = forwarder.tcpAddress!.port!
            let result = try await run(replay, ["-t", "protobuf:dnstap.Dnstap", "-a", "127.0.0.1", "-p", "\(port)", "-r", capture])
            #expect(result.status == 0, "fstrm_replay: \(result.output)")
            try await within(60, "events") { await forwarder.sink.waitForCount(Self.messageCount) }
            #expect(forwarder.statistics.closedByReason[.stop] == 1, "a clean STOP/FINISH end")
            return forwarder.sink.lines
        }
        #expect(lines.count == Self.messageCount)
        #expect(Set(queries(lines)) == names)
    }

    @Test("fstrm_replay is refused cleanly when it offers another content type")
    func wrongContentType() async throws {
        let directory = try TemporaryDirectory()
        let (capture, _) = try Self.capture(in: directory)
        let replay = try tool("fstrm_replay")
        let (result, _) = try await withForwarder { forwarder in
            let result = try await run(replay, ["-t", "protobuf:other.Type", "-u", forwarder.unixPath!, "-r", capture])
            await forwarder.application.registry.waitUntilActive(atMost: 0)
            #expect(forwarder.statistics.closedByReason[.protocolError] == 1)
            #expect(forwarder.sink.count == 0)
            return result
        }
        #expect(result.status != 0, "the sender must see the refusal")
    }
}
