import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where batches of events go. `write` delivers the whole batch or throws. When `abandon`
/// completes first (the shutdown bound ran out), it stops waiting and throws
/// `SinkError.deadlineExceeded`; the batch may then be partly written.
public protocol EventSink: Sendable {
    /// How many writes may be in flight at once (1: strictly one after the other, in order).
    var maxConcurrentWrites: Int { get }
    /// The most events one write takes when a backlog has built up (a batch is the unit only
    /// while the output keeps up); nil: exactly the batch size.
    func backlogWriteLimit(batchSize: Int) -> Int?
    /// Called once before the first write (e.g. to probe the destination and report problems).
    func start() async
    /// Background work of the sink (a spool's drainer), run beside the exporter until `finish()`.
    func run() async
    /// No more writes will come: `run()` should end once its work is done.
    func finish()
    /// Delivers the events, or reports which were dropped and why; throws when none could be.
    func write(_ events: [ForwardedEvent], abandon: EventLoopFuture<Void>) async throws -> SinkResult
    func shutdown() async
    /// Whether the output takes events now (for `/readyz`), with the reason when not.
    var readiness: OutputReadiness { get }
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
    public func start() async {}
    public func run() async {}
    public func finish() {}
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
    case deadlineExceeded

    public var description: String {
        switch self {
        case .writeFailed(let code): return "write failed: \(String(cString: strerror(code))) (errno \(code))"
        case .deadlineExceeded: return "the output did not take the batch before the shutdown deadline"
        }
    }
}

extension EventLoopFuture {
    /// The value, or `SinkError.deadlineExceeded` if `abandon` completes first (the work goes on).
    public func get(abandoningWhen abandon: EventLoopFuture<Void>) async throws -> Value {
        let bounded = eventLoop.makePromise(of: Value.self)
        cascade(to: bounded)
        abandon.whenSuccess { bounded.fail(SinkError.deadlineExceeded) }
        return try await bounded.futureResult.get()
    }
}

/// JSON lines to a file descriptor (stdout by default): one event a line, each batch written with
/// as few `write(2)` calls as the kernel allows, on a thread of its own so a slow reader never
/// blocks the event loops. A batch is written whole, so no line is ever torn by this process.
public final class JSONLinesSink: EventSink {
    private let fileDescriptor: CInt
    private let threadPool: NIOThreadPool
    private let eventLoop: any EventLoop

    public init(fileDescriptor: CInt = 1, eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()) {
        self.fileDescriptor = fileDescriptor
        self.eventLoop = eventLoop
        self.threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
    }

    /// The events as lines, each optionally preceded by `prefix(event)` (a syslog header).
    /// When the reader falls behind, queued batches go out in one write of up to 2,048 events
    /// (about 1.3 MB of typical events): fewer wake-ups and system calls for the same lines.
    public func backlogWriteLimit(batchSize: Int) -> Int? { max(batchSize, 2048) }

    static func lines(_ events: [ForwardedEvent], prefixBytes: Int = 0, prefix: ((ForwardedEvent) -> String)? = nil) -> ByteBuffer {
        var lines = ByteBufferAllocator().buffer(capacity: events.reduce(0) { $0 + $1.json.readableBytes + 1 + prefixBytes })
        for event in events {
            if let prefix { lines.writeString(prefix(event)) }
            lines.writeImmutableBuffer(event.json)
            lines.writeInteger(UInt8(ascii: "\n"))
        }
        return lines
    }

    public func write(_ events: [ForwardedEvent], abandon: EventLoopFuture<Void>) async throws -> SinkResult {
        let fd = fileDescriptor
        let frozen = Self.lines(events)
        try await threadPool.runIfActive(eventLoop: eventLoop) {
            try frozen.withUnsafeReadableBytes { try Self.writeAll(fd, $0) }
        }.get(abandoningWhen: abandon)
        return SinkResult(delivered: events.count)
    }

    static func writeAll(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written >= 0 {
                offset += written
                continue
            }
            switch errno {
            case EINTR:
                continue
            case EAGAIN:
                var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&poller, 1, 1000)
            default:
                throw SinkError.writeFailed(errno: errno)
            }
        }
    }

    public func shutdown() async {
        try? await threadPool.shutdownGracefully()
    }
}
