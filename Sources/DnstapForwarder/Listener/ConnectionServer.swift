import Logging
import NIOCore

/// One connection's life, from its first read to its close: the Frame Streams (or PowerDNS)
/// session, the encoding of what it reads, the hand-off to the buffer (waiting, not reading, while
/// the buffer is full), the sender's series in `/metrics`, and the close: counted, its slot freed,
/// and logged with what the connection carried.
///
/// The listener accepts and admits connections and runs `serve` as each one's task; what happens
/// on a connection is here. Errors of one connection end that connection only.
struct ConnectionServer: Sendable {
    let maxFrameSize: Int
    let registry: ConnectionRegistry
    let statistics: ForwarderStatistics
    let resolutionMap: ResolutionMap?
    let filter: EventFilter?
    let transactions: TransactionTable?
    /// The encoders the connections borrow for each read.
    let encoders: EncoderPool
    let intake: EventIntake
    let logger: Logger

    /// Serves one admitted connection until it ends; never throws.
    func serve(_ reads: ConnectionReads, record: ConnectionRecord) async {
        var logger = self.logger
        logger[metadataKey: "connection.id"] = "\(record.id)"
        logger[metadataKey: "peer"] = "\(record.peer)"
        if record.transport == .unix { record.setSender(await UnixPeerCredentials.sender(of: record.channel)) }
        // A TLS connection is logged as opened once its handshake names the sender.
        if record.transport != .tls { logOpened(record) }
        if record.transport == .pdns {
            let session = PowerDNSSession(record: record, maxFrameSize: maxFrameSize, statistics: statistics)
            await serve(reads, record: record, session: session, format: .powerDNS, logger: logger)
        } else {
            let session = FrameStreamsSession(record: record, maxFrameSize: maxFrameSize, statistics: statistics, logger: logger)
            await serve(reads, record: record, session: session, format: .dnstap, logger: logger)
        }
    }

    func logOpened(_ record: ConnectionRecord) {
        logger.info(
            "connection opened",
            metadata: ["connection.id": "\(record.id)", "peer": "\(record.peer)", "sender": "\(record.sender ?? "?")",
                       "transport": "\(record.transport.rawValue)", "active": "\(registry.active)"])
    }

    private func serve<Session: ConnectionSession>(
        _ reads: ConnectionReads, record: ConnectionRecord, session: Session, format: InputFormat,
        logger: Logger
    ) async {
        var session = session
        let lanes = EventEncodingLanes(
            format: format, record: record, statistics: statistics, resolutionMap: resolutionMap, filter: filter,
            transactions: transactions, pool: encoders, logger: logger)
        var end: (reason: CloseReason, detail: String?) = (.peerClosed, nil)
        var settled = false
        var series = SenderAccounting(record: record, statistics: statistics, logger: logger)
        // Counts the close and frees the slot. Done before FINISH is written, so a sender that
        // has seen FINISH can reconnect at once and find its slot free.
        func settle() {
            guard !settled else { return }
            settled = true
            if let requested = record.closeRequest { end = (requested, end.detail) }
            statistics.closed(end.reason)
            registry.close(record, reason: end.reason)
        }
        // The connection's reads until its session ends (or the input does).
        func run() async throws {
            while true {
                var outcome: SessionOutcome
                var readBytes = 0
                if let bytes = try await reads.next() {
                    readBytes = bytes.readableBytes
                    outcome = session.receive(bytes)
                } else {
                    outcome = session.endOfInput()
                }
                if let reply = outcome.reply, reply.type != .finish {
                    try await record.channel.writeAndFlush(reply.encoded(allocator: record.channel.allocator))
                }
                if !outcome.frames.isEmpty {
                    await hand(await lanes.encode(outcome.frames), from: record, logger: logger)
                    // PowerDNS's stream has no handshake and no resync: a message that does not
                    // decode means the peer is not PowerDNS, and the connection ends.
                    if format == .powerDNS, outcome.end == nil, lanes.takeFailures() > 0 {
                        outcome.end = (.protocolError, "a message that is not a PowerDNS protobuf (PBDNSMessage)")
                    }
                }
                series.account(frames: outcome.frames.count, bytes: readBytes)
                if let finished = outcome.end {
                    end = finished
                    settle()
                    if let reply = outcome.reply, reply.type == .finish {
                        // Unbound closes right after STOP without reading FINISH: still a clean end.
                        try? await record.channel.writeAndFlush(reply.encoded(allocator: record.channel.allocator))
                    }
                    return
                }
            }
        }
        do {
            try await run()
        } catch {
            end = (.ioError, "\(error)")
        }
        // Whatever ended it (the session, the peer, an error, a close request), the channel is closed
        // before the connection is logged as closed.
        try? await record.channel.close()
        let refusal = record.refusal
        if let refusal { end = (.tlsRefused, refusal.detail) }
        settle()
        // A refused TLS connection was logged (rate-limited) as refused.
        if refusal != nil { return }
        logClosed(record, end: end, logger: logger)
    }

