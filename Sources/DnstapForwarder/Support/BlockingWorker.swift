import NIOCore
import NIOPosix

/// One thread for system calls that can block for ever: `write(2)` to a reader that stopped
/// reading, `fsync(2)` or `rename(2)` on a hung disk.
///
/// A caller waits for its call to finish, or stops waiting as soon as its task is cancelled (the
/// shutdown bound): the call then goes on, or stays stuck, on the worker's thread, which nobody
/// joins, so it can never hold the process's exit. Calls run one after another, in order.
final class BlockingWorker: Sendable {
    private let pool = NIOThreadPool(numberOfThreads: 1)
    private let eventLoop: any EventLoop

    init(eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()) {
        self.eventLoop = eventLoop
        pool.start()
    }

    /// Runs `body` on the worker's thread; throws `CancellationError` if the task is cancelled
    /// before it returns (the call is abandoned, not interrupted).
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try Task.checkCancellation()
        // Registered on this call's own future, which completes when the call returns: nothing
        // outlives the call but the call itself.
        let future = pool.runIfActive(eventLoop: eventLoop, body)
        let outcome = Locked<CheckedContinuation<T, any Error>?>(nil)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                outcome.withLock { $0 = continuation }
                future.whenComplete { result in outcome.withLock { $0.take() }?.resume(with: result) }
                if Task.isCancelled { outcome.withLock { $0.take() }?.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            outcome.withLock { $0.take() }?.resume(throwing: CancellationError())
        }
    }

    /// Lets the thread end once its current call returns; does not wait for it.
    func shutdown() {
        pool.shutdownGracefully { _ in }
    }
}
