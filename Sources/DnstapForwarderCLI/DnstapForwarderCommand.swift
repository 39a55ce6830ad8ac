import ArgumentParser
import DnstapForwarder
import Foundation
import Logging

/// `dnstap-forwarder`: flags and environment into a configuration, logging, then the service.
@main
struct DnstapForwarderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dnstap-forwarder",
        abstract: "Receives dnstap over Frame Streams from DNS resolvers and forwards each message as a JSON event.",
        usage: "dnstap-forwarder [-flag value ...]",
        discussion: """
            Every flag may be written with one dash or two (-max-connections 200, --max-connections=200), \
            and has a DNSTAP_* environment variable; a flag wins over the environment, the environment \
            over the default. A boolean flag given alone means true. Durations take 30, 500ms, 10s, 10m; \
            sizes 1048576, 256KiB, 1MiB.
            Exit status: 0 clean, 1 the service failed, 2 bad configuration, 3 events left undelivered.
            """)

    /// `--version`: the release, and the git commit it was built from where the build knew it.
    static var versionLine: String {
        "dnstap-forwarder \(ForwarderVersion.release)" + (buildCommit.map { " (commit \($0))" } ?? "")
    }

    /// Every setting, for `--help`: its flags, then its help wrapped under it.
    static var flagsHelp: String {
        var lines = ["FLAGS:"]
        for setting in Setting.allCases {
            let value = setting.isBoolean ? "[true|false]" : setting.isSecret ? "<secret>" : "<value>"
            lines.append("  " + ([setting.flag] + setting.legacyFlags).map { "-" + $0 }.joined(separator: ", ") + " " + value)
            var line = "       "
            for word in setting.helpText.split(separator: " ") {
                if line.count + word.count + 1 > 100 {
                    lines.append(line)
                    line = "       "
                }
                line += " " + word
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }

    /// The flags, read by `Setting.parseFlags`: every setting is declared once, in the library.
    @Argument(parsing: .captureForPassthrough, help: .hidden) var arguments: [String] = []

    /// Parses like ArgumentParser, but every configuration error exits with status 2.
    static func main() async {
        // The flags are this command's passthrough words, so ArgumentParser does not see a help
        // request among them: answer it here, before anything else.
        let words = CommandLine.arguments.dropFirst()
        if words.contains(where: { ["-h", "-help", "--help"].contains($0) }) {
            print(helpMessage() + "\n" + flagsHelp)
            Foundation.exit(0)
        }
        if words.contains(where: { ["-version", "--version"].contains($0) }) {
            print(versionLine)
            Foundation.exit(0)
        }
        // The README's flag table, from the declarations (the documentation test keeps them equal).
        if words.first == "--markdown-flags" {
            print(Setting.markdownTable)
            Foundation.exit(0)
        }
        let command: Self
        do {
            command = try parse()
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }  // --help, --version
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(2)
        }
        do {
            try await command.run()
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            Foundation.exit(2)
        } catch {
            exit(withError: error)
        }
    }

    func run() async throws {
        let configuration = try ForwarderConfiguration.resolve(
            flags: try Setting.parseFlags(arguments), environment: ProcessInfo.processInfo.environment)
        let level = configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "dnstap-forwarder")
        // A closed stdout must be an error to count, not a signal that kills the process.
        signal(SIGPIPE, SIG_IGN)
        // Likewise a file size limit (ulimit -f) on the output file or the spool: a failed write
        // (EFBIG), logged and retried. The writes run on threads that block it today; this does not
        // depend on that.
        signal(SIGXFSZ, SIG_IGN)
        // As many connections as the hard limit allows (the cap, not the soft limit, should bound them).
        DescriptorLimit.raiseToHardLimit()
        let application = try ForwarderApplication(configuration: configuration, logger: logger)
        let summary = try await application.run()
        if summary.exitStatus != 0 { throw ExitCode(summary.exitStatus) }
    }
}
