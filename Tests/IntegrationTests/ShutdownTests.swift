import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import Testing

/// The built `dnstap-forwarder` binary, signalled like an orchestrator would.
@Suite("graceful shutdown of the binary")
struct ShutdownTests {
    /// The binary built beside this test bundle (so a sanitizer build, `--build-path`, tests its
    /// own instrumented binary), else the default debug build.
    static var binary: String {
        let bundle = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        let sibling = bundle.appendingPathComponent("dnstap-forwarder").path
        if FileManager.default.isExecutableFile(atPath: sibling) { return sibling }
        return packageRoot.appendingPathComponent(".build/debug/dnstap-forwarder").path
    }

    /// `name=value` from the exit summary line.
    static func summaryValue(_ name: String, in log: String) -> Int? {
        guard let line = log.split(separator: "\n").last(where: { $0.contains("stopped:") }),
            let range = line.range(of: " \(name)=")
        else { return nil }
        return Int(line[range.upperBound...].prefix { $0.isNumber })
    }

    @Test("SIGTERM in the middle of a stream: every frame received is written out, exit 0")
    func sigtermMidStream() async throws {
        let replay = try tool("fstrm_replay")
        #expect(FileManager.default.isExecutableFile(atPath: Self.binary), "build first: swift build")
        let directory = try TemporaryDirectory()
        var payloads: [[UInt8]] = []
        for index in 0..<100_000 { payloads.append(DnstapBuilder.message(query: DNSWireBuilder.query(name: "s\(index).test"))) }
        let capture = directory.path + "/big.fstrm"
        try Data(FrameStreamsFile.file(payloads: payloads)).write(to: URL(fileURLWithPath: capture))
        let socket = directory.path + "/f.sock"

        let forwarder = try WatchedProcess(
            Self.binary, ["-unix-socket", socket, "-flush-interval", "20ms", "-stats-interval", "0", "-admin-listen", "127.0.0.1:0"],
            separateStandardOutput: true)
        let listening = try await within(30, "listening") { await forwarder.waitFor("listening for dnstap") }
        #expect(listening, "\(forwarder.text)")
        let mode = try FileManager.default.attributesOfItem(atPath: socket)[.posixPermissions] as? Int
        #expect(mode == 0o660, "the socket file's mode is the default 0660")
        let sender = try WatchedProcess(replay, ["-t", "protobuf:dnstap.Dnstap", "-u", socket, "-r", capture])
        try await within(60, "events flowing") { await forwarder.standardOutput!.waitFor(lines: 2000) }

        forwarder.signal(SIGTERM)
        let status = try await within(60, "exit") { await forwarder.waitForExit() }
        await forwarder.standardOutput!.waitForEnd()
        _ = try await within(60, "sender exit") { await sender.waitForExit() }
        let log = forwarder.text

        #expect(status == 0, "\(log)")
        #expect(log.contains("shutting down: stopped accepting"))
        let frames = try #require(Self.summaryValue("frames", in: log), "\(log)")
        let written = try #require(Self.summaryValue("events_out", in: log))
        #expect(frames >= 2000)
        #expect(written == frames, "every frame received was written")
        #expect(forwarder.standardOutput!.lines == written, "stdout holds exactly what the summary reports")
        #expect(Self.summaryValue("undelivered", in: log) == 0)
        #expect(!FileManager.default.fileExists(atPath: socket), "the socket file is removed at exit")
    }

    @Test("--help lists every flag with its env var and default")
    func help() async throws {
        let result = try await run(Self.binary, ["--help"])
        #expect(result.status == 0)
        let text = result.output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for setting in Setting.allCases {
            let flag = text.contains("-\(setting.flag) ") || text.contains("-\(setting.flag),"), env = setting.environmentNames.allSatisfy { text.contains($0) }
            let byDefault = text.contains("default \(setting.defaultDescription)")
            #expect(flag && env && byDefault, "--help lacks -\(setting.flag), its env var or its default")
        }
    }

    @Test("a bad value is a clear error and exit status 2, in either flag spelling")
    func badValue() async throws {
        let result = try await run(Self.binary, ["-max-connections", "lots"])
        #expect(result.status == 2)
        #expect(result.output.contains("DNSTAP_MAX_CONNECTIONS"))
        let doubleDash = try await run(Self.binary, ["--max-connections", "lots"])
        #expect(doubleDash.status == 2)
        #expect(doubleDash.output.contains("DNSTAP_MAX_CONNECTIONS"))
        let environment = try await run("/usr/bin/env", ["DNSTAP_BUFFER_SIZE=-5", Self.binary])
        #expect(environment.status == 2)
        #expect(environment.output.contains("buffer-size"))
    }

    @Test("a socket path it cannot bind is a clear error and exit status 1")
    func cannotBind() async throws {
        let result = try await run(Self.binary, ["-unix-socket", "/nonexistent-dir/x.sock", "-log-level", "error"])
        #expect(result.status == 1)
        #expect(result.output.contains("/nonexistent-dir/x.sock"))
    }
}

@Suite("the brief's usage example")
struct BriefExampleTests {
    @Test("runs as written: starts, listens, reports the unreachable HEC plainly, stops cleanly on SIGTERM")
    func usageExample() async throws {
        let directory = try TemporaryDirectory()
        // The example's flags exactly; the socket path and an ephemeral admin port come from the
        // environment, to stay in a temp dir and out of the way of tests running beside it.
        let forwarder = try WatchedProcess(
            "/usr/bin/env",
            [
                "DNSTAP_UNIX_SOCKET=\(directory.path)/d.sock", "DNSTAP_HEC_CONNECT_TIMEOUT=1s", "DNSTAP_ADMIN_LISTEN=127.0.0.1:0",
                ShutdownTests.binary,
                "-max-connections", "200", "-buffer-size", "1000", "-batch-size", "100", "-flush-interval", "1",
                "-log-level", "info", "-output-type", "hec",
                "-hec-url", "https://splunk.example.com:8088/services/collector", "-hec-token", "your-token",
            ])
        #expect(try await within(30, "listening") { await forwarder.waitFor("listening for dnstap") }, "\(forwarder.text)")
        #expect(try await within(30, "HEC probe") { await forwarder.waitFor("cannot reach HEC") }, "\(forwarder.text)")
        forwarder.signal(SIGTERM)
        let status = try await within(60, "exit") { await forwarder.waitForExit() }
        #expect(status == 0, "\(forwarder.text)")
        #expect(forwarder.text.contains("max_connections=200"))
        #expect(!forwarder.text.contains("your-token"), "the token is never logged")
    }
}
