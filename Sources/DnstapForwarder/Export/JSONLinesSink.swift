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

    public init(fileDescriptor: CInt = 1) {
        self.fileDescriptor = fileDescriptor
        self.worker = BlockingWorker()
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
        _ events: ArraySlice<ForwardedEvent>, to lines: inout ByteBuffer, ends: inout [Int], prefixBytes: Int = 0,
        prefix: ((ForwardedEvent) -> String)? = nil
    ) {
        lines.reserveCapacity(minimumWritableBytes: events.reduce(0) { $0 + $1.json.readableBytes + 1 + prefixBytes })
        ends.reserveCapacity(events.count)
        for event in events {
            if let prefix { lines.writeString(prefix(event)) }
            lines.writeImmutableBuffer(event.json)
            lines.writeInteger(UInt8(ascii: "\n"))
            ends.append(lines.writerIndex - lines.readerIndex)
        }
    }

    public func write(_ events: [ForwardedEvent]) async throws -> SinkResult {
        let fd = fileDescriptor
        try await worker.run { [scratch] in
            try scratch.withVectors { try Self.writeLines(events[...], to: fd, vectors: &$0) }
        }
        return SinkResult(delivered: events.count)
    }

    /// Writes the events as lines with `writev(2)`, straight from their memory: the events the
    /// encoder made from one read are slices of one buffer, each followed there by a newline, so
    /// they go out as one vector (and one for the last newline) instead of being copied into a
    /// line buffer first: about 3 % of the CPU a message (README, "Performance").
    ///
    /// Two events are one run only when they are slices of the same storage with exactly one
    /// byte between them and that byte is a newline; any other event is a vector of its own,
    /// with a newline after it. The events keep their storage alive until the write is done.
    static func writeLines(_ events: ArraySlice<ForwardedEvent>, to fd: CInt, vectors: inout [iovec]) throws {
        vectors.removeAll(keepingCapacity: true)
        let newline = UnsafeMutableRawPointer(mutating: Self.newline.utf8Start)
        var run: (start: UnsafeRawPointer, count: Int, storage: UnsafeMutableRawPointer)?
        func endRun() {
            if let ended = run {
                vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: ended.start), iov_len: ended.count))
            }
            vectors.append(iovec(iov_base: newline, iov_len: 1))
        }
        for event in events {
            event.json.withUnsafeReadableBytesWithStorageManagement { bytes, storage in
                let storage = storage.toOpaque()
                guard let start = bytes.baseAddress, bytes.count > 0 else {
                    // An empty event: its newline alone.
                    if run != nil { endRun() }
                    run = nil
                    vectors.append(iovec(iov_base: newline, iov_len: 1))
                    return
                }
                if let current = run, current.storage == storage, current.start + current.count + 1 == start,
                   current.start.load(fromByteOffset: current.count, as: UInt8.self) == UInt8(ascii: "\n")
                {
                    run!.count += 1 + bytes.count
                    return
                }
                if run != nil { endRun() }
                run = (start, bytes.count, storage)
            }
        }
        if run != nil { endRun() }
        try withExtendedLifetime(events) { try writevAll(fd, &vectors) }
    }

    private static let newline: StaticString = "\n"

    public func shutdown() async {
        worker.shutdown()
    }
}

/// The buffer a worker thread assembles its lines in, reused from one write to the next: a fresh
/// megabyte-sized buffer per write made glibc's heap grow in steps (its mmap threshold adapts to
/// large frees), about 3 MiB over the first ten million messages (README, "Robustness").
/// Touched only by calls on one `BlockingWorker`, which run one at a time. Also the sink's
/// `writev` vectors.
final class LineScratch: @unchecked Sendable {
    /// Larger than this after a write (a backlog of large events), the buffer is let go.
    static let keptCapacity = 4 << 20
    private var buffer = ByteBufferAllocator().buffer(capacity: 64 << 10)
    private var vectors: [iovec] = []

    /// The vectors of a `writev`, reused; let go when a write needed more than 4,096.
    func withVectors<T>(_ body: (inout [iovec]) throws -> T) rethrows -> T {
        defer {
            if vectors.capacity > 4096 { vectors = [] }
        }
        return try body(&vectors)
    }

    func withLines<T>(_ body: (inout ByteBuffer) throws -> T) rethrows -> T {
        buffer.clear()
        defer {
            if buffer.capacity > Self.keptCapacity { buffer = ByteBufferAllocator().buffer(capacity: 64 << 10) }
        }
        return try body(&buffer)
    }
}
