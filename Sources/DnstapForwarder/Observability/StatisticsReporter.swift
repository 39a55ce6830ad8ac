import Logging
import NIOCore
import ServiceLifecycle

/// Logs the statistics every `interval`, and builds the exit summary.
public struct StatisticsReporter: Service {
    let statistics: ForwarderStatistics
    let registry: ConnectionRegistry
    let buffer: EventBuffer
    let interval: Duration?
    let logger: Logger

    public func run() async throws {
        await repeatUntilGracefulShutdown(every: interval) { logger.info("statistics", metadata: metadata()) }
    }

    /// Every counter, as log metadata.
    public func metadata() -> Logger.Metadata {
        let closed = statistics.closedByReason
        let dropped = statistics.droppedByReason
        return [
            "active": "\(registry.active)",
            "accepted": "\(statistics.connectionsAccepted.load(ordering: .relaxed))",
            "rejected": "\(statistics.connectionsRejected.load(ordering: .relaxed))",
            "rejected_by_reason": "\(Self.list(RefusalReason.allCases, statistics.rejectedByReason))",
            "accept_errors": "\(statistics.acceptErrors.load(ordering: .relaxed))",
            "closed": "\(Self.list(CloseReason.allCases, closed))",
            "frames": "\(statistics.frames.load(ordering: .relaxed))",
            "bytes": "\(statistics.bytes.load(ordering: .relaxed))",
            "decode_errors": "protobuf=\(statistics.protobufErrors.load(ordering: .relaxed)),oversized=\(statistics.oversizedFrames.load(ordering: .relaxed)),unknown_control=\(statistics.unknownControlFrames.load(ordering: .relaxed)),truncated_message=\(statistics.truncatedMessages.load(ordering: .relaxed))",
            "events_queued": "\(statistics.eventsQueued.load(ordering: .relaxed))",
            "events_out": "\(statistics.eventsOut.load(ordering: .relaxed))",
            "output_retries": "\(statistics.outputRetries.load(ordering: .relaxed))",
            "spool_pending": "\(statistics.spoolPending)",
            "dropped": "\(Self.list(DropReason.allCases, dropped))",
            "filtered": "\(Self.list(FilterReason.allCases, statistics.filteredByReason))",
            "transactions": "\(Self.list(TransactionOutcome.allCases, statistics.transactionsByOutcome))",
            "buffer_fill": "\(buffer.fill)/\(buffer.capacity)",
            "buffer_full_pauses": "\(statistics.bufferFullPauses.load(ordering: .relaxed))",
        ]
    }

    private static func list<Reason: RawRepresentable<String> & Hashable>(_ reasons: [Reason], _ counts: [Reason: Int]) -> String {
        reasons.compactMap { reason in counts[reason].map { "\(reason.rawValue)=\($0)" } }.joined(separator: ",")
    }
}

/// Runs `work` every `interval` until the service group shuts down gracefully. With no interval it
/// only waits for the shutdown (a service that returns early would end the whole group).
func repeatUntilGracefulShutdown(every interval: Duration?, _ work: () -> Void) async {
    guard let interval else {
        try? await gracefulShutdown()
        return
    }
    while !Task.isShuttingDownGracefully {
        do {
            try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        } catch {
            return
        }
        if Task.isShuttingDownGracefully { return }
        work()
    }
}