    /// Hands events to the buffer, waiting (not reading) while it is full.
    private func hand(_ events: [ForwardedEvent], from record: ConnectionRecord, logger: Logger) async {
        guard !events.isEmpty else { return }
        record.setWaitingForRoom(true)
        await intake.queue(events, logger: logger)
        record.setWaitingForRoom(false)
    }

    private func logClosed(_ record: ConnectionRecord, end: (reason: CloseReason, detail: String?), logger: Logger) {
        let duration = NIODeadline.now() - record.startedAt
        var metadata: Logger.Metadata = [
            "reason": "\(end.reason.rawValue)",
            "sender": "\(record.sender ?? "?")",
            "duration_s": "\(Double(duration.nanoseconds / 1_000_000) / 1000)",
            "frames": "\(record.frames.load(ordering: .relaxed))",
            "bytes": "\(record.bytes.load(ordering: .relaxed))",
            "decode_errors": "\(record.decodeErrors.load(ordering: .relaxed))",
            "active": "\(registry.active)",
        ]
        if let detail = end.detail { metadata["detail"] = "\(detail)" }
        switch end.reason {
        case .protocolError, .ioError, .handshakeTimeout: logger.warning("connection closed", metadata: metadata)
        default: logger.info("connection closed", metadata: metadata)
        }
    }
}

/// A connection's sender series in `/metrics` (README, "Admin API"), fed once a read: found once
/// the sender is known (a TLS one at its handshake), and nothing to do without one.
private struct SenderAccounting {
    let record: ConnectionRecord
    let statistics: ForwarderStatistics
    let logger: Logger
    private var series: SenderSeries.Series?
    private var errorsReported = 0

    init(record: ConnectionRecord, statistics: ForwarderStatistics, logger: Logger) {
        self.record = record
        self.statistics = statistics
        self.logger = logger
    }

    mutating func account(frames: Int, bytes: Int) {
        if series == nil, let sender = record.sender, let found = statistics.senders.series(for: sender) {
            series = found.series
            if found.folded, statistics.senders.noteOverflow() {
                logger.warning(
                    "more senders than -max-sender-series: the others share the series sender=\"other\" in /metrics",
                    metadata: ["max_sender_series": "\(statistics.senders.limit)", "sender": "\(sender)"])
            }
        }
        // No series (-max-sender-series 0, or no sender yet): nothing to read per read.
        guard let series else { return }
        let errors = record.decodeErrors.load(ordering: .relaxed)
        series.record(
            frames: frames, bytes: bytes, decodeErrors: errors - errorsReported,
            nowSeconds: frames > 0 ? Double(WallClock.nowMicros()) / 1e6 : 0)
        errorsReported = errors
    }
}

/// The listener's side of the event buffer: appends events (waiting for room), counting what it
/// took and what arrived after it closed.
struct EventIntake: Sendable {
    let buffer: EventBuffer
    let statistics: ForwarderStatistics

    func queue(_ events: [ForwardedEvent], logger: Logger) async {
        let refused = await buffer.append(events)
        statistics.queued(events.count - refused)
        if refused > 0 {
            statistics.dropped(refused, reason: .shutdown)
            logger.error("events arrived after the output closed; dropped", metadata: ["events": "\(refused)"])
        }
    }
}
