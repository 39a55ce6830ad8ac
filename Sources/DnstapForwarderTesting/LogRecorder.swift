import DnstapForwarder
import Logging

/// Keeps the log lines of a test's service, so the test can wait for one ("HEC request failed")
/// instead of sleeping. Use `recorder.logger(level:)` as the service's logger.
public final class LogRecorder: Sendable {
    private struct State {
        var lines: [String] = []
        var waiters: [(String, CheckedContinuation<Void, Never>)] = []
    }

    private let state = Locked(State())

    public init() {}

    public var lines: [String] { state.withLock { $0.lines } }

    public func logger(label: String = "test", level: Logger.Level = .info) -> Logger {
        var logger = Logger(label: label) { _ in Handler(recorder: self) }
        logger.logLevel = level
        return logger
    }

    func record(_ line: String) {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.lines.append(line)
            let ready = state.waiters.filter { line.contains($0.0) }.map(\.1)
            state.waiters.removeAll { line.contains($0.0) }
            return ready
        }
        for waiter in ready { waiter.resume() }
    }

    /// Returns once a line containing `text` has been logged.
    public func waitFor(_ text: String) async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.lines.contains(where: { $0.contains(text) }) { return true }
                state.waiters.append((text, continuation))
                return false
            }
            if done { continuation.resume() }
        }
    }

    struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            recorder.record("\(event.level) \(event.message) \(fields)")
        }
    }
}
