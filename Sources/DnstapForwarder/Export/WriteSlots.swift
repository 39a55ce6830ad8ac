/// The exporter's write slots: at most `count` writes in flight, waiters served in order.
struct WriteSlotsStateMachine {
    private(set) var free: Int
    private(set) var waiting: [UInt64] = []

    init(count: Int) {
        precondition(count > 0)
        free = count
    }

    /// True: the slot is taken. False: `id` waits for one.
    mutating func acquire(_ id: UInt64) -> Bool {
        if free > 0 {
            free -= 1
            return true
        }
        waiting.append(id)
        return false
    }

    /// A slot is given back: the oldest waiter gets it (its id), or it becomes free (nil). A
    /// waiter that was cancelled in the meantime is not there to take it: release again.
    mutating func release() -> UInt64? {
        if waiting.isEmpty {
            free += 1
            return nil
        }
        return waiting.removeFirst()
    }

    /// A waiter was cancelled before it got a slot.
    mutating func cancelled(_ id: UInt64) { waiting.removeAll { $0 == id } }
}

/// `WriteSlotsStateMachine` behind a lock, with the waiters' continuations.
final class WriteSlots: Sendable {
    private struct State {
        var machine: WriteSlotsStateMachine
        var waiters = Waiters<Bool>()
    }

    private let state: Locked<State>

    init(count: Int) { state = Locked(State(machine: WriteSlotsStateMachine(count: count))) }

    /// Waits for a slot: true once it is held, false if the task was cancelled first.
    func acquire() async -> Bool {
        let granted = await state.wait(in: \.waiters, onCancel: false) { state, id in
            state.machine.acquire(id) ? true : nil
        }
        return granted
    }

    func release() {
        let next = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            while let id = state.machine.release() {
                if let waiter = state.waiters.take(id) { return waiter }
            }
            return nil
        }
        next?.resume(returning: true)
    }
}
