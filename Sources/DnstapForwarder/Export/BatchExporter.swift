import Logging
import NIOCore
import ServiceLifecycle

/// Takes batches from the buffer and writes them to the sink, until the buffer closes and is
/// drained, or the shutdown bound runs out (then what is left is counted and logged as dropped).
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

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.sink.run() }
                await exportUntilDrained()
                sink.finish()
            }
        } onGracefulShutdown: { [buffer] in
            buffer.close()
        }
        // Drained early (the shutdown bound ran out while the listener was still stopping):
        // finish only when the group reaches this service, or the group counts it as a failure.
        try? await gracefulShutdown()
        await sink.shutdown()
    }

    /// Takes batches until the buffer is closed and drained, with up to `sink.maxConcurrentWrites`
    /// writes in flight (one for stdout, so lines stay in order).
    private func exportUntilDrained() async {
        await sink.start()
        await withDiscardingTaskGroup { group in
            let slots = WriteSlots(count: max(1, sink.maxConcurrentWrites))
            let backlogCount = sink.backlogWriteLimit(batchSize: batchSize)
            while let batch = await buffer.nextBatch(maxCount: batchSize, backlogCount: backlogCount, flushInterval: flushInterval) {
                if shutdown.isPastDeadline {
                    statistics.dropped(batch.count, reason: .shutdownTimeout)
                    buffer.complete(batch.count)
                    let left = buffer.discardQueued()
                    statistics.dropped(left, reason: .shutdownTimeout)
                    logger.error(
                        "shutdown timeout reached with events undelivered",
                        metadata: ["undelivered": "\(batch.count + left)"])
                    buffer.close()
                    continue
                }
                await slots.acquire()
                group.addTask {
                    await self.deliver(batch)
                    slots.release()
                }
            }
        }
    }

    private func deliver(_ batch: [ForwardedEvent]) async {
        do {
            // No write may outlast the shutdown bound, even one that began before the shutdown.
            let result = try await sink.write(batch, abandon: shutdown.deadlinePassed)
            statistics.delivered(result.delivered)
            for (reason, count) in result.dropped { statistics.dropped(count, reason: reason) }
        } catch SinkError.deadlineExceeded {
            statistics.dropped(batch.count, reason: .shutdownTimeout)
            logger.error("output blocked past the shutdown deadline; batch undelivered", metadata: ["events": "\(batch.count)"])
        } catch {
            statistics.dropped(batch.count, reason: .outputError)
            if let suppressed = failureLog.withLock({ $0.shouldLog() }) {
                logger.error(
                    "output failed; batch dropped",
                    metadata: ["error": "\(error)", "events": "\(batch.count)", "suppressed_since_last": "\(suppressed)"])
            }
        }
        buffer.complete(batch.count)
    }
}

/// A counting semaphore for the writes in flight (waiters resume in order).
final class WriteSlots: Sendable {
    private let state: Locked<(free: Int, waiters: [CheckedContinuation<Void, Never>])>

    init(count: Int) { state = Locked((count, [])) }

    func acquire() async {
        await withCheckedContinuation { continuation in
            let granted = state.withLock { state -> Bool in
                if state.free > 0 {
                    state.free -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.free += 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
