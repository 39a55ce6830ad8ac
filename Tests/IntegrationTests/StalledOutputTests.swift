import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import NIOCore
import NIOPosix
import Testing

/// The shutdown bound holds whatever the output does, and a listener that cannot bind fails at
/// once: the binary, signalled as an orchestrator would.
@Suite("shutdown bound and bind failures of the binary", .serialized)
struct StalledOutputTests {
    /// Writes a capture of `count` messages and returns its path.
    static func capture(_ count: Int, in directory: TemporaryDirectory) throws -> String {
        let path = directory.path + "/stall.fstrm"
        let payloads = (0..<count).map { DnstapBuilder.message(query: DNSWireBuilder.query(name: "stall\($0).test")) }
        try Data(FrameStreamsFile.file(payloads: payloads)).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Starts the forwarder with `arguments`, replays a capture into it until its output has
    /// stalled (the buffer is full), sends SIGTERM and returns the exit status, the seconds it
    /// took from the signal, and the log.
    static func stopWhileStalled(_ arguments: [String], standardOutput: Pipe? = nil) async throws -> (Int32, Double, String) {
        let replay = try tool("fstrm_replay")
        let directory = try TemporaryDirectory()
        let capture = try capture(30_000, in: directory)
        let socket = directory.path + "/s.sock"
        let forwarder = try WatchedProcess(
            ShutdownTests.binary,
            ["-unix-socket", socket, "-shutdown-timeout", "2s", "-buffer-size", "2000", "-stats-interval", "0",
             "-admin-listen", "127.0.0.1:0"] + arguments,
            standardOutput: standardOutput)
        #expect(try await within(30, "listening") { await forwarder.waitFor("listening for dnstap") }, "\(forwarder.text)")
        let sender = try WatchedProcess(replay, ["-t", "protobuf:dnstap.Dnstap", "-u", socket, "-r", capture])
        #expect(try await within(60, "the buffer to fill") { await forwarder.waitFor("event buffer full") }, "\(forwarder.text)")
        let signalled = ContinuousClock.now
        forwarder.signal(SIGTERM)
        let status = try await within(60, "exit") { await forwarder.waitForExit() }
        let elapsed = signalled.duration(to: .now)
        sender.signal(SIGKILL)
        _ = await sender.waitForExit()
        return (status, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, forwarder.text)
    }

    static func expectCutOff(_ result: (Int32, Double, String)) {
        let (status, elapsed, log) = result
        #expect(status == 3, "exit status 3: events were left undelivered\n\(log.suffix(3000))")
        // The bound is 2 s; the rest is the process starting to stop and the summary.
        #expect(elapsed < 5, "exited \(elapsed) s after SIGTERM with -shutdown-timeout 2s")
        #expect(log.contains("shutdown bound reached"), "\(log.suffix(3000))")
        let undelivered = ShutdownTests.summaryValue("undelivered", in: log) ?? 0
        #expect(undelivered > 0, "the summary counts what was left")
    }

    @Test("stdout into a reader that never reads: SIGTERM ends the process within the bound, exit 3")
    func stalledStdout() async throws {
        let neverRead = Pipe()
        Self.expectCutOff(try await Self.stopWhileStalled([], standardOutput: neverRead))
        try neverRead.fileHandleForReading.close()
    }

    @Test("a file output that stops taking writes (a FIFO nobody reads): SIGTERM ends the process within the bound, exit 3")
    func stalledFile() async throws {
        let directory = try TemporaryDirectory()
        let fifo = directory.path + "/out.fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        // A reader that never reads: writes fill the pipe and then block, as on a hung disk.
        let reader = open(fifo, O_RDONLY | O_NONBLOCK)
        #expect(reader >= 0)
        defer { close(reader) }
        Self.expectCutOff(try await Self.stopWhileStalled(["-output-type", "file", "-output-path", fifo]))
    }

    @Test("a HEC that accepts connections and never answers: SIGTERM ends the process within the bound, exit 3")
    func silentHEC() async throws {
        let server = try await HECTestServer()
        server.setDefault(.hang)
        server.setHealthy(true)
        let result = try await Self.stopWhileStalled([
            "-output-type", "hec", "-hec-url", server.url, "-hec-token", server.token, "-hec-gzip", "false",
        ])
        await server.stop()
        Self.expectCutOff(result)
    }

    @Test("an admin or dnstap TCP address already taken: exit 1 at once, the address named, the socket file removed")
    func addressTaken() async throws {
        let taken = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = taken.localAddress!.port!
        let directory = try TemporaryDirectory()
        let socket = directory.path + "/t.sock"
        for arguments in [["-admin-listen", "127.0.0.1:\(port)"], ["-tcp-listen", "127.0.0.1:\(port)", "-admin-listen", "127.0.0.1:0"]] {
            let result = try await within(30, "exit") { try await run(ShutdownTests.binary, ["-unix-socket", socket] + arguments) }
            #expect(result.status == 1, "\(result.output)")
            #expect(result.output.contains("127.0.0.1:\(port)"), "the error names the address: \(result.output)")
            #expect(!FileManager.default.fileExists(atPath: socket), "the socket file is removed")
        }
        try await taken.close()
    }
}
