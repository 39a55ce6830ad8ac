import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

public enum SpoolError: Error, CustomStringConvertible {
    case io(String, Int32)

    public var description: String {
        switch self {
        case .io(let what, let code): return "spool: \(what): \(String(cString: strerror(code)))"
        }
    }
}

/// An append-only, segmented spool of batches on disk, with a checkpoint of what was delivered.
///
/// `append` writes a batch (waiting while the spool is at its byte bound), `next` hands batches to
/// the one drainer in order, `commit` records a batch as delivered and deletes segments that hold
/// only delivered batches. At start, batches after the checkpoint are loaded again, and a torn
/// record at a segment's end (a crash mid-write) is cut off.
final class Spool: Sendable {
    struct Pending: Sendable {
        var seq: UInt64
        var segment: UInt64
        var bytes: Int
        var events: [ForwardedEvent]?
    }

    private struct State {
        var pending: [Pending] = []
        var handed = 0
        var nextSeq: UInt64 = 1
        var committed: UInt64 = 0
        var segmentBytes: [UInt64: Int] = [:]
        var current: (id: UInt64, fd: CInt, size: Int)?
        var totalBytes = 0
        var closed = false
        var drainer: CheckedContinuation<Void, Never>?
        var appenders: [CheckedContinuation<Void, Never>] = []
        var checkpointFD: CInt = -1
    }

    let directory: String
    let maxBytes: Int
    let segmentLimit: Int
    private let state: Locked<State>

    init(directory: String, maxBytes: Int, segmentLimit: Int = 16 << 20, logger: Logger) throws {
        self.directory = directory
        self.maxBytes = maxBytes
        self.segmentLimit = min(segmentLimit, max(maxBytes / 4, 4096))
        mkdir(directory, 0o750)
        var initial = State()
        initial.checkpointFD = open(directory + "/checkpoint", O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard initial.checkpointFD >= 0 else { throw SpoolError.io("cannot open \(directory)/checkpoint", errno) }
        initial.committed = Self.readCheckpoint(initial.checkpointFD)
        for segment in try Self.segments(in: directory) {
            let path = Self.path(directory, segment)
            var contents = try Self.read(path)
            var kept = 0
            while let record = SpoolRecord.decode(&contents) {
                let size = contents.readerIndex - kept
                kept = contents.readerIndex
                initial.nextSeq = max(initial.nextSeq, record.seq + 1)
                if record.seq > initial.committed {
                    initial.pending.append(Pending(seq: record.seq, segment: segment, bytes: size, events: record.events))
                    initial.segmentBytes[segment, default: 0] += size
                    initial.totalBytes += size
                }
            }
            if contents.readableBytes > 0 {
                logger.warning("spool: cut a torn record at the end of a segment (a crash mid-write)", metadata: ["segment": "\(path)", "bytes": "\(contents.readableBytes)"])
                truncate(path, off_t(kept))
            }
            if initial.segmentBytes[segment] == nil { unlink(path) }
        }
        initial.pending.sort { $0.seq < $1.seq }
        let replayBatches = initial.pending.count
        let replayEvents = Self.eventCount(initial.pending)
        state = Locked(initial)
        if replayBatches > 0 {
            logger.info(
                "spool: replaying batches left from an earlier run",
                metadata: ["batches": "\(replayBatches)", "events": "\(replayEvents)", "directory": "\(directory)"])
        }
    }

    deinit {
        state.withLock { state in
            if let current = state.current { Glibc.close(current.fd) }
            Glibc.close(state.checkpointFD)
        }
    }

    var pendingEvents: Int { state.withLock { Self.eventCount($0.pending) } }

    static func eventCount(_ pending: [Pending]) -> Int {
        var total = 0
        for entry in pending { total += entry.events?.count ?? 0 }
        return total
    }
    var bytes: Int { state.withLock { $0.totalBytes } }
    /// At its bound: appends wait.
    var isFull: Bool { state.withLock { !$0.pending.isEmpty && $0.totalBytes >= maxBytes } }

    /// Writes a batch; waits while the spool is at its bound. Throws if it cannot write.
    func append(_ events: [ForwardedEvent]) async throws {
        while true {
            let full: Bool = state.withLock { state -> Bool in
                if state.closed || state.pending.isEmpty { return false }
                return state.totalBytes >= maxBytes
            }
            if !full { break }
            await withCheckedContinuation { continuation in
                let wait: Bool = state.withLock { state -> Bool in
                    if state.closed || state.pending.isEmpty { return false }
                    if state.totalBytes < maxBytes { return false }
                    state.appenders.append(continuation)
                    return true
                }
                if !wait { continuation.resume() }
            }
        }
        let drainer = try state.withLock { state -> CheckedContinuation<Void, Never>? in
            let seq = state.nextSeq
            let record = SpoolRecord.encode(seq: seq, events: events)
            var rotate = true
            if let current = state.current {
                let after: Int = current.size + record.readableBytes
                rotate = after > segmentLimit
                if rotate { Glibc.close(current.fd) }
            }
            if rotate {
                let path = Self.path(directory, seq)
                let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
                guard fd >= 0 else { throw SpoolError.io("cannot create \(path)", errno) }
                state.current = (seq, fd, 0)
            }
            try record.withUnsafeReadableBytes { try JSONLinesSink.writeAll(state.current!.fd, $0) }
            state.current!.size += record.readableBytes
            state.nextSeq += 1
            let segment = state.current!.id
            state.pending.append(Pending(seq: seq, segment: segment, bytes: record.readableBytes, events: events))
            state.segmentBytes[segment, default: 0] += record.readableBytes
            state.totalBytes += record.readableBytes
            defer { state.drainer = nil }
            return state.drainer
        }
        drainer?.resume()
    }

    /// The next batch to send, in order; nil once closed and everything handed out.
    func next() async -> (seq: UInt64, events: [ForwardedEvent])? {
        while true {
            enum Step { case batch(UInt64, [ForwardedEvent]), finished, wait }
            let step = state.withLock { state -> Step in
                if state.handed < state.pending.count {
                    let entry = state.pending[state.handed]
                    state.handed += 1
                    return .batch(entry.seq, entry.events ?? [])
                }
                return state.closed ? .finished : .wait
            }
            switch step {
            case .batch(let seq, let events): return (seq, events)
            case .finished: return nil
            case .wait:
                await withCheckedContinuation { continuation in
                    let resume = state.withLock { state -> Bool in
                        if state.handed < state.pending.count || state.closed { return true }
                        state.drainer = continuation
                        return false
                    }
                    if resume { continuation.resume() }
                }
            }
        }
    }

    /// Puts the last handed batch back, to be handed out again (a send that was abandoned).
    func giveBack() { state.withLock { $0.handed = max(0, $0.handed - 1) } }

    /// Records `seq` (the oldest handed batch) as delivered; frees whole delivered segments.
    func commit(_ seq: UInt64) {
        let appenders = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard let first = state.pending.first, first.seq == seq else { return [] }
            state.pending.removeFirst()
            state.handed -= 1
            state.committed = seq
            Self.writeWord(state.checkpointFD, seq)
            state.totalBytes -= first.bytes
            state.segmentBytes[first.segment, default: 0] -= first.bytes
            let left: Int = state.segmentBytes[first.segment] ?? 0
            if left <= 0 {
                state.segmentBytes.removeValue(forKey: first.segment)
                if state.current?.id == first.segment {
                    Glibc.close(state.current!.fd)
                    state.current = nil
                }
                unlink(Self.path(directory, first.segment))
                // The checkpoint only needs its last word: start it afresh when the spool is empty.
                if state.pending.isEmpty {
                    ftruncate(state.checkpointFD, 0)
                    Self.writeWord(state.checkpointFD, seq)
                }
            }
            defer { state.appenders.removeAll() }
            return state.appenders
        }
        for appender in appenders { appender.resume() }
    }

