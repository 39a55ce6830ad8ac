import Logging
import NIOCore

/// What a connection's messages are.
enum InputFormat: Sendable {
    /// dnstap protobufs (from Frame Streams).
    case dnstap
    /// PowerDNS protobuf logging messages (`-pdns-listen`).
    case powerDNS
}

/// One connection's dnstap (or PowerDNS protobuf) → JSON encoding, on up to two cores.
///
/// A read that nearly fills the largest receive buffer (`splitBytes`, three quarters of
/// `DnstapListener.largestRead`) means the connection is behind: more was waiting. Its first half
/// is then encoded by a child task in the task pool (on another core) while the connection's own
/// task, on its channel's event loop, encodes the second half; the halves are joined in order, so
/// a connection's events keep their order. Other reads are encoded inline: a connection that keeps
/// up gains nothing from a second core, and the child task, its wake-up and the join cost CPU (on 2
/// cores shared with the sender, splitting every read of 128 frames or more cost about 15 % more CPU
/// a message than this, and was slower). The child is sent to the pool explicitly: it would
/// otherwise inherit the connection task's event loop and only queue behind it there.
///
/// With `-transactions` every read is encoded in order on one lane: split, a response in the second
/// half could look for its query before the other lane had held it (on the bench capture, 0.27 % of
/// the transactions came out as an unanswered query and an unmatched response).
///
/// The encoders themselves are lent by an `EncoderPool` for one read at a time: a connection
/// holds none of their scratch memory between reads.
struct EventEncodingLanes {
    /// A read of at least this many bytes of frames is split (see the type's comment).
    static let splitBytes = DnstapListener.largestRead * 3 / 4

    /// Whether a read of these frames is encoded on two lanes (without `-transactions`).
    static func splitsRead(_ frames: [ByteBuffer]) -> Bool {
        guard frames.count >= 2 else { return false }
        var bytes = 0
        for frame in frames { bytes += frame.readableBytes }
        return bytes >= splitBytes
    }

    private let inline: EncodingLane
    private let helper: EncodingLane
    private let resolutionMap: ResolutionMap?
    private let splits: Bool

    /// - Parameter pool: the encoders to borrow (one for every connection of a listener); nil: a
    ///   pool of this connection's own.
    init(
        format: InputFormat = .dnstap, record: ConnectionRecord, statistics: ForwarderStatistics, resolutionMap: ResolutionMap?,
        filter: EventFilter? = nil, transactions: TransactionTable? = nil, pool: EncoderPool? = nil, logger: Logger
    ) {
        let pool = pool ?? EncoderPool(resolutionMap: resolutionMap)
        inline = EncodingLane(
            format: format, record: record, statistics: statistics, filter: filter, transactions: transactions, pool: pool,
            logger: logger)
        helper = EncodingLane(
            format: format, record: record, statistics: statistics, filter: filter, transactions: transactions, pool: pool,
            logger: logger)
        self.resolutionMap = resolutionMap?.isEnabled == true ? resolutionMap : nil
        splits = transactions == nil
    }

    /// The events of the frames, in order. The address facts of both halves go to the resolution
    /// map afterwards in one call from this task, so the two lanes never contend for its locks.
    func encode(_ frames: [ByteBuffer]) async -> [ForwardedEvent] {
        guard splits, Self.splitsRead(frames) else {
            let (events, resolutions) = inline.encode(frames[...])
            recordResolutions(resolutions)
            return events
        }
        let middle = frames.count / 2
        return await withTaskGroup(of: (events: [ForwardedEvent], resolutions: ResolutionCollector).self) { [helper] group in
            group.addTask(executorPreference: globalConcurrentExecutor) { helper.encode(frames[..<middle]) }
            let second = inline.encode(frames[middle...])
            var (events, resolutions) = await group.next()!
            events += second.events
            resolutions.observations += second.resolutions.observations
            resolutions.ignored += second.resolutions.ignored
            recordResolutions(resolutions)
            return events
        }
    }

    /// Messages that did not decode since the last call.
    func takeFailures() -> Int { inline.takeFailures() + helper.takeFailures() }

    private func recordResolutions(_ resolutions: ResolutionCollector) {
        guard let resolutionMap, !resolutions.observations.isEmpty || resolutions.ignored > 0 else { return }
        resolutionMap.record(resolutions.observations)
        resolutionMap.noteIgnored(resolutions.ignored)
    }
}

