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
    private let logger: Logger

    init(spool: Spool, downstream: any EventSink, statistics: ForwarderStatistics, logger: Logger) {
        self.spool = spool
        self.downstream = downstream
        self.statistics = statistics
        self.logger = logger
        statistics.setSpoolPending { [spool] in spool.pendingEvents }
    }

    /// The spool takes events while HEC is away, so only a full spool makes this output not ready.
    public var readiness: OutputReadiness {
        if spool.isFull { return .notReady("the durable buffer is full (\(spool.pendingEvents) events); HEC: \(downstream.readiness)") }
        return .ready
    }

    public var isCircuitOpen: Bool { downstream.isCircuitOpen }
    public var spoolUsage: (bytes: Int, capacity: Int)? { (spool.bytes, spool.maxBytes) }

    public func write(_ events: [ForwardedEvent]) async throws -> SinkResult {
        try await spool.append(events)
        statistics.spooled(events.count)
        logger.debug("batch written to the spool", metadata: ["events": "\(events.count)", "spooled_total": "\(statistics.spooledTotal)"])
        return SinkResult(delivered: 0, accepted: events.count)
    }

    /// HEC's own work (its probe), the drainer, and the periodic sync, until cancelled.
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.downstream.run() }
            group.addTask { await self.drain() }
            if spool.fsyncInterval > .zero {
                group.addTask { await self.syncPeriodically() }
            }
        }
    }

    /// Sends spooled batches downstream until the spool is closed and empty, or the task is
    /// cancelled (the shutdown bound: what is left stays on disk for the next start).
    private func drain() async {
        while let entry = await spool.next() {
            do {
                let events = try await spool.read(entry)
                let result = try await downstream.write(events)
                statistics.delivered(result.delivered)
                for (reason, count) in result.dropped { statistics.dropped(count, reason: reason) }
            } catch where Task.isCancelled {
                spool.giveBack()
                logger.warning(
                    "shutdown bound reached: undelivered events stay in the spool for the next start",
                    metadata: ["events": "\(spool.pendingEvents)", "directory": "\(spool.directory)"])
                return
            } catch {
                statistics.dropped(entry.count, reason: .outputError)
                logger.error("output failed; spooled batch dropped", metadata: ["error": "\(error)", "events": "\(entry.count)"])
            }
            do {
                try await spool.commit(entry.seq)
            } catch {
                // Cancelled while checkpointing: the batch may be sent again at the next start.
                return
            }
        }
    }

    private func syncPeriodically() async {
        while (try? await Task.sleep(for: spool.fsyncInterval)) != nil {
            do {
                try await spool.sync()
            } catch where !Task.isCancelled {
                logger.error("spool: sync failed", metadata: ["error": "\(error)"])
            } catch {
                return
            }
        }
    }

    /// Every spooled batch delivered (the spool synced), or cancelled by the shutdown bound.
    public func flush() async throws {
        spool.close()
        await spool.waitUntilDrained()
        try Task.checkCancellation()
        try await spool.sync()
    }

    public func shutdown() async {
        spool.shutdown()
        await downstream.shutdown()
    }
}
