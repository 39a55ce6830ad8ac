#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOCore
import Synchronization

/// How the file output names, sizes and formats its files.
public struct FileOutputSettings: Sendable, Equatable {
    public enum Format: String, Sendable, Equatable {
        /// One JSON event a line.
        case json
        /// RFC 5424 syslog lines, the JSON event as the message.
        case syslog
    }

    public var path = "/var/log/dnstap-forwarder/dnstap.log"
    /// The file is rotated before a line would take it past this size (a single line larger than
    /// it gets a file of its own).
    public var maxFileBytes = 100 << 20
    /// Rotated files kept (older ones are deleted); 0 keeps none.
    public var maxFiles = 10
    /// Name of a rotated file: `{path}` is the output path, `{n}` the rotation number (1 = newest),
    /// `{time}` the UTC time of the rotation (`20261122T020520Z`). One of `{n}`, `{time}` is needed.
    public var pattern = "{path}.{n}"
    public var format = Format.json
    /// The syslog HOSTNAME field.
    public var hostname = "-"

    public init() {}
}

/// Events to a file, rotated by size, as JSON lines or RFC 5424 syslog lines.
///
/// A batch is written as few writes as the file's size limit allows: the lines that still fit go to
/// the current file, then it is rotated and the rest goes on in the next one, so no file passes the
/// limit (unless one line alone does) and none ends in a torn line. When a write fails (disk full,
/// the file's directory gone), the part of it written is cut off again, the failure is logged
/// (rate-limited), and the batch is retried with backoff from the first line not yet in a file;
/// the connections stop reading once the buffer fills: nothing is dropped for a full disk.
public final class FileSink: EventSink {
    private let settings: FileOutputSettings
    private let worker: BlockingWorker
    private let statistics: ForwarderStatistics
    private let logger: Logger
    /// The open file: touched only by calls on the worker's thread, one at a time.
    private let file = Locked(FileState())
    /// Read by `/readyz` and the `dnstap_output_ready` gauge without waiting for a write.
    private let failing = Atomic<Bool>(false)
    private let failureLog = Locked(RateLimitedLog(interval: .seconds(10)))
    private let processID = getpid()
    private let scratch = LineScratch()

    private struct FileState {
        var fd: CInt = -1
        var size = 0
    }

    public init(
        settings: FileOutputSettings, statistics: ForwarderStatistics, logger: Logger
    ) throws {
        self.settings = settings
        self.statistics = statistics
        self.logger = logger
        worker = BlockingWorker()
        // Fail at start, in plain words, when the file cannot be opened at all.
        try file.withLock { try Self.open(settings.path, into: &$0) }
    }

    public var readiness: OutputReadiness {
        failing.load(ordering: .relaxed) ? .notReady("cannot write \(settings.path) (see the log); events are kept and retried") : .ready
    }

    public func write(_ events: [ForwardedEvent]) async throws -> SinkResult {
        var failures = 0
        // The lines of this batch already in a file: a retry goes on from there.
        let written = Locked(0)
        while true {
            do {
                try await worker.run { [self] in
                    let from = written.withLock { $0 }
                    let done = { (lines: Int) in written.withLock { $0 = from + lines } }
                    if settings.format == .json {
                        // Straight from the events' memory, as stdout does (`JSONLinesSink.writeLines`).
                        try scratch.withVectors { vectors in
                            try appendLines(events.count - from, size: { events[from + $0].json.readableBytes + 1 }, done: done) { fd, lines in
                                try JSONLinesSink.writeLines(events[(from + lines.lowerBound)..<(from + lines.upperBound)], to: fd, vectors: &vectors)
                            }
                        }
                    } else {
                        try scratch.withLines { buffer in
                            // Rendered once; each line's end in `buffer`.
                            var ends: [Int] = []
                            render(events[from...], into: &buffer, ends: &ends)
                            func start(_ line: Int) -> Int { line == 0 ? 0 : ends[line - 1] }
                            try appendLines(ends.count, size: { ends[$0] - start($0) }, done: done) { fd, lines in
                                try buffer.withUnsafeReadableBytes { bytes in
                                    try writeAll(fd, UnsafeRawBufferPointer(rebasing: bytes[start(lines.lowerBound)..<ends[lines.upperBound - 1]]))
                                }
                            }
                        }
                    }
                }
                if failing.exchange(false, ordering: .relaxed) {
                    logger.info("file output writes again", metadata: ["path": "\(settings.path)", "failed_attempts": "\(failures)"])
                }
                return SinkResult(delivered: events.count)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                failures += 1
                statistics.retried()
                failing.store(true, ordering: .relaxed)
                if let suppressed = failureLog.withLock({ $0.shouldLog() }) {
                    logger.error(
                        "cannot write the output file: the batch is kept and retried; connections stop reading when the buffer is full",
                        metadata: ["path": "\(settings.path)", "error": "\(error)", "events": "\(events.count)",
                                   "attempt": "\(failures)", "suppressed_since_last": "\(suppressed)"])
                }
                try await Task.sleep(for: .milliseconds(min(100 << min(failures - 1, 6), 5000)))
            }
        }
    }

