import Metrics
import Synchronization

/// Why accepted events were not delivered (a fixed set: it labels counters).
public enum DropReason: String, CaseIterable, Sendable {
    /// The output failed (e.g. stdout closed).
    case outputError = "output_error"
    /// The shutdown bound was hit before these were written.
    case shutdownTimeout = "shutdown_timeout"
    /// Arrived after the buffer had closed for shutdown.
    case shutdown
    /// HEC rejected the request for good (a 4xx other than 401/403/413).
    case rejected
    /// HEC named the event as invalid (400 code 6); the rest of its batch was resent.
    case invalidEvent = "invalid_event"
    /// Larger than HEC accepts on its own (413 for a single event).
    case tooLarge = "too_large"
}

/// Why a connection was refused (a fixed set: it labels `dnstap_connections_rejected_total`).
/// The first four are decided at accept, before any TLS work; the TLS ones end a handshake.
public enum RefusalReason: String, CaseIterable, Sendable {
    /// Every slot of `-max-connections` was taken.
    case connectionCap = "connection_cap"
    /// The address already had `-max-connections-per-peer` connections.
    case perPeerCap = "per_peer_cap"
    /// The address is outside `-allow-from`.
    case notAllowed = "not_allowed"
    /// The process was out of file descriptors (the reserve one took the connection).
    case outOfDescriptors = "out_of_descriptors"
    /// The service was shutting down.
    case shuttingDown = "shutting_down"
    /// Mutual TLS: the client sent no certificate.
    case noClientCertificate = "no_client_certificate"
    /// Mutual TLS: the client's certificate is not from `-tls-client-ca-file`, or is expired or not yet valid.
    case untrustedCertificate = "unknown_ca_or_expired"
    /// Any other TLS failure: a plain Frame Streams client, garbage, no shared version or cipher,
    /// a client that closed mid-handshake.
    case tlsHandshakeFailed = "tls_handshake_failed"
}

/// The service's counters: the truth behind the periodic log line, the exit summary and (through
/// swift-metrics) any metrics backend. Lock-free; safe from every connection at once.
public final class ForwarderStatistics: Sendable {
    public let connectionsAccepted = Atomic<Int>(0)
    public let connectionsRejected = Atomic<Int>(0)
    /// Errors accepting a connection (e.g. EMFILE): the listener pauses a second and goes on.
    public let acceptErrors = Atomic<Int>(0)
    public let frames = Atomic<Int>(0)
    public let bytes = Atomic<Int>(0)
    public let oversizedFrames = Atomic<Int>(0)
    public let unknownControlFrames = Atomic<Int>(0)
    public let protobufErrors = Atomic<Int>(0)
    /// PowerDNS protobuf streams that ended inside a message.
    public let truncatedMessages = Atomic<Int>(0)
    public let eventsQueued = Atomic<Int>(0)
    public let eventsOut = Atomic<Int>(0)
    public let outputRetries = Atomic<Int>(0)
    /// Times a connection found the buffer full and stopped reading until there was room.
    public let bufferFullPauses = Atomic<Int>(0)
    private let spooledEvents = Atomic<Int>(0)
    private let spoolPendingSource = Locked<(@Sendable () -> Int)?>(nil)
    private let closed = Locked<[CloseReason: Int]>([:])
    private let refused = Locked<[RefusalReason: Int]>([:])
    private let dropped = Locked<[DropReason: Int]>([:])
    private let filteredOut = Locked<[FilterReason: Int]>([:])
    private let transactionOutcomes = Locked<[TransactionOutcome: Int]>([:])

    private let metricAccepted: Counter
    private let metricRejected: [RefusalReason: Counter]
    private let metricAcceptErrors: Counter
    private let metricFrames: Counter
    private let metricBytes: Counter
    private let metricEventsQueued: Counter
    private let metricEventsOut: Counter
    private let metricRetries: Counter
    private let metricPauses: Counter
    private let metricClosed: [CloseReason: Counter]
    private let metricDropped: [DropReason: Counter]
    private let metricFiltered: [FilterReason: Counter]
    private let metricTransactions: [TransactionOutcome: Counter]
    private let metricDecodeErrors: [String: Counter]
    private let metricTLSReloads: [Bool: Counter]
    /// TLS certificate reloads done, and those that kept the old files because a new one did not load.
    public let tlsReloads = Atomic<Int>(0)
    public let tlsReloadFailures = Atomic<Int>(0)

