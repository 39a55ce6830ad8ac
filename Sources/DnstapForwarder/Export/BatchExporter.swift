import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Takes batches from the buffer and writes them to the sink until the buffer closes and is
/// drained, and the sink has flushed; or until the shutdown bound runs out, which cancels that
/// work (then what is left is counted and logged as undelivered).
///
/// Listed before the listener in the service group, so it shuts down after it: it drains what
/// the connections handed over.
public final class BatchExporter: Service {
    private let buffer: EventBuffer
    private let sink: any EventSink
    private let batchSize: Int
    private let flushInterval: TimeAmount
    private let statistics: ForwarderStatistics
    private let shutdown: ShutdownCoordinator
    private let logger: Logger
    private let failureLog = Locked(RateLimitedLog(interval: .seconds(10)))
    /// Events of writes cut off by the shutdown bound.
    private let cutOff = Atomic<Int>(0)

    public init(
        buffer: EventBuffer, sink: any EventSink, batchSize: Int, flushInterval: Duration,
        statistics: ForwarderStatistics, shutdown: ShutdownCoordinator, logger: Logger
    ) {
        self.buffer = buffer
        self.sink = sink
        self.batchSize = batchSize
        self.flushInterval = TimeAmount(flushInterval)
        self.statistics = statistics
        self.shutdown = shutdown
        self.logger = logger
    }

    private enum Ending { case drained, deadline, background }

    public func run() async throws {
        let drained = await withGracefulShutdownHandler {
            await withTaskGroup(of: Ending.self) { group in
                group.addTask { await self.sink.run(); return .background }
                group.addTask { await self.exportUntilDrained(); return .drained }
                group.addTask { await self.shutdown.deadlineReached(); return .deadline }
                var drained = false
                while let ending = await group.next() {
                    if ending == .background { continue }
                    drained = ending == .drained && !Task.isCancelled
                    break
                }
                group.cancelAll()
                return drained
            }
        } onGracefulShutdown: { [buffer, shutdown] in
            shutdown.begin()
            buffer.close()
        }
        buffer.close()
        let left = buffer.discardQueued()
        statistics.dropped(left, reason: .shutdownTimeout)
        let undelivered = left + cutOff.load(ordering: .relaxed)
        if undelivered > 0 {
            logger.error(
                drained ? "output stopped with events undelivered" : "shutdown bound reached: output stopped with events undelivered",
                metadata: ["undelivered": "\(undelivered)", "shutdown_timeout": "\(shutdown.timeout)"])
        }
        // Drained early (the bound ran out while the listener was still stopping): finish only
        // when the group reaches this service, or the group counts it as a failure.
        try? await gracefulShutdown()
        await sink.shutdown()
    }

    /// Takes batches until the buffer is closed and drained, with up to `sink.maxConcurrentWrites`
    /// writes in flight (one for stdout, so lines stay in order), then flushes the sink.
    private func exportUntilDrained() async {
        let backlogCount = sink.backlogWriteLimit(batchSize: batchSize)
        if sink.maxConcurrentWrites <= 1 {
            // One write at a time (stdout, a file): written by this task rather than by a child task
            // a batch (each one a thread woken); the next batch is taken once this one is written,
            // with what came meanwhile.
            while let batch = await buffer.nextBatch(maxCount: batchSize, backlogCount: backlogCount, flushInterval: flushInterval) {
                await deliver(batch)
            }
        } else {
            let slots = WriteSlots(count: sink.maxConcurrentWrites)
            await withDiscardingTaskGroup { group in
                while let batch = await buffer.nextBatch(maxCount: batchSize, backlogCount: backlogCount, flushInterval: flushInterval) {
                    guard await slots.acquire() else {
                        undelivered(batch)
                        return
                    }
                    group.addTask {
                        await self.deliver(batch)
                        slots.release()
                    }
                }
            }
        }
        guard !Task.isCancelled else { return }
        do {
            try await sink.flush()
        } catch where !Task.isCancelled {
            logger.error("the output failed to flush at shutdown", metadata: ["error": "\(error)"])
        } catch {}
    }

    private func deliver(_ batch: [ForwardedEvent]) async {
        do {
            let result = try await sink.write(batch)
            statistics.delivered(result.delivered)
            for (reason, count) in result.dropped { statistics.dropped(count, reason: reason) }
            buffer.complete(batch.count)
        } catch where Task.isCancelled {
            undelivered(batch)
        } catch {
            statistics.dropped(batch.count, reason: .outputError)
            if let suppressed = failureLog.withLock({ $0.shouldLog() }) {
                logger.error(
                    "output failed; batch dropped",
                    metadata: ["error": "\(error)", "events": "\(batch.count)", "suppressed_since_last": "\(suppressed)"])
            }
            buffer.complete(batch.count)
        }
    }

    /// A batch the shutdown bound cut off: counted, and its room given back.
    private func undelivered(_ batch: [ForwardedEvent]) {
        statistics.dropped(batch.count, reason: .shutdownTimeout)
        cutOff.add(batch.count, ordering: .relaxed)
        buffer.complete(batch.count)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
