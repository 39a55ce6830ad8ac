import DnstapForwarder
import NIOCore
import NIOPosix

/// An `EventSink` that keeps every event in memory; tests wait on its count. It can be held shut
/// (`hold()`) to fill the buffer and watch backpressure, and made to fail.
public final class InMemorySink: EventSink {
    private struct State {
        var lines: [String] = []
        var waiters: [(ready: @Sendable ([String]) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []
        /// Writes held until `release()`, by id.
        var gate: [Int: CheckedContinuation<Bool, Never>]?
        var failing = false
        var writes = 0
        var writeWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Locked(State())

    public init() {}

    public var lines: [String] { state.withLock { $0.lines } }
    public var count: Int { state.withLock { $0.lines.count } }
    /// How many `write` calls have started (including ones held at the gate).
    public var writes: Int { state.withLock { $0.writes } }

    public func write(_ events: [ForwardedEvent]) async throws -> SinkResult {
        let (held, started, id) = state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>], Int) in
            state.writes += 1
            defer { state.writeWaiters = [] }
            return (state.gate != nil, state.writeWaiters, state.writes)
        }
        for waiter in started { waiter.resume() }
        if held {
            // Held at the gate until `release()`, like an output that takes nothing, or until the
            // task is cancelled (the shutdown bound), as every sink's write must end then.
            let opened = await withTaskCancellationHandler {
                await withCheckedContinuation { (opened: CheckedContinuation<Bool, Never>) in
                    let now = state.withLock { state -> Bool? in
                        if Task.isCancelled { return false }
                        guard state.gate != nil else { return true }
                        state.gate![id] = opened
                        return nil
                    }
                    if let now { opened.resume(returning: now) }
                }
            } onCancel: {
                state.withLock { $0.gate?.removeValue(forKey: id) }?.resume(returning: false)
            }
            if !opened { throw CancellationError() }
        }
        let ready = try state.withLock { state -> [CheckedContinuation<Void, Never>] in
            if state.failing { throw SinkError.writeFailed(errno: 5) }
            state.lines += events.map { String(buffer: $0.json) }
            let lines = state.lines
            let ready = state.waiters.filter { $0.ready(lines) }.map(\.continuation)
            state.waiters.removeAll { $0.ready(lines) }
            return ready
        }
        for waiter in ready { waiter.resume() }
        return SinkResult(delivered: events.count)
    }

    public func shutdown() async {}

    /// Returns once a `write` has started (it may be held at the gate).
    public func waitUntilWriteStarted() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.writes > 0 { return true }
                state.writeWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Returns once at least `count` events have been written.
    public func waitForCount(_ count: Int) async {
        await waitUntil { $0.count >= count }
    }

    /// Returns once the lines written so far satisfy `ready`.
    public func waitUntil(_ ready: @escaping @Sendable ([String]) -> Bool) async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if ready(state.lines) { return true }
                state.waiters.append((ready, continuation))
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Holds every write until `release()`.
    public func hold() { state.withLock { if $0.gate == nil { $0.gate = [:] } } }

    public func release() {
        let held = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            defer { state.gate = nil }
            return Array((state.gate ?? [:]).values)
        }
        for writer in held { writer.resume(returning: true) }
    }

    public func setFailing(_ failing: Bool) { state.withLock { $0.failing = failing } }
}