    /// Frames, bytes, decode errors and the last frame's time by sender, bounded.
    public let senders: SenderSeries
    /// Where outputs make series of their own (HEC's per endpoint).
    let metricsFactory: any MetricsFactory
    /// How long HEC took to answer each request (sent to the reply read), any answer or error.
    private let metricHECRequestDuration: Metrics.Timer

    /// - Parameters:
    ///   - metricsFactory: where the counters are also kept (the app's Prometheus registry).
    ///   - maxSenderSeries: `-max-sender-series`.
    public init(metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance, maxSenderSeries: Int = 1000) {
        let factory = metricsFactory
        self.metricsFactory = metricsFactory
        senders = SenderSeries(limit: maxSenderSeries, factory: factory)
        metricHECRequestDuration = Metrics.Timer(label: "dnstap_hec_request_duration_seconds", factory: factory)
        metricAccepted = Counter(label: "dnstap_connections_accepted_total", factory: factory)
        metricRejected = Dictionary(uniqueKeysWithValues: RefusalReason.allCases.map {
            ($0, Counter(label: "dnstap_connections_rejected_total", dimensions: [("reason", $0.rawValue)], factory: factory))
        })
        metricAcceptErrors = Counter(label: "dnstap_accept_errors_total", factory: factory)
        metricFrames = Counter(label: "dnstap_frames_total", factory: factory)
        metricBytes = Counter(label: "dnstap_bytes_total", factory: factory)
        metricEventsQueued = Counter(label: "dnstap_events_queued_total", factory: factory)
        metricEventsOut = Counter(label: "dnstap_events_out_total", factory: factory)
        metricRetries = Counter(label: "dnstap_output_retries_total", factory: factory)
        metricPauses = Counter(label: "dnstap_buffer_full_pauses_total", factory: factory)
        metricClosed = Dictionary(uniqueKeysWithValues: CloseReason.allCases.map {
            ($0, Counter(label: "dnstap_connections_closed_total", dimensions: [("reason", $0.rawValue)], factory: factory))
        })
        metricDropped = Dictionary(uniqueKeysWithValues: DropReason.allCases.map {
            ($0, Counter(label: "dnstap_events_dropped_total", dimensions: [("reason", $0.rawValue)], factory: factory))
        })
        metricTransactions = Dictionary(uniqueKeysWithValues: TransactionOutcome.allCases.map {
            ($0, Counter(label: "dnstap_transactions_total", dimensions: [("outcome", $0.rawValue)], factory: factory))
        })
        metricFiltered = Dictionary(uniqueKeysWithValues: FilterReason.allCases.map {
            ($0, Counter(label: "dnstap_events_filtered_total", dimensions: [("filter", $0.rawValue)], factory: factory))
        })
        metricTLSReloads = [
            false: Counter(label: "dnstap_tls_reloads_total", dimensions: [("result", "ok")], factory: factory),
            true: Counter(label: "dnstap_tls_reloads_total", dimensions: [("result", "failed")], factory: factory),
        ]
        metricDecodeErrors = Dictionary(uniqueKeysWithValues: ["protobuf", "oversized_frame", "unknown_control", "truncated_message"].map {
            ($0, Counter(label: "dnstap_decode_errors_total", dimensions: [("kind", $0)], factory: factory))
        })
    }

    func accepted() {
        connectionsAccepted.add(1, ordering: .relaxed)
        metricAccepted.increment()
    }

    func rejected(_ reason: RefusalReason) {
        connectionsRejected.add(1, ordering: .relaxed)
        refused.withLock { $0[reason, default: 0] += 1 }
        metricRejected[reason]?.increment()
    }

    func tlsReloaded(failed: Bool) {
        if failed { tlsReloadFailures.add(1, ordering: .relaxed) } else { tlsReloads.add(1, ordering: .relaxed) }
        metricTLSReloads[failed]?.increment()
    }

