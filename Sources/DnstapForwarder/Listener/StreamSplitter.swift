import NIOCore

/// Runs a `NIOSingleStepByteToMessageDecoder` over a connection's reads, as NIO's
/// `NIOSingleStepByteToMessageProcessor` does, without holding on to a read's buffer.
///
/// The messages are slices of the read they came in (no copy). NIO's processor keeps the last
/// read's buffer for the next one, so an idle connection held the whole storage of its last read
/// (up to 256 KiB, the receive allocator's largest) even with nothing left in it, and a frame cut
/// by the end of a read kept all of it. Here only the bytes of a cut message are kept, copied out
/// of the read; a message longer than a read grows in that copy until it is whole.
///
/// A class so a session can hand it to its decoding loop while handling the messages; used by one
/// task at a time (the connection's).
final class StreamSplitter<Decoder: NIOSingleStepByteToMessageDecoder> {
    private var decoder: Decoder
    /// The start of a message cut off by the end of the last read: a copy, never a read's slice.
    private(set) var carried: ByteBuffer?

    init(_ decoder: Decoder) {
        self.decoder = decoder
    }

    /// Hands each whole message of `bytes` (after what was carried) to `receive`, in order.
    func process(buffer bytes: ByteBuffer, _ receive: (Decoder.InboundOut) throws -> Void) throws {
        var buffer: ByteBuffer
        let copied: Bool
        if var carried = carried.take() {
            carried.writeImmutableBuffer(bytes)
            buffer = carried
            copied = true
        } else {
            buffer = bytes
            copied = false
        }
        defer { keep(buffer, copied: copied) }
        while let message = try decoder.decode(buffer: &buffer) {
            try receive(message)
        }
    }

    /// The input is over: the messages left, then whatever the decoder makes of the rest (an error
    /// for a message cut off).
    func finishProcessing(seenEOF: Bool, _ receive: (Decoder.InboundOut) throws -> Void) throws {
        var buffer = carried.take() ?? ByteBuffer()
        while let message = try decoder.decodeLast(buffer: &buffer, seenEOF: seenEOF) {
            try receive(message)
        }
    }

    /// Keeps what is left of a read for the next: a copy of it when it is a read's slice, or a
    /// small rest of a large copy (the messages before it went out); a copy still filling, as it is.
    private func keep(_ rest: ByteBuffer, copied: Bool) {
        guard rest.readableBytes > 0 else {
            carried = nil
            return
        }
        if copied && rest.readableBytes * 2 >= rest.capacity {
            carried = rest
            return
        }
        carried = ByteBufferAllocator().buffer(buffer: rest)
    }
}