    /// No more appends; `next` returns nil once everything was handed out.
    func close() {
        let (drainer, appenders) = state.withLock { state -> (CheckedContinuation<Void, Never>?, [CheckedContinuation<Void, Never>]) in
            state.closed = true
            defer { state.drainer = nil; state.appenders.removeAll() }
            return (state.drainer, state.appenders)
        }
        drainer?.resume()
        for appender in appenders { appender.resume() }
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
            var nameBytes: [UInt8] = []
            withUnsafeBytes(of: entry.pointee.d_name) { (raw: UnsafeRawBufferPointer) in
                for byte in raw {
                    if byte == 0 { break }
                    nameBytes.append(byte)
                }
            }
            let name = String(decoding: nameBytes, as: UTF8.self)
            if name.hasPrefix("segment-"), name.hasSuffix(".spool"), let id = UInt64(name.dropFirst(8).dropLast(6)) {
                found.append(id)
            }
        }
        return found.sorted()
    }

    static func read(_ path: String) throws -> ByteBuffer {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SpoolError.io("cannot read \(path)", errno) }
        defer { Glibc.close(fd) }
        var buffer = ByteBuffer()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count: Int = chunk.withUnsafeMutableBytes { (raw: UnsafeMutableRawBufferPointer) -> Int in Glibc.read(fd, raw.baseAddress, raw.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            buffer.writeBytes(chunk[0..<count])
        }
        return buffer
    }

    static func writeWord(_ fd: CInt, _ value: UInt64) {
        var word: UInt64 = value.bigEndian
        withUnsafeBytes(of: &word) { (raw: UnsafeRawBufferPointer) in _ = Glibc.write(fd, raw.baseAddress, 8) }
    }

    static func readCheckpoint(_ fd: CInt) -> UInt64 {
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size >= 8 else { return 0 }
        var word: UInt64 = 0
        let words: Int = Int(info.st_size) / 8
        let offset: Int = (words - 1) * 8
        withUnsafeMutableBytes(of: &word) { (raw: UnsafeMutableRawBufferPointer) in _ = pread(fd, raw.baseAddress, 8, off_t(offset)) }
        return UInt64(bigEndian: word)
    }
}