    func acceptError() {
        acceptErrors.add(1, ordering: .relaxed)
        metricAcceptErrors.increment()
    }

    func received(frames frameCount: Int, bytes byteCount: Int) {
        frames.add(frameCount, ordering: .relaxed)
        bytes.add(byteCount, ordering: .relaxed)
        metricFrames.increment(by: frameCount)
        metricBytes.increment(by: byteCount)
    }

    func oversized() {
        oversizedFrames.add(1, ordering: .relaxed)
        metricDecodeErrors["oversized_frame"]?.increment()
    }

    func unknownControl() {
        unknownControlFrames.add(1, ordering: .relaxed)
        metricDecodeErrors["unknown_control"]?.increment()
    }

    func truncatedMessage() {
        truncatedMessages.add(1, ordering: .relaxed)
        metricDecodeErrors["truncated_message"]?.increment()
    }

    func protobufError() {
        protobufErrors.add(1, ordering: .relaxed)
        metricDecodeErrors["protobuf"]?.increment()
    }

    func queued(_ count: Int) {
        eventsQueued.add(count, ordering: .relaxed)
        metricEventsQueued.increment(by: count)
    }

    func delivered(_ count: Int) {
        eventsOut.add(count, ordering: .relaxed)
        metricEventsOut.increment(by: count)
    }

    func spooled(_ count: Int) { spooledEvents.add(count, ordering: .relaxed) }
    public var spooledTotal: Int { spooledEvents.load(ordering: .relaxed) }
    func setSpoolPending(_ source: @escaping @Sendable () -> Int) { spoolPendingSource.withLock { $0 = source } }
    /// Events waiting in the durable spool (0 without one).
    public var spoolPending: Int { spoolPendingSource.withLock { $0 }?() ?? 0 }

    func hecRequest(took duration: Duration) {
        metricHECRequestDuration.recordNanoseconds(duration.nanosecondsClamped)
    }

    func retried() {
        outputRetries.add(1, ordering: .relaxed)
        metricRetries.increment()
    }

    func bufferFullPause() {
        bufferFullPauses.add(1, ordering: .relaxed)
        metricPauses.increment()
    }

    func dropped(_ count: Int, reason: DropReason) {
        guard count > 0 else { return }
        dropped.withLock { $0[reason, default: 0] += count }
        metricDropped[reason]?.increment(by: count)
    }

    /// Events the filters left out on purpose (not a loss: never in `droppedTotal`).
    func filtered(_ counts: [FilterReason: Int]) {
        guard !counts.isEmpty else { return }
        filteredOut.withLock { for (reason, count) in counts { $0[reason, default: 0] += count } }
        for (reason, count) in counts { metricFiltered[reason]?.increment(by: count) }
    }

    /// How the join of `-transactions` went, by outcome.
    func transactions(_ counts: [TransactionOutcome: Int]) {
        guard !counts.isEmpty else { return }
        transactionOutcomes.withLock { for (outcome, count) in counts { $0[outcome, default: 0] += count } }
        for (outcome, count) in counts { metricTransactions[outcome]?.increment(by: count) }
    }

    func closed(_ reason: CloseReason) {
        closed.withLock { $0[reason, default: 0] += 1 }
        metricClosed[reason]?.increment()
    }

    public var closedByReason: [CloseReason: Int] { closed.withLock { $0 } }
    public var rejectedByReason: [RefusalReason: Int] { refused.withLock { $0 } }
    public var droppedByReason: [DropReason: Int] { dropped.withLock { $0 } }
    public var droppedTotal: Int { droppedByReason.values.reduce(0, +) }
    public var filteredByReason: [FilterReason: Int] { filteredOut.withLock { $0 } }
    public var transactionsByOutcome: [TransactionOutcome: Int] { transactionOutcomes.withLock { $0 } }
}

extension Duration {
    /// Whole nanoseconds, clamped to Int64.
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? (seconds < 0 ? .min : .max) : scaled &+ attoseconds / 1_000_000_000
    }
}
