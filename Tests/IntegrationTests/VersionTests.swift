import DnstapForwarder
import Foundation
import Testing

@Suite("--version")
struct VersionTests {
    @Test("--version and -version print the release and the git commit the binary was built from")
    func version() async throws {
        let git = try? await run(try tool("git"), ["-C", packageRoot.path, "rev-parse", "--short=12", "HEAD"])
        let commit = git?.status == 0 ? git?.output.trimmingCharacters(in: .whitespacesAndNewlines) : nil
        for flag in ["--version", "-version"] {
            let printed = try await within(30, "exit") { try await run(ShutdownTests.binary, [flag]) }
            #expect(printed.status == 0, "\(printed.output)")
            let line = printed.output.trimmingCharacters(in: .whitespacesAndNewlines)
            if let commit {
                #expect(line == "dnstap-forwarder \(ForwarderVersion.release) (commit \(commit))")
            } else {
                #expect(line == "dnstap-forwarder \(ForwarderVersion.release)", "outside a git checkout the commit is not known")
            }
        }
    }
}
