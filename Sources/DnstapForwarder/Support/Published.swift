/// A value that becomes known once (a bound address, or why binding failed), for anyone who asks
/// before or after: waiters are resumed when it is published, or when they are cancelled.
final class Published<Value: Sendable>: Sendable {
    private struct State {
        var result: Result<Value, any Error>?
        var waiters = Waiters<Result<Value, any Error>>()
    }

    private let state = Locked(State())

    /// The value, waiting for it if it is not known yet; throws the published failure, or
    /// `CancellationError` when the task is cancelled first.
    func value() async throws -> Value {
        try await state.wait(in: \.waiters, onCancel: .failure(CancellationError())) { state, _ in state.result }.get()
    }

    /// The value if it is known.
    var current: Value? { state.withLock { try? $0.result?.get() } }

    /// Whether a value (not a failure) has been published.
    var hasValue: Bool { current != nil }

    /// Publishes the first result; later ones are ignored.
    func publish(_ result: Result<Value, any Error>) {
        let waiters = state.withLock { state -> [CheckedContinuation<Result<Value, any Error>, Never>] in
            guard state.result == nil else { return [] }
            state.result = result
            return state.waiters.takeAll()
        }
        for waiter in waiters { waiter.resume(returning: result) }
    }
}
