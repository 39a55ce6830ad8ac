import NIOCore
import Testing

@testable import DnstapForwarder

/// The buffer's and the write slots' policies, with a manual clock (deadlines given as values).
@Suite("event buffer and write slots state machines")
struct EventBufferStateMachineTests {
    typealias Machine = EventBufferStateMachine<Int>
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func batch(_ action: Machine.BatchAction) -> [Int]? {
        if case .batch(let elements) = action { return elements }
        return nil
    }

    @Test("takes what fits, counting what is in flight; a producer with leftovers waits, then goes on after a completion")
    func capacity() {
        var machine = Machine(capacity: 10)
        #expect(machine.append([0, 1, 2, 3, 4, 5][...], now: Self.t0) == .appended(taken: 6, wakeConsumer: false))
        #expect(batch(machine.nextBatch(maxCount: 4, backlogCount: 4, flushInterval: .seconds(1), now: Self.t0)) == [0, 1, 2, 3])
        #expect(machine.fill == 6, "the batch in flight still takes room")
        #expect(machine.append(Array(6..<12)[...], now: Self.t0) == .appended(taken: 4, wakeConsumer: false))
        #expect(machine.room == 0)
        let waitsFull = machine.producerWaits(7)
        #expect(waitsFull, "full: the producer waits")
        let waitsToo = machine.producerWaits(8)
        #expect(waitsToo)
        #expect(machine.complete(4) == [7, 8], "a completion wakes every waiting producer, oldest first")
        #expect(machine.room == 4)
        let waitsWithRoom = machine.producerWaits(9)
        #expect(!waitsWithRoom, "room again: no wait")
    }

    @Test("a partial batch is due only once its oldest element has waited the flush interval")
    func flushInterval() {
        var machine = Machine(capacity: 100)
        _ = machine.append([1, 2][...], now: Self.t0)
        let later = Self.t0 + .milliseconds(500)
        guard case .wait(let until) = machine.nextBatch(maxCount: 10, backlogCount: 10, flushInterval: .seconds(1), now: later) else {
            Issue.record("expected a wait")
            return
        }
        #expect(until == Self.t0 + .seconds(1), "the deadline is the oldest element's")
        _ = machine.append([3][...], now: later)
        #expect(batch(machine.nextBatch(maxCount: 10, backlogCount: 10, flushInterval: .seconds(1), now: Self.t0 + .seconds(1))) == [1, 2, 3])
        guard case .wait(nil) = machine.nextBatch(maxCount: 10, backlogCount: 10, flushInterval: .seconds(1), now: Self.t0 + .seconds(1)) else {
            Issue.record("empty: a wait without deadline")
            return
        }
    }

    @Test("a backlog goes in one batch up to the backlog count")
    func backlog() {
        var machine = Machine(capacity: 100)
        _ = machine.append(Array(0..<25)[...], now: Self.t0)
        #expect(batch(machine.nextBatch(maxCount: 5, backlogCount: 20, flushInterval: .seconds(1), now: Self.t0)) == Array(0..<20))
        #expect(batch(machine.nextBatch(maxCount: 5, backlogCount: 20, flushInterval: .seconds(1), now: Self.t0)) == Array(20..<25))
    }

