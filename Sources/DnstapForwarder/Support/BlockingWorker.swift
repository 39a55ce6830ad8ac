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

    init() {
        pool.start()
    }

    /// Runs `body` on the worker's thread; throws `CancellationError` if the task is cancelled
    /// before it returns (the call is abandoned, not interrupted).
    ///
    /// The caller is resumed from the worker's thread itself: a call costs one hand-over to the
    /// worker and one back to the caller's executor, and no event loop is woken in between.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try Task.checkCancellation()
        // Whoever takes the continuation resumes it: the worker with the result, or cancellation.
        // Nothing is registered anywhere that outlives the call.
        let outcome = Locked<CheckedContinuation<T, any Error>?>(nil)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                outcome.withLock { $0 = continuation }
                pool.submit { state in
                    // Abandoned before it started (cancelled, or the pool is stopping): not run.
                    guard state == .active, outcome.withLock({ $0 != nil }) else {
                        outcome.withLock { $0.take() }?.resume(throwing: CancellationError())
                        return
                    }
                    let result = Result(catching: body)
                    outcome.withLock { $0.take() }?.resume(with: result)
                }
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
