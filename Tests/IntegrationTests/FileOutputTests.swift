import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import NIOCore
import Testing

@Suite("file output: rotation, syslog, a full disk")
struct FileOutputTests {
    static func lines(_ path: String) -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    @Test(
        "rotated by size with {path}.{n}: every event once, no file past the limit or with a torn last line, a batch larger than a file split between files",
        arguments: [(50, FileOutputSettings.Format.json), (1000, .json), (1000, .syslog)])
    func rotation(batchSize: Int, format: FileOutputSettings.Format) async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/dnstap.log"
        let (payloads, names) = DnstapBuilder.pairs(2000, prefix: "rot", suffix: ".test")
        let (_, summary) = try await withForwarder({ config in
            config.output = .file
            config.file.path = path
            config.file.maxFileBytes = 64 * 1024
            config.file.maxFiles = 100
            config.file.format = format
            // 1000: a batch of about 500 KB, several files' worth.
            config.batchSize = batchSize
            // Rotation is what this checks, not the shutdown bound: under ThreadSanitizer, with the
            // whole suite beside it, the drain once outlasted the default 30 s, and the batch being
            // written when the bound cut it off was counted undelivered though its lines were on disk.
            config.shutdownTimeout = .seconds(300)
        }, sink: nil) { forwarder in
            try await sendSession(payloads, to: forwarder)
        }
        #expect(summary.eventsOut == 2000, "undelivered: \(summary.undelivered)")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("dnstap.log") }
        #expect(files.count > 3, "\(files)")
        var all: [String] = []
        for file in files {
            let content = Self.lines(directory.path + "/" + file)
            #expect(content.last == "", "\(file) must end with a newline")
            // A syslog line's message is the event: from its first brace.
            let events = content.dropLast().map { line in format == .syslog ? String(line[(line.firstIndex(of: "{") ?? line.startIndex)...]) : line }
            for line in events {
                #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "torn or bad line in \(file): \(line.prefix(80))")
            }
            let size = (try FileManager.default.attributesOfItem(atPath: directory.path + "/" + file)[.size] as? Int) ?? 0
            #expect(size <= 64 * 1024, "\(file) is \(size) bytes")
            all += events
        }
        #expect(all.count == 2000)
        #expect(Set(queries(all)) == names)
    }

    @Test("max-files bounds what is kept, and {time} names sort by time")
    func retentionWithTime() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/tap.json"
        _ = try await withForwarder({ config in
            config.output = .file
            config.file.path = path
            config.file.maxFileBytes = 16 * 1024
            config.file.maxFiles = 2
            config.file.pattern = "{path}-{time}"
            config.batchSize = 20
        }, sink: nil) { forwarder in
            try await sendSession(DnstapBuilder.pairs(1000, prefix: "t", suffix: ".test").payloads, to: forwarder)
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("tap.json") }
        let rotated = files.filter { $0 != "tap.json" }
        #expect(files.contains("tap.json"))
        #expect(rotated.count == 2, "\(files)")
        #expect(rotated.allSatisfy { $0.range(of: #"^tap\.json-\d{8}T\d{6}Z(-\d+)?$"#, options: .regularExpression) != nil }, "\(rotated)")
    }

    @Test("{time} names with an output path in the working directory (no slash): old files are pruned too")
    func retentionRelativePath() async throws {
        let replay = try tool("fstrm_replay")
        let directory = try TemporaryDirectory()
        let capture = directory.path + "/r.fstrm"
        try Data(FrameStreamsFile.file(payloads: DnstapBuilder.pairs(1000, prefix: "r", suffix: ".test").payloads))
            .write(to: URL(fileURLWithPath: capture))
        let forwarder = try WatchedProcess(
            ShutdownTests.binary,
            ["-unix-socket", directory.path + "/r.sock", "-output-type", "file", "-output-path", "tap.json",
             "-file-pattern", "{path}-{time}", "-max-file-size", "16KiB", "-max-files", "2", "-batch-size", "20",
             "-flush-interval", "20ms", "-stats-interval", "0", "-admin-listen", "127.0.0.1:0"],
            currentDirectory: directory.path)
        #expect(try await within(30, "listening") { await forwarder.waitFor("listening for dnstap") }, "\(forwarder.text)")
        #expect(try await run(replay, ["-t", "protobuf:dnstap.Dnstap", "-u", directory.path + "/r.sock", "-r", capture]).status == 0)
        #expect(try await within(30, "rotations") { await forwarder.waitFor("output file rotated") })
        forwarder.signal(SIGTERM)
        #expect(try await within(60, "exit") { await forwarder.waitForExit() } == 0, "\(forwarder.text.suffix(2000))")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("tap.json") }
        #expect(files.contains("tap.json"))
        #expect(files.count - 1 == 2, "at most -max-files rotated files are kept: \(files)")
    }

    /// A file size limit (`ulimit -f`, RLIMIT_FSIZE, here set with `prlimit`) cuts a write off: the
    /// kernel sends SIGXFSZ, which by default ends the process. The forwarder ignores it, so the
    /// write fails (EFBIG) like one to a full disk: logged, the file cut back to its last whole
    /// line, the batch kept and retried; once the limit is raised, every event is written once.
    @Test("a file size limit (ulimit -f): no signal ends the process; the write error is logged and the batch retried until it fits, every event once")
    func fileSizeLimit() async throws {
        let replay = try tool("fstrm_replay")
        let prlimit = try tool("prlimit")
        let directory = try TemporaryDirectory()
        let capture = directory.path + "/l.fstrm"
        let (payloads, names) = DnstapBuilder.pairs(1000, prefix: "limit", suffix: ".test")
        try Data(FrameStreamsFile.file(payloads: payloads)).write(to: URL(fileURLWithPath: capture))
        let path = directory.path + "/tap.json"
        let forwarder = try WatchedProcess(
            ShutdownTests.binary,
            ["-unix-socket", directory.path + "/l.sock", "-output-type", "file", "-output-path", path, "-batch-size", "1000",
             "-stats-interval", "0", "-admin-listen", "127.0.0.1:0"])
        #expect(try await within(30, "listening") { await forwarder.waitFor("listening for dnstap") }, "\(forwarder.text)")
        // The limit set on the running process, as an operator's `ulimit -f` would be (set before
        // the start, it also bounds a sanitizer runtime's own files): 64 KiB, a fraction of the
        // first batch's lines.
        let pid = "\(forwarder.process.processIdentifier)"
        #expect(try await run(prlimit, ["--pid", pid, "--fsize=65536:unlimited"]).status == 0)
        #expect(try await run(replay, ["-t", "protobuf:dnstap.Dnstap", "-u", directory.path + "/l.sock", "-r", capture]).status == 0)
        #expect(
            try await within(30, "the write error") { await forwarder.waitFor("cannot write the output file") },
            "\(forwarder.text.suffix(2000))")
        #expect(forwarder.text.contains("File too large"), "\(forwarder.text.suffix(2000))")
        // Cut back to whole lines while the limit holds.
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        #expect(size <= 65536)
        #expect(Self.lines(path).last == "", "no torn line")
        // The limit raised.
        #expect(try await run(prlimit, ["--pid", pid, "--fsize=unlimited:unlimited"]).status == 0)
        #expect(try await within(60, "writing to resume") { await forwarder.waitFor("file output writes again") })
        forwarder.signal(SIGTERM)
        #expect(try await within(60, "exit") { await forwarder.waitForExit() } == 0, "\(forwarder.text.suffix(2000))")
        let lines = Self.lines(path).dropLast()
        #expect(lines.count == payloads.count)
        #expect(Set(queries(Array(lines))) == names)
        #expect(lines.allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) != nil })
    }

    @Test("syslog format: RFC 5424 lines with the JSON event as the message")
    func syslog() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/dnstap.syslog"
        _ = try await withForwarder({ config in
            config.output = .file
            config.file.path = path
            config.file.format = .syslog
            config.file.hostname = "resolver-1"
        }, sink: nil) { forwarder in
            try await sendSession(DnstapBuilder.pairs(2, prefix: "s", suffix: ".test").payloads, to: forwarder)
        }
        let lines = Self.lines(path).dropLast()
        #expect(lines.count == 2)
        for line in lines {
            let pattern = #"^<134>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ dnstap-forwarder \d+ dnstap - \{.*\}$"#
            #expect(line.range(of: pattern, options: .regularExpression) != nil, "\(line.prefix(120))")
            let json = String(line[line.firstIndex(of: "{")!...])
            #expect((try? JSONSerialization.jsonObject(with: Data(json.utf8))) != nil)
        }
        // The event time is the dnstap query time of the first event (2023-11-14T22:13:20.123456Z).
        #expect(lines.first?.contains(" 2023-11-14T22:13:20.123456Z ") == true, "\(lines.first ?? "")")
    }

    @Test("a full disk: the error is logged, events are kept, writing resumes when there is room")
    func diskFull() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/dnstap.log"
        // The output path first points at /dev/full: every write fails with ENOSPC.
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: "/dev/full")
        let recorder = LogRecorder()
        let (payloads, names) = DnstapBuilder.pairs(100, prefix: "full", suffix: ".test")
        let (_, summary) = try await withForwarder({ config in
            config.output = .file
            config.file.path = path
        }, sink: nil, logger: recorder.logger()) { forwarder in
            let client = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            try await client.handshake()
            try await client.sendData(payloads)
            try await within(30, "the write error") { await recorder.waitFor("cannot write the output file") }
            #expect(recorder.lines.contains { $0.contains("No space left on device") })
            #expect(forwarder.statistics.eventsOut.load(ordering: .relaxed) == 0)
            #expect(forwarder.statistics.droppedTotal == 0)
            let ready = try await forwarder.admin("/readyz")
            #expect(ready.status == 503)
            // Room again: the path becomes a regular file; the kept batch and the rest are written.
            try FileManager.default.removeItem(atPath: path)
            try await within(30, "writing to resume") { await recorder.waitFor("file output writes again") }
            try await client.send(FrameStreamsTestClient.stop)
            _ = await client.waitForClose()
        }
        #expect(summary.undelivered == 0)
        #expect(summary.eventsOut == 100)
        let lines = Self.lines(path).dropLast()
        #expect(lines.count == 100)
        #expect(Set(queries(Array(lines))) == names)
    }

    /// A batch that does not fit in one file is written file by file. When the rotation between
    /// two of them fails, the retry goes on from the first line not yet in a file: the lines
    /// already in the first are not written again, and none is lost.
    @Test("a batch spanning two files whose rotation fails: the retry goes on from the first line not yet written, every event once and in order")
    func rotationFailsMidBatch() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/dnstap.log"
        let payloads = DnstapBuilder.pairs(100, prefix: "mid", suffix: ".test").payloads
        // The lines to expect, as the encoder renders them (every message has its dnstap time; the
        // sender is the unix socket peer's user).
        var encoder = DnstapEventEncoder()
        encoder.sender = "uid=\(getuid())"
        for payload in payloads { try encoder.append(frame: ByteBuffer(bytes: payload), receivedAtMicros: 0) }
        let expected = encoder.takeEvents().map { String(buffer: $0.json) }
        let total = expected.reduce(0) { $0 + $1.utf8.count + 1 }
        // While a directory stands where the file rotates to ({path}.1), the rotation's rename fails
        // (EISDIR), for root too. Another, not empty, stands at {path}.2, where {path}.1 would move
        // first (its rename fails, ENOTEMPTY): a retry that wrote the first lines again would
        // need a second rotation, and both files are kept to show it.
        let rotated = path + ".1"
        let older = path + ".2"
        try FileManager.default.createDirectory(atPath: rotated, withIntermediateDirectories: false)
        try FileManager.default.createDirectory(atPath: older + "/kept", withIntermediateDirectories: true)
        let recorder = LogRecorder()
        let (_, summary) = try await withForwarder({ config in
            config.output = .file
            config.file.path = path
            // About two thirds of the lines fit in a file: one rotation, in the middle of the batch.
            config.file.maxFileBytes = total * 2 / 3
            config.file.maxFiles = 2
            // One batch: every event is in when the flush timer takes it, however slow the machine.
            config.batchSize = 1000
            config.flushInterval = .seconds(2)
        }, sink: nil, logger: recorder.logger()) { forwarder in
            let client = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
            try await client.handshake()
            try await client.sendData(payloads)
            try await within(30, "the failed rotation") { await recorder.waitFor("cannot write the output file") }
            // The first file holds the batch's first lines, whole; the batch is not out yet.
            let first = Self.lines(path)
            #expect(first.last == "")
            #expect(first.count - 1 > 0 && first.count - 1 < expected.count, "\(first.count - 1) lines in the first file")
            let firstLines = Array(first.dropLast())
            let firstAsExpected = Self.sameLines(firstLines, Array(expected.prefix(firstLines.count)))
            #expect(firstAsExpected)
            #expect(forwarder.statistics.eventsOut.load(ordering: .relaxed) == 0)
            try FileManager.default.removeItem(atPath: rotated)
            try FileManager.default.removeItem(atPath: older)
            try await within(30, "writing to resume") { await recorder.waitFor("file output writes again") }
            try await client.send(FrameStreamsTestClient.stop)
            _ = await client.waitForClose()
        }
        #expect(summary.undelivered == 0)
        #expect(summary.eventsOut == expected.count)
        // One rotation: the batch's first lines in {path}.1, the rest in {path}, none again.
        #expect(!FileManager.default.fileExists(atPath: older))
        let written = Array(Self.lines(older).dropLast() + Self.lines(rotated).dropLast() + Self.lines(path).dropLast())
        let allAsExpected = Self.sameLines(written, expected)
        #expect(allAsExpected)
    }

    /// Whether the lines are the expected ones, recording the first that differs.
    static func sameLines(_ lines: [String], _ expected: [String]) -> Bool {
        let common = min(lines.count, expected.count)
        guard let index = (0..<common).first(where: { lines[$0] != expected[$0] }) ?? (lines.count == expected.count ? nil : common) else {
            return true
        }
        Issue.record("\(lines.count) lines, \(expected.count) expected; line \(index): \(index < lines.count ? lines[index].prefix(200) : "none"), expected \(index < expected.count ? expected[index].prefix(200) : "none")")
        return false
    }
}
