import DnstapForwarderTesting
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@testable import DnstapForwarder

@Suite("Frame Streams decoder")
struct FrameStreamsDecoderTests {
    let ready = FrameStreamsFile.control(ControlFrame(type: .ready, contentTypes: [FrameStreams.dnstapContentType]))

    @Test("READY matches the test vector of PROTOCOLS.md §1.1")
    func readyTestVector() {
        let expected: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0x22, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0x16] + Array("protobuf:dnstap.Dnstap".utf8)
        #expect(ready == expected)
        #expect(FrameStreamsFile.control(.finish) == [0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 5])
    }

    @Test("whole frames in any chunking (ByteToMessageDecoderVerifier)")
    func verifier() throws {
        let data: [UInt8] = [1, 2, 3, 4, 5]
        var input = ByteBuffer(bytes: ready + FrameStreamsFile.dataFrame(data) + FrameStreamsFile.control(ControlFrame(type: .stop)))
        let readyFrame = FrameStreamsFrame.control(ControlFrame(type: .ready, contentTypes: [FrameStreams.dnstapContentType]))
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [
                (input.readSlice(length: input.readableBytes)!,
                 [readyFrame, .data(ByteBuffer(bytes: data)), .control(ControlFrame(type: .stop))]),
            ],
            decoderFactory: { FrameStreamsDecoder(maxFrameLength: 1024) })
    }

    @Test("an oversized data frame is skipped without being buffered, and the next frame still decodes")
    func oversizedSkipped() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameStreamsDecoder(maxFrameLength: 16)))
        let big = [UInt8](repeating: 7, count: 100)
        try channel.writeInbound(ByteBuffer(bytes: FrameStreamsFile.dataFrame(big).prefix(50)))
        #expect(try channel.readInbound(as: FrameStreamsFrame.self) == nil)
        try channel.writeInbound(ByteBuffer(bytes: FrameStreamsFile.dataFrame(big).dropFirst(50) + FrameStreamsFile.dataFrame([9])))
        #expect(try channel.readInbound(as: FrameStreamsFrame.self) == .oversizedData(length: 100))
        #expect(try channel.readInbound(as: FrameStreamsFrame.self) == .data(ByteBuffer(bytes: [9])))
        _ = try channel.finish()
    }

    @Test(
        "bad control frames are errors",
        arguments: [
            ([0, 0, 0, 0, 0, 0, 0x02, 0x01] as [UInt8], "control length 513"),
            ([0, 0, 0, 0, 0, 0, 0, 2, 0, 0], "control length 2"),
            ([0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 4, 0, 0, 0, 9, 0, 0, 0, 0], "unknown field type"),
            ([0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 9], "field past the frame"),
            ([0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0], "truncated field header"),
        ])
    func badControl(bytes: [UInt8], what: String) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameStreamsDecoder(maxFrameLength: 1024)))
        #expect(throws: FrameStreamsError.self, "\(what)") { try channel.writeInbound(ByteBuffer(bytes: bytes)) }
    }

    @Test("a content type over 256 bytes is an error")
    func longContentType() {
        let frame = ControlFrame(type: .ready, contentTypes: [[UInt8](repeating: 65, count: 257)])
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameStreamsDecoder(maxFrameLength: 1024)))
        #expect(throws: FrameStreamsError.self) { try channel.writeInbound(frame.encoded()) }
    }

    @Test("garbage that claims a huge frame is an error, not an allocation")
    func insaneLength() {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameStreamsDecoder(maxFrameLength: 1024)))
        #expect(throws: FrameStreamsError.frameLengthInsane(Int(0x4745_5420))) {
            try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
        }
    }

    @Test("a stream that ends inside a frame reports the leftover")
    func truncatedAtEOF() throws {
        var decoder = FrameStreamsDecoder(maxFrameLength: 1024)
        var buffer = ByteBuffer(bytes: FrameStreamsFile.dataFrame([1, 2, 3]) + FrameStreamsFile.dataFrame([4, 5, 6]).prefix(5))
        #expect(try decoder.decodeLast(buffer: &buffer, seenEOF: true) == .data(ByteBuffer(bytes: [1, 2, 3])))
        #expect(throws: FrameStreamsError.truncatedFrame(bufferedBytes: 5)) {
            _ = try decoder.decodeLast(buffer: &buffer, seenEOF: true)
        }
    }
}
