import NIOConcurrencyHelpers

/// A value behind a lock, with `Synchronization.Mutex`'s `withLock` API, on a pthread mutex
/// (NIO's `NIOLock`).
///
/// Why not `Mutex`: on Linux it takes its lock with `FUTEX_LOCK_PI`, whose hand-over happens in the
/// kernel, so ThreadSanitizer sees no synchronisation and reports every access made under the
/// lock as a race (a four-thread program that only touches its state inside `withLock` is
/// reported). With a pthread mutex the sanitizer run (`scripts/sanitizers.sh`) can tell a real race
/// from a guarded access.
public final class Locked<Value>: @unchecked Sendable {
    @usableFromInline let lock = NIOLock()
    @usableFromInline var value: Value

    public init(_ value: Value) {
        self.value = value
    }

    @inlinable
    public func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
