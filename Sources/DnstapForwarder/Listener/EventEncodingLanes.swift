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
/// A read under load brings hundreds of frames. When it brings at least `splitThreshold`, the first
/// half is encoded in a child task while the connection's own task encodes the second half; the
/// halves are joined in order, so a connection's events keep their order. Smaller reads are
/// encoded inline (a child task would cost more than it saves).
///
/// With `-transactions` every read is encoded in order on one lane: split, a response in the second
/// half could look for its query before the other lane had held it (on the bench capture, 0.27 % of
/// the transactions came out as an unanswered query and an unmatched response).
struct EventEncodingLanes {
    static let splitThreshold = 128

    private let inline: EncodingLane
    private let helper: EncodingLane
    private let resolutionMap: ResolutionMap?
    private let splits: Bool

    init(
        format: InputFormat = .dnstap, record: ConnectionRecord, statistics: ForwarderStatistics, resolutionMap: ResolutionMap?,
        filter: EventFilter? = nil, transactions: TransactionTable? = nil, logger: Logger
    ) {
        inline = EncodingLane(
            format: format, record: record, statistics: statistics, resolutionMap: resolutionMap, filter: filter,
            transactions: transactions, logger: logger)
        helper = EncodingLane(
            format: format, record: record, statistics: statistics, resolutionMap: resolutionMap, filter: filter,
            transactions: transactions, logger: logger)
        self.resolutionMap = resolutionMap?.isEnabled == true ? resolutionMap : nil
        splits = transactions == nil
    }

    /// The events of the frames, in order. The address facts of both halves go to the resolution
    /// map afterwards in one call from this task, so the two lanes never contend for its locks.
    func encode(_ frames: [ByteBuffer]) async -> [ForwardedEvent] {
        guard splits, frames.count >= Self.splitThreshold else {
            let events = inline.encode(frames[...])
            recordResolutions(inline.takeResolutions())
            return events
        }
        let middle = frames.count / 2
        async let first = helper.encode(frames[..<middle])
        let second = inline.encode(frames[middle...])
        let events = await first + second
        var resolutions = helper.takeResolutions()
        let more = inline.takeResolutions()
        resolutions.observations += more.observations
        resolutions.ignored += more.ignored
        recordResolutions(resolutions)
        return events
    }

    /// Messages that did not decode since the last call.
    func takeFailures() -> Int { inline.takeFailures() + helper.takeFailures() }

    private func recordResolutions(_ resolutions: ResolutionCollector) {
        guard let resolutionMap else { return }
        resolutionMap.record(resolutions.observations)
        resolutionMap.noteIgnored(resolutions.ignored)
    }
}

/// An encoder with its own scratch memory and decode-error log. It keeps the address facts of the
/// responses it encoded until `takeResolutions`.
///
/// Unchecked Sendable: `EventEncodingLanes` hands each lane to exactly one task at a time (the
/// helper lane to the child task, which it joins before using the lane again), so its mutable
/// state is never touched concurrently.
final class EncodingLane: @unchecked Sendable {
    private let format: InputFormat
    private var encoder: DnstapEventEncoder
    private var decodeErrorLog = RateLimitedLog(interval: .seconds(10))
    private var failures = 0
    private let filter: EventFilter?
    private let joins: Bool
    private let record: ConnectionRecord
    private let statistics: ForwarderStatistics
    private let resolutionMap: ResolutionMap?
    private let logger: Logger

    init(
        format: InputFormat, record: ConnectionRecord, statistics: ForwarderStatistics, resolutionMap: ResolutionMap?,
        filter: EventFilter?, transactions: TransactionTable?, logger: Logger
    ) {
        self.format = format
        self.joins = transactions != nil
        self.filter = filter?.settings.isActive == true ? filter : nil
        self.record = record
        self.statistics = statistics
        self.resolutionMap = resolutionMap?.isEnabled == true ? resolutionMap : nil
        self.encoder = DnstapEventEncoder(
            collectResolutions: self.resolutionMap != nil, recentResponses: self.resolutionMap?.recentResponses)
        self.encoder.transactions = transactions
        self.logger = logger
    }

    func encode(_ frames: ArraySlice<ByteBuffer>) -> [ForwardedEvent] {
        let receivedAt = WallClock.nowMicros()
        // Known before the first frame (a TLS sender is named by its handshake) and then fixed.
        if encoder.sender == nil { encoder.sender = record.sender }
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
        if joins { statistics.transactions(encoder.takeTransactionOutcomes()) }
        return encoder.takeEvents()
    }

    func takeFailures() -> Int {
        defer { failures = 0 }
        return failures
    }

    /// The address facts gathered since the last call (empty with the map off).
    func takeResolutions() -> ResolutionCollector {
        resolutionMap == nil ? ResolutionCollector() : encoder.takeResolutions()
    }
}
