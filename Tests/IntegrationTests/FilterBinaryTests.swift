import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import Testing

/// The filters in the binary: what is left out, counted in the exit summary; SIGHUP re-reads the
/// names files; a names file that cannot be read stops the start.
@Suite("filters in the binary", .serialized)
struct FilterBinaryTests {
    static func send(_ names: [String], to socket: String) async throws {
        let client = try await FrameStreamsTestClient.connect(unixPath: socket)
        #expect(try await client.handshake() == .accept)
        try await client.sendData(names.enumerated().flatMap { DnstapBuilder.pair(name: $1, id: UInt16($0)) })
        #expect(try await client.stop() == .finish)
    }

    @Test("-drop-names-file leaves those names out, counted; SIGHUP reads the file again; a file that cannot be read stops the start (exit 1)")
    func dropNamesAndReload() async throws {
        let directory = try TemporaryDirectory()
        let names = directory.path + "/drop.txt"
        let socket = directory.path + "/tap.sock"
        let common = ["-unix-socket", socket, "-admin-listen", "", "-stats-interval", "0", "-flush-interval", "20ms"]
        let missing = try await within(30, "exit") {
            try await run(ShutdownTests.binary, common + ["-drop-names-file", directory.path + "/none.txt"])
        }
        #expect(missing.status == 1 && missing.output.contains(directory.path + "/none.txt"), "\(missing.output)")

        try "# noise\nnoise.test\n".write(toFile: names, atomically: true, encoding: .utf8)
        let forwarder = try WatchedProcess(ShutdownTests.binary, common + ["-drop-names-file", names])
        #expect(try await within(30, "listening") { await forwarder.waitFor("listening for dnstap") }, "\(forwarder.text)")
        try await Self.send(["a.noise.test", "b.kept.test"], to: socket)
        #expect(try await within(30, "the kept events") { await forwarder.waitFor(#""query":"b.kept.test""#) })

        try "kept.test\n".write(toFile: names, atomically: true, encoding: .utf8)
        forwarder.signal(SIGHUP)
        #expect(try await within(30, "the reload") { await forwarder.waitFor("names files reloaded") }, "\(forwarder.text)")
        try await Self.send(["c.noise.test", "d.kept.test"], to: socket)
        #expect(try await within(30, "the events after the reload") { await forwarder.waitFor(#""query":"c.noise.test""#) })
        forwarder.signal(SIGTERM)
        #expect(try await within(30, "exit") { await forwarder.waitForExit() } == 0, "\(forwarder.text)")
        let text = forwarder.text
        #expect(!text.contains(#""query":"a.noise.test""#) && !text.contains(#""query":"d.kept.test""#), "\(text)")
        #expect(text.contains("filtered=drop_names=4"), "two pairs left out, counted: \(text.suffix(1500))")
        #expect(text.contains("undelivered=0"))
    }
}
