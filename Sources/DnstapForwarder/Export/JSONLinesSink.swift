import NIOCore
import NIOPosix

/// JSON lines to a file descriptor (stdout by default): one event a line, each batch written with
/// as few `write(2)` calls as the kernel allows, on a worker thread so a slow reader never blocks
/// the event loops, and a reader that stopped reading never holds the exit (`BlockingWorker`).
/// A batch is written whole, so no line is ever torn by this process.
public final class JSONLinesSink: EventSink {
    private let fileDescriptor: CInt
    private let worker: BlockingWorker
    private let scratch = LineScratch()

    public init(fileDescriptor: CInt = 1, eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()) {
        self.fileDescriptor = fileDescriptor
        self.worker = BlockingWorker(eventLoop: eventLoop)
        Self.widenPipe(fileDescriptor)
    }

    /// A pipe's buffer: 1 MiB instead of Linux's 64 KiB default, when the output is a pipe (a
    /// container runtime's log collector, a shell pipeline) and the system allows it.
    static let pipeBufferBytes: CInt = 1 << 20

    /// Gives a pipe a buffer of `pipeBufferBytes`: a write of a backlog (up to 2,048 events, about
    /// 1.3 MB) then blocks once or not at all instead of about twenty times, each a wake-up of this
    /// thread and of the reader. Not a pipe, or not allowed (over /proc/sys/fs/pipe-max-size for an
    /// unprivileged process): left as it is.
    static func widenPipe(_ fd: CInt) {
        #if os(Linux)
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFIFO else { return }
        // F_SETPIPE_SZ and F_GETPIPE_SZ (<fcntl.h> under _GNU_SOURCE, which Glibc's module leaves out).
        let setPipeSize: CInt = 1031, getPipeSize: CInt = 1032
        if fcntl(fd, getPipeSize) < pipeBufferBytes { _ = fcntl(fd, setPipeSize, pipeBufferBytes) }
        #endif
    }

    /// When the reader falls behind, queued batches go out in one write of up to 2,048 events
    /// (about 1.3 MB of typical events): fewer wake-ups and system calls for the same lines.
    public func backlogWriteLimit(batchSize: Int) -> Int? { max(batchSize, 2048) }

    /// Appends the events as lines, each optionally preceded by `prefix(event)` (a syslog header).
    static func appendLines(
        _ events: [ForwardedEvent], to lines: inout ByteBuffer, prefixBytes: Int = 0, prefix: ((ForwardedEvent) -> String)? = nil
    ) {
        lines.reserveCapacity(minimumWritableBytes: events.reduce(0) { $0 + $1.json.readableBytes + 1 + prefixBytes })
        for event in events {
            if let prefix { lines.writeString(prefix(event)) }
            lines.writeImmutableBuffer(event.json)
            lines.writeInteger(UInt8(ascii: "\n"))
        }
    }

    public func write(_ events: [ForwardedEvent]) async throws -> SinkResult {
        let fd = fileDescriptor
        try await worker.run { [scratch] in
            try scratch.withLines { lines in
                Self.appendLines(events, to: &lines)
                try lines.withUnsafeReadableBytes { try writeAll(fd, $0) }
            }
        }
        return SinkResult(delivered: events.count)
    }

    public func shutdown() async {
        worker.shutdown()
    }
}

/// The buffer a worker thread assembles its lines in, reused from one write to the next: a fresh
/// megabyte-sized buffer per write made glibc's heap grow in steps (its mmap threshold adapts to
/// large frees), about 3 MiB over the first ten million messages (README, "Robustness").
/// Touched only by calls on one `BlockingWorker`, which run one at a time.
final class LineScratch: @unchecked Sendable {
    /// Larger than this after a write (a backlog of large events), the buffer is let go.
    static let keptCapacity = 4 << 20
    private var buffer = ByteBufferAllocator().buffer(capacity: 64 << 10)

    func withLines<T>(_ body: (inout ByteBuffer) throws -> T) rethrows -> T {
        buffer.clear()
        defer {
            if buffer.capacity > Self.keptCapacity { buffer = ByteBufferAllocator().buffer(capacity: 64 << 10) }
        }
        return try body(&buffer)
    }
}
