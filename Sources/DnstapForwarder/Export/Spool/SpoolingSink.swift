import Logging
import NIOCore

/// The durable buffer in front of another sink (HEC): a batch is accepted once it is in the
/// on-disk spool, and a drainer sends spooled batches downstream in order, checkpointing each one
/// delivered. A long outage fills the spool instead of memory; a restart, even after `kill -9`,
/// sends what was not yet delivered (at most the batch in flight goes twice).
public final class SpoolingSink: EventSink {
    let spool: Spool
    private let downstream: any EventSink
    private let statistics: ForwarderStatistics
    private let shutdown: ShutdownCoordinator
    private let logger: Logger

    init(spool: Spool, downstream: any EventSink, statistics: ForwarderStatistics, shutdown: ShutdownCoordinator, logger: Logger) {
        self.spool = spool
        self.downstream = downstream
        self.statistics = statistics
        self.shutdown = shutdown
        self.logger = logger
        statistics.setSpoolPending { [spool] in spool.pendingEvents }
    }

    public func start() async { await downstream.start() }

    /// The spool takes events while HEC is away, so only a full spool makes this output not ready.
    public var readiness: OutputReadiness {
        if spool.isFull { return .notReady("the durable buffer is full (\(spool.pendingEvents) events); HEC: \(downstream.readiness)") }
        return .ready
    }

    public func write(_ events: [ForwardedEvent], abandon: EventLoopFuture<Void>) async throws -> SinkResult {
        try await race(abandon) { try await self.spool.append(events) }
        statistics.spooled(events.count)
        logger.debug("batch written to the spool", metadata: ["events": "\(events.count)", "spooled_total": "\(statistics.spooledTotal)"])
        return SinkResult(delivered: 0, accepted: events.count)
    }

    /// The drainer: sends spooled batches downstream until the spool is closed and empty, or the
    /// shutdown bound runs out (what is left stays on disk for the next start).
    public func run() async {
        while let (seq, events) = await spool.next() {
            do {
                let result = try await downstream.write(events, abandon: shutdown.deadlinePassed)
                statistics.delivered(result.delivered)
                for (reason, count) in result.dropped { statistics.dropped(count, reason: reason) }
                spool.commit(seq)
            } catch SinkError.deadlineExceeded {
                spool.giveBack()
                logger.warning(
                    "shutdown bound reached: undelivered events stay in the spool for the next start",
                    metadata: ["events": "\(spool.pendingEvents)", "directory": "\(spool.directory)"])
                return
            } catch {
                statistics.dropped(events.count, reason: .outputError)
                logger.error("output failed; spooled batch dropped", metadata: ["error": "\(error)", "events": "\(events.count)"])
                spool.commit(seq)
            }
        }
    }

    public func finish() { spool.close() }

    public func shutdown() async { await downstream.shutdown() }
}
