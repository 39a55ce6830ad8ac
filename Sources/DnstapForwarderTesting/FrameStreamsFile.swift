import DnstapForwarder
import NIOCore

/// Frame Streams bytes for tests: data frames, and whole unidirectional files (START, data, STOP)
/// as `fstrm_capture` writes them and `fstrm_replay -r` reads them.
public enum FrameStreamsFile {
    public static func dataFrame(_ payload: [UInt8]) -> [UInt8] {
        let length = UInt32(payload.count)
        return [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] + payload
    }

    public static func control(_ frame: ControlFrame) -> [UInt8] {
        Array(buffer: frame.encoded())
    }

    /// A complete unidirectional Frame Streams file of dnstap payloads.
    public static func file(payloads: [[UInt8]]) -> [UInt8] {
        var bytes = control(ControlFrame(type: .start, contentTypes: [FrameStreams.dnstapContentType]))
        for payload in payloads { bytes += dataFrame(payload) }
        bytes += control(ControlFrame(type: .stop))
        return bytes
    }
}
