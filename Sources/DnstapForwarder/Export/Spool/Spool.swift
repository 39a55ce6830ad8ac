import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

public enum SpoolError: Error, CustomStringConvertible {
    case io(String, Int32)
    case corrupt(String)
    case closed

    public var description: String {
        switch self {
        case .io(let what, let code): return "spool: \(what): \(String(cString: strerror(code)))"
        case .corrupt(let what): return "spool: \(what)"
        case .closed: return "spool: closed (a write after the output was flushed)"
        }
    }
}

/// An append-only, segmented spool of batches on disk, with a checkpoint of what was delivered.
///
/// In memory it keeps only `SpoolIndex`; a batch is read back from its segment when the drainer
/// sends it. `append` writes a batch (waiting while the spool is at its byte bound), `next` hands
/// batches to the one drainer in order, `commit` records a batch as delivered and deletes
/// segments that hold only delivered batches. At start the index is rebuilt from the segments'
/// record headers, and a torn record at a segment's end (a crash mid-write) is cut off.
///
/// File I/O runs on two worker threads of its own (appends and syncs on one, reads, checkpoints
/// and deletions on the other), never under the index's lock. Segments are fsynced as
/// `fsyncInterval` says: zero syncs every batch before it counts as accepted; otherwise `sync()`
/// (called that often by the spooling sink) syncs what was written since the last one.
final class Spool: Sendable {
    private struct State {
        var index: SpoolIndex
        var appenders = Waiters<Void>()
        var drainer = Waiters<Void>()
        var drained = Waiters<Void>()
        var appenderIDs: [UInt64] = []
        var drainerID: UInt64?
        var drainedIDs: [UInt64] = []
    }

    /// The file descriptors: the writer's segment, the reader's segment, the checkpoint.
    private struct Files {
        var writing: (segment: UInt64, fd: CInt)?
        var reading: (segment: UInt64, fd: CInt)?
        var checkpoint: CInt = -1
        var dirty = false
        var checkpointDirty = false
    }

    let directory: String
    let maxBytes: Int
    let fsyncInterval: Duration
    private let state: Locked<State>
    private let files: Locked<Files>
    private let writer: BlockingWorker
    private let reader: BlockingWorker
    private let logger: Logger

