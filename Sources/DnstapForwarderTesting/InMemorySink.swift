import DnstapForwarder
import NIOCore
import NIOPosix

/// An `EventSink` that keeps every event in memory; tests wait on its count. It can be held shut
/// (`hold()`) to fill the buffer and watch backpressure, and made to fail.
public final class InMemorySink: EventSink {
    private struct State {
        var lines: [String] = []
        var waiters: [(ready: @Sendable ([String]) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []
        var gate: [EventLoopPromise<Void>]?
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

    public func write(_ events: [ForwardedEvent], abandon: EventLoopFuture<Void>) async throws -> SinkResult {
        let (held, started) = state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
            state.writes += 1
            defer { state.writeWaiters = [] }
            return (state.gate != nil, state.writeWaiters)
        }
        for waiter in started { waiter.resume() }
        if held {
            // Held at the gate until `release()`, or until the deadline like a blocked output.
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let opened = loop.makePromise(of: Void.self)
            state.withLock { state in
                if state.gate != nil { state.gate!.append(opened) } else { opened.succeed() }
            }
            try await opened.futureResult.get(abandoningWhen: abandon)
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
    public func hold() { state.withLock { if $0.gate == nil { $0.gate = [] } } }

    public func release() {
        let held = state.withLock { state -> [EventLoopPromise<Void>] in
            defer { state.gate = nil }
            return state.gate ?? []
        }
        for writer in held { writer.succeed() }
    }

    public func setFailing(_ failing: Bool) { state.withLock { $0.failing = failing } }
}
