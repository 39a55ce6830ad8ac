import Logging
import NIOCore

/// What one read (or the end of input) of a connection gave.
struct SessionOutcome {
    /// A control frame to write (ACCEPT or FINISH).
    var reply: ControlFrame?
    /// Set when the stream is over: why, and a detail for the log on errors.
    var end: (reason: CloseReason, detail: String?)?
    /// The payloads of the messages, in order (dnstap protobufs, or PowerDNS's).
    var frames: [ByteBuffer] = []
}

/// The protocol side of a connection: the connection task feeds it each read and carries out
/// what it returns.
protocol ConnectionSession {
    mutating func receive(_ bytes: ByteBuffer) -> SessionOutcome
    mutating func endOfInput() -> SessionOutcome
}

/// The protocol side of one Frame Streams connection, with no I/O: bytes in; replies, dnstap
/// payloads and an end out. Encoding the payloads is `EventEncodingLanes`' job.
struct FrameStreamsSession: ConnectionSession {
    typealias Outcome = SessionOutcome

    private var processor: StreamSplitter<FrameStreamsDecoder>
    private(set) var machine = FrameStreamsStateMachine()
    private let record: ConnectionRecord
    private let statistics: ForwarderStatistics
    private var decodeErrorLog = RateLimitedLog(interval: .seconds(10))
    private var logger: Logger

    init(record: ConnectionRecord, maxFrameSize: Int, statistics: ForwarderStatistics, logger: Logger) {
        self.processor = StreamSplitter(FrameStreamsDecoder(maxFrameLength: maxFrameSize))
        self.record = record
        self.statistics = statistics
        self.logger = logger
    }

    /// Processes one read.
    mutating func receive(_ bytes: ByteBuffer) -> Outcome {
        record.noteReceived(bytes: bytes.readableBytes)
        return decodeFrames(bytes: bytes.readableBytes, errorReason: .protocolError) { processor, handle in
            try processor.process(buffer: bytes, handle)
        }
    }

    /// The peer closed its side: finish whatever whole frames are buffered. A partial frame at EOF
    /// is a normal end (the whole frames before it were kept), not a protocol error.
    mutating func endOfInput() -> Outcome {
        var outcome = decodeFrames(bytes: 0, errorReason: .peerClosed) { processor, handle in
            try processor.finishProcessing(seenEOF: true, handle)
        }
        if outcome.end == nil {
            // Read before endOfInput(), which marks the stream finished.
            let detail = machine.isHandshakeComplete ? nil : "closed before the handshake completed"
            outcome.end = (machine.endOfInput(), detail)
        }
        return outcome
    }

    /// Runs the decoder over what `feed` gives it, handling frames until the stream ends.
    private mutating func decodeFrames(
        bytes: Int, errorReason: CloseReason,
        _ feed: (StreamSplitter<FrameStreamsDecoder>, (FrameStreamsFrame) throws -> Void) throws -> Void
    ) -> Outcome {
        var outcome = Outcome()
        var sawFrame = false
        do {
            try feed(processor) { frame in
                sawFrame = true
                if outcome.end == nil { handle(frame, into: &outcome) }
            }
        } catch {
            outcome.end = outcome.end ?? (errorReason, describe(error))
        }
        if sawFrame { record.noteActivity() }
        record.frames.add(outcome.frames.count, ordering: .relaxed)
        statistics.received(frames: outcome.frames.count, bytes: bytes)
        return outcome
    }

    private mutating func handle(_ frame: FrameStreamsFrame, into outcome: inout Outcome) {
        let wasComplete = machine.isHandshakeComplete
        switch machine.receive(frame) {
        case .sendAccept:
            outcome.reply = .accept
        case .deliver(let payload):
            outcome.frames.append(payload)
        case .skippedOversized(let length):
            record.decodeErrors.add(1, ordering: .relaxed)
            statistics.oversized()
            if let suppressed = decodeErrorLog.shouldLog() {
                logger.warning(
                    "data frame over the size limit; skipped",
                    metadata: ["frame_bytes": "\(length)", "suppressed_since_last": "\(suppressed)"])
            }
        case .skippedUnknownControl(let type):
            statistics.unknownControl()
            logger.debug("unknown control frame in the data phase; skipped", metadata: ["control_type": "\(type)"])
        case .sendFinishAndClose:
            outcome.reply = .finish
            outcome.end = (.stop, nil)
        case .close(let reason):
            outcome.end = (reason, nil)
        case .protocolViolation(let message):
            outcome.end = (.protocolError, message)
        case .none:
            break
        }
        if !wasComplete && machine.isHandshakeComplete {
            record.noteHandshakeComplete()
            logger.debug("handshake complete", metadata: ["stream": "\(machine.phase.rawValue)"])
        }
    }

    private func describe(_ error: any Error) -> String {
        if let error = error as? FrameStreamsError { return error.description }
        if error is ByteToMessageDecoderError.PayloadTooLargeError { return "read buffer over its limit" }
        return "\(error)"
    }
}