    init(directory: String, maxBytes: Int, segmentLimit: Int = 16 << 20, fsyncInterval: Duration = .seconds(1), logger: Logger) throws {
        self.directory = directory
        self.maxBytes = maxBytes
        self.fsyncInterval = fsyncInterval
        self.logger = logger
        mkdir(directory, 0o750)
        var files = Files()
        files.checkpoint = open(directory + "/checkpoint", O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard files.checkpoint >= 0 else { throw SpoolError.io("cannot open \(directory)/checkpoint", errno) }
        var index = SpoolIndex(
            maxBytes: maxBytes, segmentLimit: min(segmentLimit, max(maxBytes / 4, 4096)), committed: Self.readCheckpoint(files.checkpoint))
        let segments = try Self.segments(in: directory)
        for segment in segments {
            let path = Self.path(directory, segment)
            let kept = try Self.scan(path) { seq, offset, length, count in
                index.recovered(.init(seq: seq, segment: segment, offset: offset, length: length, count: count))
            }
            if let torn = kept.torn {
                logger.warning(
                    "spool: cut a torn record at the end of a segment (a crash mid-write)",
                    metadata: ["segment": "\(path)", "bytes": "\(torn)"])
                truncate(path, off_t(kept.validBytes))
            }
        }
        for segment in index.deliveredSegments(among: segments) { unlink(Self.path(directory, segment)) }
        state = Locked(State(index: index))
        self.files = Locked(files)
        writer = BlockingWorker()
        reader = BlockingWorker()
        if !index.isEmpty {
            logger.info(
                "spool: replaying batches left from an earlier run",
                metadata: ["batches": "\(index.pendingBatches)", "events": "\(index.totalEvents)", "directory": "\(directory)"])
        }
    }

    deinit {
        files.withLock { files in
            for fd in [files.writing?.fd, files.reading?.fd, files.checkpoint].compactMap({ $0 }) where fd >= 0 { Glibc.close(fd) }
        }
    }

    var pendingEvents: Int { state.withLock { $0.index.totalEvents } }
    var bytes: Int { state.withLock { $0.index.totalBytes } }
    var isFull: Bool { state.withLock { $0.index.isFull } }

    // MARK: - Appending

    /// Writes a batch; waits while the spool is at its bound. Throws if it cannot write, or
    /// `CancellationError` if cancelled first (then nothing was accepted).
    func append(_ events: [ForwardedEvent]) async throws {
        var record: ByteBuffer?
        while true {
            try Task.checkCancellation()
            let size = record?.readableBytes ?? SpoolRecord.size(of: events)
            let plan = state.withLock { $0.index.planAppend(recordBytes: size) }
            switch plan {
            case .closed:
                throw SpoolError.closed
            case .wait:
                await state.wait(in: \.appenders, onCancel: ()) { state, id in
                    guard state.index.isFull, !state.index.closed else { return () }
                    state.appenderIDs.append(id)
                    return nil
                }
                continue
            case .write(let seq, let segment, let offset, let newSegment, let retire):
                let bytes = SpoolRecord.encode(seq: seq, events: events)
                record = bytes
                do {
                    try await writer.run { [self] in
                        try write(bytes, segment: segment, offset: offset, newSegment: newSegment, retire: retire)
                    }
                } catch {
                    state.withLock { $0.index.appendFailed(segment: segment, offset: offset) }
                    throw error
                }
                let drainer = state.withLock { state in
                    state.index.appended(.init(seq: seq, segment: segment, offset: offset, length: bytes.readableBytes, count: events.count))
                    return state.drainerID.flatMap { id in
                        state.drainerID = nil
                        return state.drainer.take(id)
                    }
                }
                drainer?.resume()
                return
            }
        }
    }

    /// On the writer's thread.
    private func write(_ record: ByteBuffer, segment: UInt64, offset: Int, newSegment: Bool, retire: UInt64?) throws {
        try files.withLock { files in
            if newSegment {
                if let old = files.writing {
                    fsync(old.fd)
                    Glibc.close(old.fd)
                    files.writing = nil
                }
                if let retire { unlink(Self.path(directory, retire)) }
                let path = Self.path(directory, segment)
                let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
                guard fd >= 0 else { throw SpoolError.io("cannot create \(path)", errno) }
                files.writing = (segment, fd)
                Self.syncDirectory(directory)
            }
            guard let fd = files.writing?.fd else { throw SpoolError.corrupt("no segment open for writing") }
            do {
                try record.withUnsafeReadableBytes { bytes in
                    var done = 0
                    while done < bytes.count {
                        let wrote = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
                        if wrote < 0 {
                            if errno == EINTR { continue }
                            throw SpoolError.io("cannot write \(Self.path(directory, segment))", errno)
                        }
                        done += wrote
                    }
                }
            } catch {
                _ = ftruncate(fd, off_t(offset))
                throw error
            }
            if fsyncInterval == .zero { fsync(fd) } else { files.dirty = true }
        }
    }

    /// Syncs what was written since the last sync (segments, then the checkpoint).
    func sync() async throws {
        try await writer.run { [files] in
            files.withLock { files in
                if files.dirty, let fd = files.writing?.fd { fsync(fd) }
                files.dirty = false
                if files.checkpointDirty { fsync(files.checkpoint) }
                files.checkpointDirty = false
            }
        }
    }

    // MARK: - Draining

    /// The next batch to send, in order; nil once closed with everything handed out, or once the
    /// task is cancelled.
    func next() async -> SpoolIndex.Entry? {
        while !Task.isCancelled {
            let (entry, closed) = state.withLock { state in (state.index.nextToSend(), state.index.closed) }
            if let entry { return entry }
            if closed { return nil }
            await state.wait(in: \.drainer, onCancel: ()) { state, id in
                if state.index.closed || state.index.handed < state.index.pendingBatches { return () }
                state.drainerID = id
                return nil
            }
        }
        return nil
    }

    /// Reads a handed-out batch back from its segment.
    func read(_ entry: SpoolIndex.Entry) async throws -> [ForwardedEvent] {
        try await reader.run { [self] in
            try files.withLock { files in
                if files.reading?.segment != entry.segment {
                    if let old = files.reading { Glibc.close(old.fd) }
                    files.reading = nil
                    let path = Self.path(directory, entry.segment)
                    let fd = open(path, O_RDONLY | O_CLOEXEC)
                    guard fd >= 0 else { throw SpoolError.io("cannot read \(path)", errno) }
                    files.reading = (entry.segment, fd)
                }
                var buffer = ByteBufferAllocator().buffer(capacity: entry.length)
                let got = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: entry.length) { raw in
                    var done = 0
                    while done < entry.length {
                        let count = pread(files.reading!.fd, raw.baseAddress! + done, entry.length - done, off_t(entry.offset + done))
                        if count < 0 && errno == EINTR { continue }
                        if count < 0 { throw SpoolError.io("cannot read segment \(entry.segment)", errno) }
                        if count == 0 { break }
                        done += count
                    }
                    return done
                }
                guard got == entry.length, let record = SpoolRecord.decode(&buffer), record.seq == entry.seq else {
                    throw SpoolError.corrupt("batch \(entry.seq) in segment \(entry.segment) does not read back whole")
                }
                return record.events
            }
        }
    }

