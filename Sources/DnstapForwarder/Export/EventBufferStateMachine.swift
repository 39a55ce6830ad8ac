import NIOCore

/// The policy of the bounded buffer between the connections and the output, with no I/O and no
/// clock of its own (every call that depends on time is given `now`).
///
/// It holds at most `capacity` elements, counting those handed out and not yet completed. A
/// producer that finds it full waits (its id is kept here, in arrival order); nothing is dropped
/// to make room. One consumer takes batches: a full batch at once, a partial one once its oldest
/// element has waited the flush interval, whatever is left once the buffer is closed.
struct EventBufferStateMachine<Element> {
    let capacity: Int
    private(set) var queue = CircularBuffer<Element>(initialCapacity: 1024)
    private(set) var inFlight = 0
    private(set) var closed = false
    private(set) var oldestEnqueuedAt: NIODeadline?
    /// Producers waiting for room, oldest first (a cancelled one stays listed until the next wake,
    /// which then finds nobody to resume under its id).
    private(set) var waitingProducers: [UInt64] = []
    /// The consumer's wait, if it waits: the queue length that wakes it.
    private(set) var consumerWakeCount: Int?
    /// The consumer waits on an empty queue: its flush interval, for the producer of the first
    /// element to arm its timer with (so the consumer is not woken just to arm it).
    private(set) var flushTimerToArm: TimeAmount?

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    var fill: Int { queue.count + inFlight }
    var room: Int { max(0, capacity - fill) }

    // MARK: - Producers

    enum AppendAction: Equatable {
        /// `taken` elements went in; wake the consumer if it was waiting for them, or else arm its
        /// flush timer for `armFlushAt` when set (the first element of an empty queue).
        case appended(taken: Int, wakeConsumer: Bool, armFlushAt: NIODeadline? = nil)
        /// Closed: nothing is taken any more.
        case closed
    }

    /// Takes as many of `elements` as there is room for.
    mutating func append(_ elements: ArraySlice<Element>, now: NIODeadline) -> AppendAction {
        guard !closed else { return .closed }
        let count = min(room, elements.count)
        guard count > 0 else { return .appended(taken: 0, wakeConsumer: false) }
        let first = queue.isEmpty
        if first { oldestEnqueuedAt = now }
        queue.append(contentsOf: elements.prefix(count))
        if takeConsumerIfDue() { return .appended(taken: count, wakeConsumer: true) }
        guard first, let interval = flushTimerToArm else { return .appended(taken: count, wakeConsumer: false) }
        flushTimerToArm = nil
        return .appended(taken: count, wakeConsumer: false, armFlushAt: now + interval)
    }

    /// A producer with elements left over: true to go on at once (room, or closed), false to wait.
    mutating func producerWaits(_ id: UInt64) -> Bool {
        guard !closed, room == 0 else { return false }
        waitingProducers.append(id)
        return true
    }

    // MARK: - Consumer

    enum BatchAction {
        case batch([Element])
        /// Closed and empty: the consumer is done.
        case finished
        /// Nothing due: wait for more elements, until the deadline if there is one.
        case wait(until: NIODeadline?)
    }

    /// The next batch: `maxCount` (up to `backlogCount` when that many are queued) as soon as
    /// there are that many, fewer once the oldest has waited `flushInterval`, the rest once closed.
    mutating func nextBatch(maxCount: Int, backlogCount: Int, flushInterval: TimeAmount, now: NIODeadline) -> BatchAction {
        let due = oldestEnqueuedAt.map { now >= $0 + flushInterval } ?? false
        if queue.count >= maxCount || (!queue.isEmpty && (closed || due)) {
            let count = min(max(maxCount, backlogCount), queue.count)
            var batch: [Element] = []
            batch.reserveCapacity(count)
            for _ in 0..<count { batch.append(queue.removeFirst()) }
            inFlight += count
            if queue.isEmpty { oldestEnqueuedAt = nil }
            return .batch(batch)
        }
        if closed { return .finished }
        return .wait(until: oldestEnqueuedAt.map { $0 + flushInterval })
    }

    /// The consumer is about to wait: false to go on at once (something changed), true to wait.
    /// `hasDeadline`: the consumer arms its own timer (something is queued); otherwise the queue is
    /// empty and the producer of the first element arms it, for `flushInterval` after that element.
    mutating func consumerWaits(maxCount: Int, hasDeadline: Bool, flushInterval: TimeAmount) -> Bool {
        if closed || queue.count >= maxCount || (!hasDeadline && !queue.isEmpty) { return false }
        // Woken by a full batch, or by its flush timer. Waking it for the first element only to arm
        // that timer cost a thread wake-up a batch (two with the timer's hop to its event loop).
        consumerWakeCount = maxCount
        flushTimerToArm = hasDeadline ? nil : flushInterval
        return true
    }

    /// The consumer's wait ended (its timer fired, or it was cancelled).
    mutating func consumerWoke() {
        consumerWakeCount = nil
        flushTimerToArm = nil
    }

    /// The consumer has finished with `count` elements: their room is free; these producers go on.
    mutating func complete(_ count: Int) -> [UInt64] {
        inFlight -= count
        precondition(inFlight >= 0, "completed more than was handed out")
        return takeProducers()
    }

    // MARK: - Closing

    /// No more elements are taken. Returns whether to wake the consumer, and the producers to wake.
    mutating func close() -> (wakeConsumer: Bool, producers: [UInt64]) {
        closed = true
        return (takeConsumerIfDue(), takeProducers())
    }

    /// Removes every queued element (the shutdown bound ran out); returns how many.
    mutating func discardQueued() -> Int {
        let count = queue.count
        queue.removeAll()
        oldestEnqueuedAt = nil
        return count
    }

    private mutating func takeConsumerIfDue() -> Bool {
        guard let wake = consumerWakeCount, closed || queue.count >= wake else { return false }
        consumerWakeCount = nil
        flushTimerToArm = nil
        return true
    }

    private mutating func takeProducers() -> [UInt64] {
        defer { waitingProducers.removeAll() }
        return waitingProducers
    }
}
