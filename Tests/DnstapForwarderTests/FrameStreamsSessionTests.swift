import DnstapForwarderTesting
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import DnstapForwarder

/// The protocol side of a connection, fed bytes directly.
@Suite("Frame Streams session")
struct FrameStreamsSessionTests {
    static func session() -> FrameStreamsSession {
        let record = ConnectionRecord(id: 1, peer: "test", transport: .unix, channel: EmbeddedChannel())
        return FrameStreamsSession(record: record, maxFrameSize: 1 << 20, statistics: ForwarderStatistics(), logger: Logger(label: "test"))
    }

    static func bytes(_ values: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: values) }

    @Test("a sender that closes after its handshake without STOP (dnsdist, PowerDNS, a killed resolver) ends normally, with no error detail")
    func closeAfterHandshake() {
        var session = Self.session()
        let start = FrameStreamsFile.control(ControlFrame(type: .start, contentTypes: [FrameStreams.dnstapContentType]))
        let data = FrameStreamsFile.dataFrame(DnstapBuilder.pair(name: "a.test", id: 1)[0])
        let read = session.receive(Self.bytes(start + data))
        #expect(read.frames.count == 1)
        #expect(read.end == nil)
        let end = session.endOfInput().end
        #expect(end?.reason == .peerClosed)
        #expect(end?.detail == nil, "logged as: \(end?.detail ?? "")")
    }

    @Test("a sender that closes before completing the handshake is told apart in the log")
    func closeBeforeHandshake() {
        var session = Self.session()
        let ready = FrameStreamsFile.control(ControlFrame(type: .ready, contentTypes: [FrameStreams.dnstapContentType]))
        #expect(session.receive(Self.bytes(ready)).reply?.type == .accept)
        let end = session.endOfInput().end
        #expect(end?.reason == .peerClosed)
        #expect(end?.detail == "closed before the handshake completed")
    }
}
