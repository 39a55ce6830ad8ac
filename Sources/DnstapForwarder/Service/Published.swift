
/// A value that becomes known once (a bound address, or why binding failed), for anyone who asks
/// before or after: waiters are resumed when it is published.
final class Published<Value: Sendable>: Sendable {
    private struct State {
        var result: Result<Value, any Error>?
        var waiters: [CheckedContinuation<Value, any Error>] = []
    }

    private let state = Locked(State())

    /// The value, waiting for it if it is not known yet; throws the published failure.
    func value() async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            let known = state.withLock { state -> Result<Value, any Error>? in
                if state.result == nil { state.waiters.append(continuation) }
                return state.result
            }
            if let known { continuation.resume(with: known) }
        }
    }

    /// Whether a value (not a failure) has been published.
    var hasValue: Bool { state.withLock { if case .success = $0.result { true } else { false } } }

    /// Publishes the first result; later ones are ignored.
    func publish(_ result: Result<Value, any Error>) {
        let waiters = state.withLock { state -> [CheckedContinuation<Value, any Error>] in
            guard state.result == nil else { return [] }
            state.result = result
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }
}
