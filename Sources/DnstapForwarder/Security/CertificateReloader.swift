import Logging
import NIOCore
import UnixSignals

/// Keeps the TCP listener's TLS files current: looks at them every `interval` and reloads them
/// when they changed, and reloads them on SIGHUP. SIGHUP is trapped from `init` on, so a SIGHUP
/// once the service says it is listening reloads, and never ends the process.
final class CertificateReloader: Sendable {
    private let tls: TLSCredentials
    private let signals: UnixSignalsSequence
    private let interval: TimeAmount
    private let statistics: ForwarderStatistics
    private let logger: Logger

    init(tls: TLSCredentials, interval: TimeAmount, statistics: ForwarderStatistics, logger: Logger) async {
        self.tls = tls
        self.signals = await UnixSignalsSequence(trapping: .sighup)
        self.interval = interval
        self.statistics = statistics
        self.logger = logger
    }

    /// Runs until `stop` returns (the shutdown began) or the task is cancelled.
    func run(until stop: @escaping @Sendable () async -> Void) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in self.signals { self.reload(force: true, cause: "SIGHUP") }
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .nanoseconds(self.interval.nanoseconds))
                    if Task.isCancelled { return }
                    self.reload(force: false, cause: "files changed")
                }
            }
            await stop()
            group.cancelAll()
        }
    }

    func reload(force: Bool, cause: String) {
        switch tls.reload(force: force) {
        case .unchanged:
            break
        case .reloaded:
            statistics.tlsReloaded(failed: false)
            logger.info(
                "TLS certificates reloaded; new connections use them",
                metadata: ["cause": "\(cause)", "certificate": "\(tls.current.name)",
                           "valid_until": "\(RFC3339.string(micros: tls.current.notValidAfter * 1_000_000))"])
        case .failed(let error):
            statistics.tlsReloaded(failed: true)
            logger.error(
                "TLS certificates not reloaded: a new file does not load; the old ones stay in use",
                metadata: ["cause": "\(cause)", "error": "\(error)"])
        }
    }
}
