import NIOCore
import Synchronization

/// The one clock of a graceful shutdown: when it began and the bound it must finish within.
public final class ShutdownCoordinator: Sendable {
    public let timeout: TimeAmount
    private let startedAt = Mutex<NIODeadline?>(nil)

    public init(timeout: Duration) { self.timeout = TimeAmount(timeout) }

    /// Marks the start of the shutdown (the first call wins).
    public func begin() {
        startedAt.withLock { if $0 == nil { $0 = .now() } }
    }

    public var isShuttingDown: Bool { startedAt.withLock { $0 != nil } }
    public var started: NIODeadline? { startedAt.withLock { $0 } }
    public var deadline: NIODeadline? { started.map { $0 + timeout } }
    public var isPastDeadline: Bool { deadline.map { NIODeadline.now() >= $0 } ?? false }
}