    /// Syncs and closes the file (on the worker: a hung disk holds only that thread).
    public func flush() async throws {
        try await worker.run { [file] in
            file.withLock { state in
                guard state.fd >= 0 else { return }
                fsync(state.fd)
                close(state.fd)
                state.fd = -1
            }
        }
    }

    public func shutdown() async {
        worker.shutdown()
    }

    // MARK: - Rendering

    private func render(_ events: ArraySlice<ForwardedEvent>, into lines: inout ByteBuffer, ends: inout [Int]) {
        // RFC 5424: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG.
        // PRI 134 = facility local0 (16) * 8 + severity informational (6).
        let fixed = " \(settings.hostname) dnstap-forwarder \(processID) dnstap - "
        JSONLinesSink.appendLines(events, to: &lines, ends: &ends, prefixBytes: 40 + fixed.utf8.count) { event in
            "<134>1 " + RFC3339.string(micros: event.timeMicros) + fixed
        }
    }

    // MARK: - Writing (on the sink's own thread)

    /// Appends `count` lines (line `i` is `size(i)` bytes, its newline included) file by file:
    /// `write` gets the descriptor and the lines that go to the current file, `done` how many of
    /// the `count` are written once each file's part is.
    private func appendLines(
        _ count: Int, size: (Int) -> Int, done: (Int) -> Void, _ write: (CInt, Range<Int>) throws -> Void
    ) throws {
        var line = 0
        while line < count {
            let first = line
            line += try append(lineSizes: (first..<count).lazy.map(size)) { fd, lines in try write(fd, first..<(first + lines)) }
            done(line)
        }
    }

    /// Appends whole lines from the start of `lineSizes` (each line's bytes, its newline included):
    /// as many as fit in the current file, which is rotated first when not even the first one does
    /// (an empty file takes at least one line). `write` gets the descriptor and how many lines to
    /// write; the count is returned. On a failed write the file is cut back to where these lines
    /// began, so no torn line remains.
    private func append(lineSizes: some Sequence<Int>, _ write: (CInt, Int) throws -> Void) throws -> Int {
        try file.withLock { state in
            if state.fd < 0 { try Self.open(settings.path, into: &state) }
            let place = Self.placement(of: lineSizes, fileSize: state.size, limit: settings.maxFileBytes)
            guard place.lines > 0 else { return 0 }
            if place.rotateFirst { try rotate(&state) }
            let start = state.size
            do {
                try write(state.fd, place.lines)
                state.size += place.bytes
            } catch {
                _ = ftruncate(state.fd, off_t(start))
                // Reopen on the next attempt: the path may have been replaced or its disk remounted.
                close(state.fd)
                state.fd = -1
                throw error
            }
            return place.lines
        }
    }

    /// Where the next lines go (their sizes, newline included): whether the file, which holds
    /// `fileSize` bytes, is rotated first (it has lines and not even the first fits under `limit`),
    /// then how many lines go to it, and their bytes: as many as fit, and at least one.
    static func placement(of lineSizes: some Sequence<Int>, fileSize: Int, limit: Int) -> (rotateFirst: Bool, lines: Int, bytes: Int) {
        var sizes = lineSizes.makeIterator()
        guard let first = sizes.next() else { return (false, 0, 0) }
        let rotateFirst = fileSize > 0 && fileSize + first > limit
        let size = rotateFirst ? 0 : fileSize
        var lines = 1
        var bytes = first
        while let next = sizes.next(), size + bytes + next <= limit {
            lines += 1
            bytes += next
        }
        return (rotateFirst, lines, bytes)
    }