    @Test("an idle consumer sleeps on through the first element, whose producer arms its flush timer; a full batch wakes it")
    func consumerWake() {
        var machine = Machine(capacity: 100)
        let waitsIdle = machine.consumerWaits(maxCount: 3, hasDeadline: false, flushInterval: .seconds(1))
        #expect(waitsIdle)
        #expect(
            machine.append([1][...], now: Self.t0) == .appended(taken: 1, wakeConsumer: false, armFlushAt: Self.t0 + .seconds(1)),
            "the first element arms the flush timer, a second after it; the consumer is not woken")
        #expect(machine.append([2][...], now: Self.t0 + .milliseconds(5)) == .appended(taken: 1, wakeConsumer: false), "armed once")
        #expect(machine.append([3][...], now: Self.t0) == .appended(taken: 1, wakeConsumer: true), "a full batch")
        let waitsWithFullBatch = machine.consumerWaits(maxCount: 3, hasDeadline: true, flushInterval: .seconds(1))
        #expect(!waitsWithFullBatch, "a full batch is there: no wait")
    }

    @Test("a first append that fills a batch wakes the consumer and arms nothing; a consumer with a deadline arms its own timer")
    func consumerWakeAtOnceOrOwnTimer() {
        var machine = Machine(capacity: 100)
        let waitsIdle = machine.consumerWaits(maxCount: 3, hasDeadline: false, flushInterval: .seconds(1))
        #expect(waitsIdle)
        #expect(machine.append([1, 2, 3, 4][...], now: Self.t0) == .appended(taken: 4, wakeConsumer: true))
        machine.consumerWoke()
        // Three go out, one is left: the consumer waits with that one's deadline, its own timer.
        #expect(batch(machine.nextBatch(maxCount: 3, backlogCount: 3, flushInterval: .seconds(1), now: Self.t0)) == [1, 2, 3])
        let waitsPartial = machine.consumerWaits(maxCount: 3, hasDeadline: true, flushInterval: .seconds(1))
        #expect(waitsPartial)
        #expect(machine.append([5][...], now: Self.t0) == .appended(taken: 1, wakeConsumer: false), "not the first element: nothing to arm")
        // Its timer fired: a wait on an empty queue later is armed again by the next first element.
        machine.consumerWoke()
        #expect(batch(machine.nextBatch(maxCount: 3, backlogCount: 3, flushInterval: .seconds(1), now: Self.t0 + .seconds(1))) == [4, 5])
        let waitsAgain = machine.consumerWaits(maxCount: 3, hasDeadline: false, flushInterval: .seconds(2))
        #expect(waitsAgain)
        #expect(machine.append([6][...], now: Self.t0 + .seconds(3)) == .appended(taken: 1, wakeConsumer: false, armFlushAt: Self.t0 + .seconds(5)))
    }

    @Test("closing wakes a consumer waiting on an empty queue and leaves no timer to arm")
    func closingIdleConsumer() {
        var machine = Machine(capacity: 10)
        let waitsIdle = machine.consumerWaits(maxCount: 3, hasDeadline: false, flushInterval: .seconds(1))
        #expect(waitsIdle)
        let (wake, _) = machine.close()
        #expect(wake)
        #expect(machine.flushTimerToArm == nil)
    }

    @Test("closing wakes everyone; the rest drains, then the consumer is finished; later appends are refused")
    func closing() {
        var machine = Machine(capacity: 2)
        _ = machine.append([1, 2][...], now: Self.t0)
        let producerWaits = machine.producerWaits(5)
        #expect(producerWaits)
        let consumerWaits = machine.consumerWaits(maxCount: 10, hasDeadline: true, flushInterval: .hours(1))
        #expect(consumerWaits)
        let (wake, producers) = machine.close()
        #expect(wake && producers == [5])
        #expect(machine.append([3][...], now: Self.t0) == .closed)
        let waitsWhenClosed = machine.producerWaits(6)
        #expect(!waitsWhenClosed, "closed: producers never wait")
        #expect(batch(machine.nextBatch(maxCount: 10, backlogCount: 10, flushInterval: .hours(1), now: Self.t0)) == [1, 2])
        guard case .finished = machine.nextBatch(maxCount: 10, backlogCount: 10, flushInterval: .hours(1), now: Self.t0) else {
            Issue.record("closed and empty: finished")
            return
        }
    }

    @Test("discarding at the shutdown bound empties the queue and reports how many")
    func discard() {
        var machine = Machine(capacity: 10)
        _ = machine.append(Array(0..<7)[...], now: Self.t0)
        _ = machine.nextBatch(maxCount: 3, backlogCount: 3, flushInterval: .seconds(1), now: Self.t0)
        #expect(machine.discardQueued() == 4)
        #expect(machine.fill == 3, "in flight is the exporter's to count")
    }

    @Test("write slots: at most N at once, waiters served in order, a cancelled waiter skipped")
    func writeSlots() {
        var slots = WriteSlotsStateMachine(count: 2)
        let bothTaken = slots.acquire(1) && slots.acquire(2)
        #expect(bothTaken)
        #expect(!slots.acquire(3) && !slots.acquire(4) && !slots.acquire(5))
        slots.cancelled(4)
        #expect(slots.release() == 3, "the oldest waiter gets the slot")
        #expect(slots.release() == 5, "the cancelled one is skipped")
        #expect(slots.release() == nil && slots.free == 1)
    }
}
