import Metrics

/// The per-sender Prometheus series: frames, bytes and decode errors by `sender` (the name the
/// forwarder vouches for: the client certificate's, the TCP peer's address, the unix peer's uid),
/// and the time of its last frame, so an alert can name the resolver that went silent.
///
/// A label value is a series Prometheus keeps for ever, so they are bounded: past `limit` senders,
/// new ones share the series `sender="other"` (and one warning says so).
public final class SenderSeries: Sendable {
    public struct Series: Sendable {
        let frames: Counter
        let bytes: Counter
        let decodeErrors: Counter
        let lastFrame: Gauge
    }

    public static let overflowLabel = "other"
    public let limit: Int
    private let factory: any MetricsFactory
    private let series = Locked<[String: Series]>([:])
    private let overflowed = Locked(false)

    init(limit: Int, factory: any MetricsFactory = NOOPMetricsHandler.instance) {
        self.limit = limit
        self.factory = factory
    }

    /// The series of `sender` (made on first use), or the shared overflow series past the limit
    /// (`folded`); nil with the series turned off (`-max-sender-series 0`).
    func series(for sender: String) -> (series: Series, folded: Bool)? {
        guard limit > 0 else { return nil }
        return series.withLock { known in
            if sender != Self.overflowLabel, let existing = known[sender] { return (existing, false) }
            // The overflow series does not count against the limit.
            let named = known.count - (known[Self.overflowLabel] == nil ? 0 : 1)
            let label = named < limit && sender != Self.overflowLabel ? sender : Self.overflowLabel
            if let shared = known[label] { return (shared, true) }
            let made = Series(
                frames: Counter(label: "dnstap_sender_frames_total", dimensions: [("sender", label)], factory: factory),
                bytes: Counter(label: "dnstap_sender_bytes_total", dimensions: [("sender", label)], factory: factory),
                decodeErrors: Counter(label: "dnstap_sender_decode_errors_total", dimensions: [("sender", label)], factory: factory),
                lastFrame: Gauge(label: "dnstap_sender_last_frame_timestamp_seconds", dimensions: [("sender", label)], factory: factory))
            known[label] = made
            return (made, label == Self.overflowLabel)
        }
    }

    /// Whether senders past the limit have been folded into `other` (logged once by the caller).
    func noteOverflow() -> Bool {
        overflowed.withLock { was in
            defer { was = true }
            return !was
        }
    }

    /// How many distinct series exist (the overflow one included).
    public var count: Int { series.withLock { $0.count } }
}

extension SenderSeries.Series {
    /// One read of a connection: its frames and bytes, decode errors, and (with frames) the time.
    func record(frames: Int, bytes: Int, decodeErrors: Int, nowSeconds: Double) {
        if frames > 0 {
            self.frames.increment(by: frames)
            lastFrame.record(nowSeconds)
        }
        if bytes > 0 { self.bytes.increment(by: bytes) }
        if decodeErrors > 0 { self.decodeErrors.increment(by: decodeErrors) }
    }
}