    private static func open(_ path: String, into state: inout FileState) throws {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileOutputError.cannotOpen(path, errno) }
        var info = stat()
        fstat(fd, &info)
        state.fd = fd
        state.size = Int(info.st_size)
        // A file left by a crash may end in a torn line: start on a fresh line.
        if state.size > 0, (info.st_mode & S_IFMT) == S_IFREG {
            var last: UInt8 = 0
            if pread(fd, &last, 1, off_t(state.size - 1)) == 1, last != UInt8(ascii: "\n") {
                var newline = UInt8(ascii: "\n")
                if Glibc.write(fd, &newline, 1) == 1 { state.size += 1 }
            }
        }
    }

    private func rotate(_ state: inout FileState) throws {
        fsync(state.fd)
        close(state.fd)
        state.fd = -1
        let path = settings.path
        if settings.pattern.contains("{n}") {
            if settings.maxFiles == 0 {
                unlink(path)
            } else {
                unlink(name(number: settings.maxFiles, time: nil))
                for number in stride(from: settings.maxFiles - 1, through: 1, by: -1) {
                    rename(name(number: number, time: nil), name(number: number + 1, time: nil))
                }
                guard rename(path, name(number: 1, time: nil)) == 0 else { throw FileOutputError.cannotRotate(path, errno) }
            }
        } else {
            var target = name(number: nil, time: RFC3339.compact(micros: WallClock.nowMicros()))
            var suffix = 1
            while access(target, F_OK) == 0 {  // two rotations in one second
                target = name(number: nil, time: RFC3339.compact(micros: WallClock.nowMicros())) + "-\(suffix)"
                suffix += 1
            }
            guard rename(path, target) == 0 else { throw FileOutputError.cannotRotate(path, errno) }
            pruneTimedFiles()
        }
        logger.info("output file rotated", metadata: ["path": "\(path)", "size": "\(state.size)"])
        try Self.open(path, into: &state)
    }

    private func name(number: Int?, time: String?) -> String {
        settings.pattern
            .replacingOccurrences(of: "{path}", with: settings.path)
            .replacingOccurrences(of: "{n}", with: number.map(String.init) ?? "")
            .replacingOccurrences(of: "{time}", with: time ?? "")
    }

    /// With `{time}` names: deletes the oldest rotated files beyond `maxFiles` (the names sort by time).
    private func pruneTimedFiles() {
        let template = name(number: nil, time: "\u{0}")
        // A name without a slash is in the working directory.
        let slash = template.lastIndex(of: "/")
        let directory = slash.map { String(template[..<$0]) } ?? "."
        let namePart = slash.map { template[template.index(after: $0)...] } ?? Substring(template)
        let parts = namePart.split(separator: "\u{0}", omittingEmptySubsequences: false)
        guard parts.count == 2, let dir = opendir(directory.isEmpty ? "/" : directory) else { return }
        defer { closedir(dir) }
        var rotated: [String] = []
        while let entry = readdir(dir) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if entryName.hasPrefix(parts[0]), entryName.count > parts[0].count + parts[1].count,
               parts[1].isEmpty || entryName.contains(parts[1]) {
                rotated.append(entryName)
            }
        }
        // By time, then by the number a second rotation in the same second adds ("-2" before "-10").
        let baseLength = parts[0].count + 16 + parts[1].count
        func order(_ name: String) -> (String, Int) {
            (String(name.prefix(baseLength)), Int(name.dropFirst(baseLength + 1)) ?? 0)
        }
        rotated.sort { order($0) < order($1) }
        for old in rotated.dropLast(settings.maxFiles) { unlink(slash == nil ? old : directory + "/" + old) }
    }
}

public enum FileOutputError: Error, CustomStringConvertible {
    case cannotOpen(String, Int32)
    case cannotRotate(String, Int32)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let code): return "cannot open \(path) for writing: \(String(cString: strerror(code)))"
        case .cannotRotate(let path, let code): return "cannot rotate \(path): \(String(cString: strerror(code)))"
        }
    }
}

extension RFC3339 {
    /// `20261122T020520Z`: sortable and safe in a file name.
    static func compact(micros: Int64) -> String {
        string(micros: micros).prefix(19).filter { $0 != "-" && $0 != ":" } + "Z"
    }
}
