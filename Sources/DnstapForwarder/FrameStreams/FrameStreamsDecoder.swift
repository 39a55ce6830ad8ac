import NIOCore

/// One unit of a Frame Streams byte stream.
public enum FrameStreamsFrame: Equatable, Sendable {
    /// A data frame's payload (a slice of the read buffer, not a copy).
    case data(ByteBuffer)
    /// A control frame.
    case control(ControlFrame)
    /// A data frame over the size limit, discarded without being buffered.
    case oversizedData(length: Int)
}

/// Splits a byte stream into Frame Streams frames (PROTOCOLS.md §1.1).
///
/// Data frames over `maxFrameLength` are streamed past (never buffered) and reported as
/// `.oversizedData`, as fstrm_capture does; a length over `insaneFrameLength` means the stream is
/// not Frame Streams (or lost sync) and is an error.
public struct FrameStreamsDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = FrameStreamsFrame

    private enum State {
        case waitingForFrame
        case skipping(remaining: Int, length: Int)
    }

    public let maxFrameLength: Int
    public let insaneFrameLength: Int
    private var state = State.waitingForFrame

    public init(maxFrameLength: Int, insaneFrameLength: Int = 256 << 20) {
        self.maxFrameLength = maxFrameLength
        self.insaneFrameLength = max(insaneFrameLength, maxFrameLength)
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> FrameStreamsFrame? {
        if case .skipping(let remaining, let length) = state {
            let discard = min(remaining, buffer.readableBytes)
            buffer.moveReaderIndex(forwardBy: discard)
            if discard < remaining {
                state = .skipping(remaining: remaining - discard, length: length)
                return nil
            }
            state = .waitingForFrame
            return .oversizedData(length: length)
        }
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        if length > 0 {
            let frameLength = Int(length)
            if frameLength > maxFrameLength {
                guard frameLength <= insaneFrameLength else { throw FrameStreamsError.frameLengthInsane(frameLength) }
                buffer.moveReaderIndex(forwardBy: 4)
                state = .skipping(remaining: frameLength, length: frameLength)
                return try decode(buffer: &buffer)
            }
            guard buffer.readableBytes >= 4 + frameLength else { return nil }
            buffer.moveReaderIndex(forwardBy: 4)
            return .data(buffer.readSlice(length: frameLength)!)
        }
        guard let controlLength = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt32.self) else { return nil }
        guard controlLength >= 4, controlLength <= FrameStreams.controlFrameMaxLength else {
            throw FrameStreamsError.controlFrameLength(Int(controlLength))
        }
        guard buffer.readableBytes >= 8 + Int(controlLength) else { return nil }
        buffer.moveReaderIndex(forwardBy: 8)
        let payload = buffer.readSlice(length: Int(controlLength))!
        return .control(try ControlFrame(payload: payload))
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> FrameStreamsFrame? {
        if let frame = try decode(buffer: &buffer) { return frame }
        if case .skipping(let remaining, _) = state {
            state = .waitingForFrame
            throw FrameStreamsError.truncatedFrame(bufferedBytes: remaining)
        }
        if buffer.readableBytes > 0 {
            let leftover = buffer.readableBytes
            buffer.moveReaderIndex(forwardBy: leftover)
            throw FrameStreamsError.truncatedFrame(bufferedBytes: leftover)
        }
        return nil
    }
}
