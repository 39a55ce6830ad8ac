import Logging
import NIOCore

/// Counts and logs the times connections stop reading because the event buffer is full: the
/// output is slower than the resolvers. Logged at most once every 10 s, with how many pauses the
/// quiet time held back; the counter (`buffer_full_pauses`, `dnstap_buffer_full_pauses_total`)
/// has every one.
final class BackpressureReporter: Sendable {
    private let capacity: Int
    private let statistics: ForwarderStatistics
    private let logger: Logger
    private let log = Locked(RateLimitedLog(interval: .seconds(10)))

    init(capacity: Int, statistics: ForwarderStatistics, logger: Logger) {
        self.capacity = capacity
        self.statistics = statistics
        self.logger = logger
    }

    func paused() {
        statistics.bufferFullPause()
        guard let heldBack = log.withLock({ $0.shouldLog() }) else { return }
        logger.warning(
            "event buffer full: connections stop reading until the output catches up (nothing is dropped)",
            metadata: [
                "capacity": "\(capacity)",
                "pauses_total": "\(statistics.bufferFullPauses.load(ordering: .relaxed))",
                "pauses_not_logged": "\(heldBack)",
            ])
    }
}