/// Encoders lent for one read at a time, shared by the connections of a listener.
///
/// An encoder's scratch memory grows to the largest read it has encoded: the JSON of the whole read
/// (about 1.2 MB for a 256 KiB read of dnstap), its list of events, the protobuf arena. Held by each
/// connection, 200 connections that had each taken a burst of 3,000 frames kept about 2 MB apiece
/// once idle (418.8 MiB in all). Lent, the encoders in existence are those encoding at that moment
/// (a read is encoded without suspending, so at most one a thread: event loops and task pool) plus up to
/// `maxIdle` kept for the next reads, whatever the number of connections.
final class EncoderPool: Sendable {
    /// The encoders kept for reuse; more are freed when given back.
    let maxIdle: Int
    private let idle = Locked<[DnstapEventEncoder]>([])
    private let resolutionMap: ResolutionMap?

    init(resolutionMap: ResolutionMap?, maxIdle: Int = 2 * System.coreCount) {
        self.resolutionMap = resolutionMap?.isEnabled == true ? resolutionMap : nil
        self.maxIdle = max(1, maxIdle)
    }

    /// An encoder with no events, resolutions or counts pending, and no sender, filter or table set.
    func borrow() -> DnstapEventEncoder {
        if let encoder = idle.withLock({ $0.popLast() }) { return encoder }
        return DnstapEventEncoder(collectResolutions: resolutionMap != nil, recentResponses: resolutionMap?.recentResponses)
    }

    /// Takes back an encoder whose events, resolutions and counts were all taken.
    func giveBack(_ encoder: DnstapEventEncoder) {
        var encoder = encoder
        encoder.sender = nil
        encoder.filter = nil
        encoder.transactions = nil
        idle.withLock { kept in
            if kept.count < maxIdle { kept.append(encoder) }
        }
    }

    /// How many encoders wait to be lent (for tests).
    var idleCount: Int { idle.withLock { $0.count } }
}

/// One half of a connection's encoding: its decode-error log and count, and what to set on the
/// encoder it borrows for each read.
///
/// Unchecked Sendable: `EventEncodingLanes` hands each lane to exactly one task at a time (the
/// helper lane to the child task, which it joins before using the lane again), so its mutable
/// state is never touched concurrently.
final class EncodingLane: @unchecked Sendable {
    private let format: InputFormat
    private let pool: EncoderPool
    private var decodeErrorLog = RateLimitedLog(interval: .seconds(10))
    private var failures = 0
    private let filter: EventFilter?
    private let transactions: TransactionTable?
    private let record: ConnectionRecord
    private let statistics: ForwarderStatistics
    private let logger: Logger

    init(
        format: InputFormat, record: ConnectionRecord, statistics: ForwarderStatistics, filter: EventFilter?,
        transactions: TransactionTable?, pool: EncoderPool, logger: Logger
    ) {
        self.format = format
        self.transactions = transactions
        self.filter = filter?.settings.isActive == true ? filter : nil
        self.record = record
        self.statistics = statistics
        self.pool = pool
        self.logger = logger
    }

    /// The frames' events, and the address facts of their responses (empty with the map off).
    func encode(_ frames: ArraySlice<ByteBuffer>) -> (events: [ForwardedEvent], resolutions: ResolutionCollector) {
        let receivedAt = WallClock.nowMicros()
        var encoder = pool.borrow()
        defer { pool.giveBack(encoder) }
        // Known before the first frame (a TLS sender is named by its handshake) and then fixed.
        encoder.sender = record.sender
        encoder.transactions = transactions
        // The names in use, once a read (a SIGHUP may have replaced them).
        if let filter {
            let names = filter.snapshot()
            encoder.filter = (filter.settings, names.drop, names.keep)
        }
        for frame in frames {
            do {
                switch format {
                case .dnstap: try encoder.append(frame: frame, receivedAtMicros: receivedAt)
                case .powerDNS: try encoder.append(powerDNS: frame, receivedAtMicros: receivedAt)
                }
            } catch {
                failures += 1
                record.decodeErrors.add(1, ordering: .relaxed)
                statistics.protobufError()
                if let suppressed = decodeErrorLog.shouldLog() {
                    logger.warning(
                        format == .dnstap ? "dnstap frame does not decode; skipped" : "PowerDNS protobuf message does not decode; skipped",
                        metadata: ["error": "\(error)", "frame_bytes": "\(frame.readableBytes)", "suppressed_since_last": "\(suppressed)"])
                }
            }
        }
        if filter != nil { statistics.filtered(encoder.takeFiltered()) }
        if transactions != nil { statistics.transactions(encoder.takeTransactionOutcomes()) }
        return (encoder.takeEvents(), encoder.takeResolutions())
    }

    func takeFailures() -> Int {
        defer { failures = 0 }
        return failures
    }
}