    /// Puts the last handed batch back, to be handed out again (a send cut off by the bound).
    func giveBack() { state.withLock { $0.index.giveBack() } }

    /// Records `seq` (the oldest handed batch) as delivered; frees whole delivered segments.
    func commit(_ seq: UInt64) async throws {
        let (retire, appenders, drained) = state.withLock { state in
            let retire = state.index.commit(seq)
            let appenders = state.appenderIDs.compactMap { state.appenders.take($0) }
            state.appenderIDs = []
            let drained = state.index.isDrained ? state.drainedIDs.compactMap { state.drained.take($0) } : []
            if state.index.isDrained { state.drainedIDs = [] }
            return (retire, appenders, drained)
        }
        for appender in appenders { appender.resume() }
        for waiter in drained { waiter.resume() }
        let sync = fsyncInterval == .zero
        try await reader.run { [self] in
            files.withLock { files in
                Self.writeWord(files.checkpoint, seq)
                if sync { fsync(files.checkpoint) } else { files.checkpointDirty = true }
                if let retire {
                    if files.reading?.segment == retire {
                        Glibc.close(files.reading!.fd)
                        files.reading = nil
                    }
                    unlink(Self.path(directory, retire))
                    // The checkpoint only needs its last word: start it afresh now and then.
                    ftruncate(files.checkpoint, 0)
                    Self.writeWord(files.checkpoint, seq)
                }
            }
        }
    }

    /// No more appends; `next` returns nil once everything was handed out.
    func close() {
        let (appenders, drainer, drained) = state.withLock { state in
            state.index.close()
            let appenders = state.appenderIDs.compactMap { state.appenders.take($0) }
            let drainer = state.drainerID.flatMap { state.drainer.take($0) }
            state.appenderIDs = []
            state.drainerID = nil
            let drained = state.index.isDrained ? state.drainedIDs.compactMap { state.drained.take($0) } : []
            if state.index.isDrained { state.drainedIDs = [] }
            return (appenders, drainer, drained)
        }
        for appender in appenders { appender.resume() }
        drainer?.resume()
        for waiter in drained { waiter.resume() }
    }

    /// Returns once the spool is closed and every batch in it was delivered, or when cancelled.
    func waitUntilDrained() async {
        await state.wait(in: \.drained, onCancel: ()) { state, id in
            if state.index.isDrained { return () }
            state.drainedIDs.append(id)
            return nil
        }
    }

    func shutdown() {
        writer.shutdown()
        reader.shutdown()
    }

    // MARK: - Files

    static func path(_ directory: String, _ segment: UInt64) -> String {
        let digits = String(segment)
        let padding = String(repeating: "0", count: max(0, 20 - digits.count))
        return "\(directory)/segment-\(padding)\(digits).spool"
    }

    static func segments(in directory: String) throws -> [UInt64] {
        guard let handle = opendir(directory) else { throw SpoolError.io("cannot list \(directory)", errno) }
        defer { closedir(handle) }
        var found: [UInt64] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasPrefix("segment-"), name.hasSuffix(".spool"), let id = UInt64(name.dropFirst(8).dropLast(6)) {
                found.append(id)
            }
        }
        return found.sorted()
    }

    /// Reads a segment's records one by one (headers, and the payloads only to check them), calling
    /// `found` for each whole one. Returns how many bytes are whole, and how many follow them torn.
    static func scan(_ path: String, _ found: (_ seq: UInt64, _ offset: Int, _ length: Int, _ count: Int) -> Void) throws -> (validBytes: Int, torn: Int?) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SpoolError.io("cannot read \(path)", errno) }
        defer { Glibc.close(fd) }
        var info = stat()
        fstat(fd, &info)
        let size = Int(info.st_size)
        var offset = 0
        while offset < size, let record = SpoolRecord.check(fd: fd, at: offset, fileSize: size) {
            found(record.seq, offset, record.length, record.count)
            offset += record.length
        }
        return (offset, offset < size ? size - offset : nil)
    }

    static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        Glibc.close(fd)
    }

    static func writeWord(_ fd: CInt, _ value: UInt64) {
        var word: UInt64 = value.bigEndian
        withUnsafeBytes(of: &word) { (raw: UnsafeRawBufferPointer) in _ = Glibc.write(fd, raw.baseAddress, 8) }
    }

    static func readCheckpoint(_ fd: CInt) -> UInt64 {
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size >= 8 else { return 0 }
        var word: UInt64 = 0
        let offset = (Int(info.st_size) / 8 - 1) * 8
        withUnsafeMutableBytes(of: &word) { (raw: UnsafeMutableRawBufferPointer) in _ = pread(fd, raw.baseAddress, 8, off_t(offset)) }
        return UInt64(bigEndian: word)
    }
}
