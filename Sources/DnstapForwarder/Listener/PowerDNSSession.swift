import Logging
import NIOCore

/// Splits PowerDNS's protobuf logging stream (`-pdns-listen`, PROTOCOLS.md §7) into messages:
/// each is a 16-bit big-endian length followed by that many bytes of `PBDNSMessage`.
///
/// There is no handshake and no way to resynchronise, so a length of 0 or over the limit means
/// the peer is not PowerDNS (or lost sync): an error that closes the connection.
struct PowerDNSFrameDecoder: NIOSingleStepByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    let maxLength: Int

    mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) else { return nil }
        guard length > 0 else { throw PowerDNSStreamError.emptyMessage }
        guard Int(length) <= maxLength else { throw PowerDNSStreamError.oversized(Int(length), limit: maxLength) }
        guard buffer.readableBytes >= 2 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 2)
        return buffer.readSlice(length: Int(length))
    }

    mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        if let message = try decode(buffer: &buffer) { return message }
        guard buffer.readableBytes == 0 else {
            let left = buffer.readableBytes
            buffer.moveReaderIndex(forwardBy: left)
            throw PowerDNSStreamError.truncated(bufferedBytes: left)
        }
        return nil
    }
}

enum PowerDNSStreamError: Error, Equatable, CustomStringConvertible {
    case emptyMessage
    case oversized(Int, limit: Int)
    case truncated(bufferedBytes: Int)

    var description: String {
        switch self {
        case .emptyMessage: return "a message of length 0: not a PowerDNS protobuf stream"
        case .oversized(let length, let limit): return "a message of \(length) bytes, over the \(limit)-byte limit (-max-frame-size)"
        case .truncated(let left): return "the stream ended inside a message (\(left) bytes buffered)"
        }
    }
}

/// The protocol side of one PowerDNS protobuf connection, with no I/O, like `FrameStreamsSession`:
/// reads in; the messages and an end out. Nothing is ever written back.
struct PowerDNSSession: ConnectionSession {
    private var processor: StreamSplitter<PowerDNSFrameDecoder>
    private let record: ConnectionRecord
    private let statistics: ForwarderStatistics

    init(record: ConnectionRecord, maxFrameSize: Int, statistics: ForwarderStatistics) {
        processor = StreamSplitter(PowerDNSFrameDecoder(maxLength: min(maxFrameSize, Int(UInt16.max))))
        self.record = record
        self.statistics = statistics
    }

    mutating func receive(_ bytes: ByteBuffer) -> SessionOutcome {
        record.noteReceived(bytes: bytes.readableBytes)
        return split(bytes: bytes.readableBytes) { processor, handle in try processor.process(buffer: bytes, handle) }
    }

    /// The peer closed: whatever whole messages are buffered, then the end (a message cut off by
    /// the close is counted as truncated).
    mutating func endOfInput() -> SessionOutcome {
        var outcome = split(bytes: 0) { processor, handle in try processor.finishProcessing(seenEOF: true, handle) }
        if outcome.end == nil { outcome.end = (.peerClosed, nil) }
        return outcome
    }

    private mutating func split(
        bytes: Int, _ feed: (StreamSplitter<PowerDNSFrameDecoder>, (ByteBuffer) throws -> Void) throws -> Void
    ) -> SessionOutcome {
        var outcome = SessionOutcome()
        do {
            try feed(processor) { outcome.frames.append($0) }
        } catch let error as PowerDNSStreamError {
            record.decodeErrors.add(1, ordering: .relaxed)
            switch error {
            case .truncated: statistics.truncatedMessage()
            case .emptyMessage: statistics.protobufError()
            case .oversized: statistics.oversized()
            }
            outcome.end = (.protocolError, error.description)
        } catch {
            outcome.end = (.protocolError, "\(error)")
        }
        if !outcome.frames.isEmpty { record.noteActivity() }
        record.frames.add(outcome.frames.count, ordering: .relaxed)
        statistics.received(frames: outcome.frames.count, bytes: bytes)
        return outcome
    }
}
