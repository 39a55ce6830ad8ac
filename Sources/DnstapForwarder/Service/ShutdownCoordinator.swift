import NIOCore

/// The one clock of a graceful shutdown: when it began, and the bound it must finish within.
///
/// Nothing registers on it per operation: the exporter waits once for `deadlineReached()` beside
/// its work, and cancels that work when the bound runs out (cancellation is the one mechanism
/// that ends a shutdown).
public final class ShutdownCoordinator: Sendable {
    public let timeout: Duration
    private let clock: any Clock<Duration>
    private let began = Published<NIODeadline>()

    public init(timeout: Duration, clock: any Clock<Duration> = ContinuousClock()) {
        self.timeout = timeout
        self.clock = clock
    }

    /// Marks the start of the shutdown (the first call wins).
    public func begin() {
        began.publish(.success(.now()))
    }

    /// Returns once the shutdown has begun and its bound has run out on the coordinator's clock;
    /// at once if the task is cancelled.
    public func deadlineReached() async {
        guard (try? await began.value()) != nil else { return }
        try? await clock.sleep(for: timeout)
    }

    /// Returns once the shutdown has begun, or the task is cancelled.
    public func waitUntilBegun() async {
        _ = try? await began.value()
    }

    public var isShuttingDown: Bool { began.hasValue }
    public var started: NIODeadline? { began.current }
    public var timeoutAmount: TimeAmount { TimeAmount(timeout) }
}
