import NIOCore
import NIOPosix

/// The one clock of a graceful shutdown: when it began and the bound it must finish within.
///
/// `deadlinePassed` completes when the bound runs out, so work that began before the shutdown
/// (a write blocked on a stalled output) can be abandoned at the deadline too.
public final class ShutdownCoordinator: Sendable {
    public let timeout: TimeAmount
    private let startedAt = Locked<NIODeadline?>(nil)
    private let eventLoop: any EventLoop
    private let deadlineReached: EventLoopPromise<Void>

    public init(timeout: Duration, eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()) {
        self.timeout = TimeAmount(timeout)
        self.eventLoop = eventLoop
        self.deadlineReached = eventLoop.makePromise(of: Void.self)
    }

    deinit { deadlineReached.succeed() }

    /// Marks the start of the shutdown (the first call wins) and arms the deadline.
    public func begin() {
        let first = startedAt.withLock { started -> Bool in
            guard started == nil else { return false }
            started = .now()
            return true
        }
        guard first else { return }
        eventLoop.scheduleTask(in: timeout) { [deadlineReached] in deadlineReached.succeed() }
    }

    /// Completes when the shutdown bound has run out (never, while the service runs).
    public var deadlinePassed: EventLoopFuture<Void> { deadlineReached.futureResult }

    public var isShuttingDown: Bool { startedAt.withLock { $0 != nil } }
    public var started: NIODeadline? { startedAt.withLock { $0 } }
    public var deadline: NIODeadline? { started.map { $0 + timeout } }
    public var isPastDeadline: Bool { deadline.map { NIODeadline.now() >= $0 } ?? false }
}
