#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where batches of events go: HEC, stdout, a file, or the durable spool in front of HEC.
///
/// Every method that waits ends when its task is cancelled: that is how the shutdown bound ends
/// them (the exporter cancels its work when the bound runs out). A write cancelled part-way may
/// have been partly delivered; the exporter counts its batch as undelivered.
public protocol EventSink: Sendable {
    /// How many writes may be in flight at once (1: strictly one after the other, in order).
    var maxConcurrentWrites: Int { get }
    /// The most events one write takes when a backlog has built up (a batch is the unit only
    /// while the output keeps up); nil: exactly the batch size.
    func backlogWriteLimit(batchSize: Int) -> Int?
    /// The sink's own background work (a health probe at start, a spool's drainer), run beside the
    /// exporter for the whole run and cancelled once the exporter is done.
    func run() async
    /// Delivers the events, or reports which were dropped and why; throws when none could be.
    func write(_ events: [ForwardedEvent]) async throws -> SinkResult
    /// No more writes will come: deliver what was accepted (a spool drains, a file is synced).
    func flush() async throws
    /// Releases what the sink holds, without waiting on anything that may be stuck.
    func shutdown() async
    /// Whether the output takes events now (for `/readyz`), with the reason when not.
    var readiness: OutputReadiness { get }
    /// HEC's circuit breaker is open (probing its health endpoint instead of sending).
    var isCircuitOpen: Bool { get }
    /// The durable spool's bytes and its bound (nil: no spool).
    var spoolUsage: (bytes: Int, capacity: Int)? { get }
}

/// Whether an output is taking events.
public enum OutputReadiness: Sendable, Equatable {
    case ready
    case notReady(String)
}

extension EventSink {
    public var maxConcurrentWrites: Int { 1 }
    public func backlogWriteLimit(batchSize: Int) -> Int? { nil }
    public var readiness: OutputReadiness { .ready }
    public var isCircuitOpen: Bool { false }
    public var spoolUsage: (bytes: Int, capacity: Int)? { nil }
    public func run() async {}
    public func flush() async throws {}
}

/// What became of a batch: delivered, taken into a durable spool (`accepted`), or dropped by reason.
public struct SinkResult: Sendable, Equatable {
    public var delivered = 0
    public var accepted = 0
    public var dropped: [DropReason: Int] = [:]

    public init(delivered: Int = 0, accepted: Int = 0) {
        self.delivered = delivered
        self.accepted = accepted
    }

    public mutating func drop(_ count: Int, _ reason: DropReason) { dropped[reason, default: 0] += count }
}

public enum SinkError: Error, CustomStringConvertible {
    case writeFailed(errno: Int32)

    public var description: String {
        switch self {
        case .writeFailed(let code): return "write failed: \(String(cString: strerror(code))) (errno \(code))"
        }
    }
}
