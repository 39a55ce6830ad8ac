import NIOCore
import NIOPosix

/// The bounded buffer between the connections and the output: `EventBufferStateMachine` behind a
/// lock, with the waiting tasks' continuations beside it.
///
/// When it is full, `append` suspends, so connections stop reading (backpressure): nothing is
/// dropped to make room. One consumer takes batches with `nextBatch`, and reports each written
/// batch with `complete`. Every wait ends when the buffer closes or the waiting task is cancelled.
public final class EventBuffer: Sendable {
    public let capacity: Int
    private let timerLoop: any EventLoop
    private let onPause: @Sendable () -> Void
    private let state: Locked<State>

    private struct State {
        var machine: EventBufferStateMachine<ForwardedEvent>
        var producers = Waiters<Void>()
        var consumer = Waiters<Void>()
        var consumerID: UInt64?
        var consumerTimer: Scheduled<Void>?

        /// The parked consumer, to resume (its timer cancelled).
        mutating func takeConsumer() -> CheckedContinuation<Void, Never>? {
            consumerTimer?.cancel()
            consumerTimer = nil
            machine.consumerWoke()
            guard let id = consumerID else { return nil }
            consumerID = nil
            return consumer.take(id)
        }
    }

    /// - Parameter onPause: called each time a producer finds the buffer full and waits (outside
    ///   the buffer's lock), so the pause can be counted and logged.
    public init(capacity: Int, timerLoop: any EventLoop, onPause: @escaping @Sendable () -> Void = {}) {
        self.capacity = capacity
        self.timerLoop = timerLoop
        self.onPause = onPause
        self.state = Locked(State(machine: EventBufferStateMachine(capacity: capacity)))
    }

    /// Events held, queued or being written.
    public var fill: Int { state.withLock { $0.machine.fill } }

    /// How long the oldest event still queued (not yet taken by the output) has waited; zero when
    /// none waits.
    public var oldestQueuedAge: TimeAmount {
        let oldest = state.withLock { $0.machine.queue.isEmpty ? nil : $0.machine.oldestEnqueuedAt }
        return oldest.map { NIODeadline.now() - $0 } ?? .zero
    }

    /// Whether the consumer is parked in `nextBatch` (for tests).
    var consumerIsWaiting: Bool { state.withLock { $0.consumerID != nil } }

    // MARK: - Producers

    /// Appends `events` in order, waiting for room as needed. Returns how many were *not* taken
    /// because the buffer closed (or the task was cancelled) first; the caller counts those.
    public func append(_ events: [ForwardedEvent]) async -> Int {
        var index = 0
        while index < events.count {
            let (action, consumer) = state.withLock { state -> (EventBufferStateMachine<ForwardedEvent>.AppendAction, CheckedContinuation<Void, Never>?) in
                let action = state.machine.append(events[index...], now: .now())
                guard case .appended(_, let wake, let armFlushAt) = action else { return (action, nil) }
                if wake { return (action, state.takeConsumer()) }
                // On the producer's own event loop (a connection's task runs there): no thread is
                // woken to arm it, nor, mostly, to cancel it when the batch fills first.
                if let armFlushAt { state.consumerTimer = armFlushTimer(deadline: armFlushAt, on: MultiThreadedEventLoopGroup.currentEventLoop) }
                return (action, nil)
            }
            consumer?.resume()
            guard case .appended(let taken, _, _) = action else { return events.count - index }
            index += taken
            if index == events.count { break }
            if Task.isCancelled { return events.count - index }
            onPause()
            await state.wait(in: \.producers, onCancel: ()) { state, id in
                state.machine.producerWaits(id) ? nil : ()
            }
        }
        return 0
    }

    // MARK: - Consumer

    /// The next batch: `maxCount` events as soon as there are that many, fewer once the oldest has
    /// waited `flushInterval`, whatever is left once closed; nil when closed and empty, or when the
    /// task is cancelled. With `backlogCount` (≥ `maxCount`), a backlog is taken in one go.
    public func nextBatch(maxCount: Int, backlogCount: Int? = nil, flushInterval: TimeAmount) async -> [ForwardedEvent]? {
        while !Task.isCancelled {
            let action = state.withLock {
                $0.machine.nextBatch(maxCount: maxCount, backlogCount: backlogCount ?? maxCount, flushInterval: flushInterval, now: .now())
            }
            switch action {
            case .batch(let batch): return batch
            case .finished: return nil
            case .wait(let deadline): await waitForConsumerWake(maxCount: maxCount, deadline: deadline, flushInterval: flushInterval)
            }
        }
        return nil
    }

    private func waitForConsumerWake(maxCount: Int, deadline: NIODeadline?, flushInterval: TimeAmount) async {
        await state.wait(in: \.consumer, onCancel: ()) { state, id in
            guard state.machine.consumerWaits(maxCount: maxCount, hasDeadline: deadline != nil, flushInterval: flushInterval) else {
                return ()
            }
            state.consumerID = id
            if let deadline { state.consumerTimer = armFlushTimer(deadline: deadline, on: nil) }
            return nil
        }
        // Cancelled: drop the timer and the consumer's registration.
        state.withLock { state in
            if state.consumerID != nil, Task.isCancelled { _ = state.takeConsumer() }
        }
    }

    /// The consumer's flush timer, on `loop` (the caller's own) or else the timer loop.
    private func armFlushTimer(deadline: NIODeadline, on loop: (any EventLoop)?) -> Scheduled<Void> {
        (loop ?? timerLoop).scheduleTask(deadline: deadline) { [self] in
            self.state.withLock { $0.takeConsumer() }?.resume()
        }
    }

    /// The consumer has finished with a batch of `count` events: their room is free again.
    public func complete(_ count: Int) {
        let producers = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.machine.complete(count).compactMap { state.producers.take($0) }
        }
        for producer in producers { producer.resume() }
    }

    /// No more events will be taken; the consumer drains what is held. Waiting producers return.
    public func close() {
        let (consumer, producers) = state.withLock { state -> (CheckedContinuation<Void, Never>?, [CheckedContinuation<Void, Never>]) in
            let (wake, ids) = state.machine.close()
            let consumer = wake ? state.takeConsumer() : nil
            return (consumer, ids.compactMap { state.producers.take($0) })
        }
        consumer?.resume()
        for producer in producers { producer.resume() }
    }

    /// Removes every queued event (the shutdown bound ran out); returns how many.
    public func discardQueued() -> Int {
        state.withLock { $0.machine.discardQueued() }
    }
}
