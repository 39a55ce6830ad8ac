import NIOCore

/// The bounded buffer between the connections and the output.
///
/// It holds at most `capacity` events, counting the batch being written. When it is full,
/// `append` suspends, so connections stop reading (backpressure): nothing is dropped to make room.
/// One consumer takes batches with `nextBatch`, and reports each written batch with `complete`.
public final class EventBuffer: Sendable {
    public let capacity: Int
    private let timerLoop: any EventLoop
    private let onPause: @Sendable () -> Void
    private let state: Locked<State>

    private struct State {
        var queue = CircularBuffer<ForwardedEvent>(initialCapacity: 1024)
        var inFlight = 0
        var closed = false
        var oldestEnqueued: NIODeadline?
        var producers: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextProducerID: UInt64 = 0
        var consumer: CheckedContinuation<Void, Never>?
        var consumerWakeCount = Int.max
        var consumerTimer: Scheduled<Void>?

    }

    /// - Parameter onPause: called each time a producer finds the buffer full and waits (outside
    ///   the buffer's lock), so the pause can be counted and logged.
    public init(capacity: Int, timerLoop: any EventLoop, onPause: @escaping @Sendable () -> Void = {}) {
        self.capacity = capacity
        self.timerLoop = timerLoop
        self.onPause = onPause
        self.state = Locked(State())
    }

    /// Events held, queued or being written.
    public var fill: Int { state.withLock { $0.queue.count + $0.inFlight } }

    // MARK: - Producers

    /// Appends `events` in order, waiting for room as needed. Returns how many were *not* taken
    /// because the buffer closed (or the task was cancelled) first; the caller counts those.
    public func append(_ events: [ForwardedEvent]) async -> Int {
        var index = 0
        while index < events.count {
            let (taken, wake, closed) = state.withLock { state -> (Int, CheckedContinuation<Void, Never>?, Bool) in
                guard !state.closed else { return (0, nil, true) }
                let room = capacity - state.queue.count - state.inFlight
                let count = min(room, events.count - index)
                guard count > 0 else { return (0, nil, false) }
                if state.queue.isEmpty { state.oldestEnqueued = .now() }
                state.queue.append(contentsOf: events[index..<(index + count)])
                return (count, takeConsumerIfDue(&state), false)
            }
            wake?.resume()
            index += taken
            if closed || Task.isCancelled { return events.count - index }
            if index < events.count {
                onPause()
                await waitForRoom()
            }
        }
        return 0
    }

    private func waitForRoom() async {
        let id = state.withLock { state -> UInt64 in
            state.nextProducerID += 1
            return state.nextProducerID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.closed || Task.isCancelled || state.queue.count + state.inFlight < capacity { return true }
                    state.producers[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.producers.removeValue(forKey: id) }?.resume()
        }
    }

    // MARK: - Consumer

    /// The next batch: `maxCount` events as soon as there are that many, fewer once the oldest has
    /// waited `flushInterval`, whatever is left once closed; nil when closed and empty. With
    /// `backlogCount` (≥ `maxCount`), a backlog is taken in one go up to that many events.
    public func nextBatch(maxCount: Int, backlogCount: Int? = nil, flushInterval: TimeAmount) async -> [ForwardedEvent]? {
        let takeUpTo = max(maxCount, backlogCount ?? maxCount)
        while true {
            enum Step { case batch([ForwardedEvent]), finished, wait(NIODeadline?) }
            let step = state.withLock { state -> Step in
                let due = state.oldestEnqueued.map { NIODeadline.now() >= $0 + flushInterval } ?? false
                if state.queue.count >= maxCount || (!state.queue.isEmpty && (state.closed || due)) {
                    let count = min(takeUpTo, state.queue.count)
                    var batch: [ForwardedEvent] = []
                    batch.reserveCapacity(count)
                    for _ in 0..<count { batch.append(state.queue.removeFirst()) }
                    state.inFlight += count
                    if state.queue.isEmpty { state.oldestEnqueued = nil }
                    return .batch(batch)
                }
                if state.closed { return .finished }
                return .wait(state.oldestEnqueued.map { $0 + flushInterval })
            }
            switch step {
            case .batch(let batch): return batch
            case .finished: return nil
            case .wait(let deadline): await waitForConsumerWake(maxCount: maxCount, deadline: deadline)
            }
        }
    }

    private func waitForConsumerWake(maxCount: Int, deadline: NIODeadline?) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.closed || state.queue.count >= maxCount { return true }
                if deadline == nil && !state.queue.isEmpty { return true }
                state.consumer = continuation
                // Wake for a full batch, or for the first event when nothing is queued (to start its timer).
                state.consumerWakeCount = state.queue.isEmpty ? 1 : maxCount
                if let deadline {
                    state.consumerTimer = timerLoop.scheduleTask(deadline: deadline) { [self] in
                        let waiting = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                            defer { state.consumer = nil; state.consumerTimer = nil }
                            return state.consumer
                        }
                        waiting?.resume()
                    }
                }
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    private func takeConsumerIfDue(_ state: inout State) -> CheckedContinuation<Void, Never>? {
        guard state.consumer != nil, state.closed || state.queue.count >= state.consumerWakeCount else { return nil }
        state.consumerTimer?.cancel()
        state.consumerTimer = nil
        defer { state.consumer = nil }
        return state.consumer
    }

    /// The consumer has finished with a batch of `count` events: their room is free again.
    public func complete(_ count: Int) {
        let waiting = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.inFlight -= count
            let producers = Array(state.producers.values)
            state.producers.removeAll()
            return producers
        }
        for producer in waiting { producer.resume() }
    }

    /// No more events will be taken; the consumer drains what is held. Waiting producers return.
    public func close() {
        let (consumer, producers) = state.withLock { state -> (CheckedContinuation<Void, Never>?, [CheckedContinuation<Void, Never>]) in
            state.closed = true
            state.consumerTimer?.cancel()
            state.consumerTimer = nil
            let producers = Array(state.producers.values)
            state.producers.removeAll()
            defer { state.consumer = nil }
            return (state.consumer, producers)
        }
        consumer?.resume()
        for producer in producers { producer.resume() }
    }

    /// Removes every queued event (for the shutdown bound); returns how many.
    public func discardQueued() -> Int {
        state.withLock { state in
            let count = state.queue.count
            state.queue.removeAll()
            state.oldestEnqueued = nil
            return count
        }
    }
}
