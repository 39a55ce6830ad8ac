import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import NIOCore
import Testing

/// `/metrics` by sender: which resolver sends what, and when it last did.
@Suite("per-sender series")
struct SenderSeriesTests {
    @Test("frames, bytes, decode errors and the last frame's time by sender")
    func bySender() async throws {
        let before = Double(WallClock.nowMicros()) / 1e6
        let (_, _) = try await withForwarder({
            $0.tcpListen = HostPort(host: "127.0.0.1", port: 0)
            $0.maxSenderSeries = 2
        }) { forwarder in
            // The unix peer (uid=N) sends 4 frames and one that does not decode.
            let unix = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            #expect(try await unix.handshake() == .accept)
            try await unix.sendData(DnstapBuilder.pair(name: "a.test", id: 1) + DnstapBuilder.pair(name: "b.test", id: 2) + [[0xFF, 0xFF]])
            #expect(try await unix.stop() == .finish)
            // The TCP peer (127.0.0.1) sends 2.
            let tcp = try await FrameStreamsTestClient.connect(to: forwarder.tcpAddress!)
            #expect(try await tcp.handshake() == .accept)
            try await tcp.sendData(DnstapBuilder.pair(name: "c.test", id: 3))
            #expect(try await tcp.stop() == .finish)
            await forwarder.application.registry.waitUntilActive(atMost: 0)

            let metrics = try PrometheusText(try await forwarder.admin("/metrics").body)
            let uid = "uid=\(getuid())"
            #expect(metrics["dnstap_sender_frames_total{sender=\"\(uid)\"}"] == 5)
            #expect(metrics["dnstap_sender_decode_errors_total{sender=\"\(uid)\"}"] == 1)
            #expect(metrics["dnstap_sender_frames_total{sender=\"127.0.0.1\"}"] == 2)
            #expect(metrics["dnstap_sender_decode_errors_total{sender=\"127.0.0.1\"}"] == 0)
            #expect((metrics["dnstap_sender_bytes_total{sender=\"127.0.0.1\"}"] ?? 0) > 0)
            let last = metrics["dnstap_sender_last_frame_timestamp_seconds{sender=\"127.0.0.1\"}"] ?? 0
            #expect(last >= before && last <= Double(WallClock.nowMicros()) / 1e6, "\(last)")
            #expect(forwarder.statistics.senders.count == 2)
            return ()
        }
    }
}
