/// Continuations parked by id, for a type whose state lives behind a lock: a waiter is registered
/// under the lock and taken back out either by whoever wakes it or by its own cancellation, so each
/// continuation is resumed exactly once and a cancelled task never stays parked.
struct Waiters<Value: Sendable>: Sendable {
    private var parked: [UInt64: CheckedContinuation<Value, Never>] = [:]
    private var nextID: UInt64 = 0

    var isEmpty: Bool { parked.isEmpty }
    var count: Int { parked.count }

    mutating func makeID() -> UInt64 {
        nextID &+= 1
        return nextID
    }

    mutating func park(_ id: UInt64, _ continuation: CheckedContinuation<Value, Never>) { parked[id] = continuation }

    mutating func take(_ id: UInt64) -> CheckedContinuation<Value, Never>? { parked.removeValue(forKey: id) }

    mutating func takeAll() -> [CheckedContinuation<Value, Never>] {
        defer { parked.removeAll() }
        return Array(parked.values)
    }
}

extension Locked {
    /// Suspends until woken through `waiters` (the value it is resumed with) or cancelled
    /// (`onCancel`'s value). `decide` runs under the lock: it returns a value to go on at once,
    /// or nil to park (it has the id to record wherever the waker looks for it).
    func wait<Result: Sendable>(
        in waiters: WritableKeyPath<Value, Waiters<Result>>,
        onCancel cancelled: Result,
        _ decide: (inout Value, UInt64) -> Result?
    ) async -> Result {
        // Key paths are immutable values; this one is only read, under the lock.
        nonisolated(unsafe) let waiters = waiters
        let id = withLock { $0[keyPath: waiters].makeID() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result, Never>) in
                let now = withLock { state -> Result? in
                    if Task.isCancelled { return cancelled }
                    if let now = decide(&state, id) { return now }
                    state[keyPath: waiters].park(id, continuation)
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            withLock { $0[keyPath: waiters].take(id) }?.resume(returning: cancelled)
        }
    }
}
