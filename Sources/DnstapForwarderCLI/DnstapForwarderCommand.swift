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
        discussion: """
            Every flag may be written with one dash or two (-max-connections 200, --max-connections 200), \
            and has a DNSTAP_* environment variable; a flag wins over the environment, the environment \
            over the default. Durations take 30, 500ms, 10s, 10m; sizes 1048576, 256KiB, 1MiB.
            Exit status: 0 clean, 1 the service failed, 2 bad configuration, 3 events left undelivered.
            """)

    @Option(name: names(.unixSocket), help: help(.unixSocket)) var unixSocket: String?
    @Option(name: names(.unixSocketMode), help: help(.unixSocketMode)) var unixSocketMode: String?
    @Option(name: names(.unixSocketGroup), help: help(.unixSocketGroup)) var unixSocketGroup: String?
    @Option(name: names(.tcpListen), help: help(.tcpListen)) var tcpListen: String?
    @Option(name: names(.maxConnections), help: help(.maxConnections)) var maxConnections: String?
    @Option(name: names(.maxFrameSize), help: help(.maxFrameSize)) var maxFrameSize: String?
    @Option(name: names(.handshakeTimeout), help: help(.handshakeTimeout)) var handshakeTimeout: String?
    @Option(name: names(.idleTimeout), help: help(.idleTimeout)) var idleTimeout: String?
    @Option(name: names(.bufferSize), help: help(.bufferSize)) var bufferSize: String?
    @Option(name: names(.batchSize), help: help(.batchSize)) var batchSize: String?
    @Option(name: names(.flushInterval), help: help(.flushInterval)) var flushInterval: String?
    @Option(name: names(.outputType), help: help(.outputType)) var outputType: String?
    @Option(name: names(.outputPath), help: help(.outputPath)) var outputPath: String?
    @Option(name: names(.outputFormat), help: help(.outputFormat)) var outputFormat: String?
    @Option(name: names(.maxFileSize), help: help(.maxFileSize)) var maxFileSize: String?
    @Option(name: names(.maxFiles), help: help(.maxFiles)) var maxFiles: String?
    @Option(name: names(.filePattern), help: help(.filePattern)) var filePattern: String?
    @Option(name: names(.hecURL), help: help(.hecURL)) var hecURL: String?
    @Option(name: names(.hecToken), help: help(.hecToken)) var hecToken: String?
    @Option(name: names(.hecTokenFile), help: help(.hecTokenFile)) var hecTokenFile: String?
    @Option(name: names(.hecGzip), help: help(.hecGzip)) var hecGzip: String?
    @Option(name: names(.hecGzipLevel), help: help(.hecGzipLevel)) var hecGzipLevel: String?
    @Option(name: names(.hecMaxBatchBytes), help: help(.hecMaxBatchBytes)) var hecMaxBatchBytes: String?
    @Option(name: names(.hecRequestTimeout), help: help(.hecRequestTimeout)) var hecRequestTimeout: String?
    @Option(name: names(.hecConnectTimeout), help: help(.hecConnectTimeout)) var hecConnectTimeout: String?
    @Option(name: names(.hecRetryInitialDelay), help: help(.hecRetryInitialDelay)) var hecRetryInitialDelay: String?
    @Option(name: names(.hecRetryMaxDelay), help: help(.hecRetryMaxDelay)) var hecRetryMaxDelay: String?
    @Option(name: names(.hecMaxInFlight), help: help(.hecMaxInFlight)) var hecMaxInFlight: String?
    @Option(name: names(.hecDLQPath), help: help(.hecDLQPath)) var hecDLQPath: String?
    @Option(name: names(.hecPersistentBuf), help: help(.hecPersistentBuf)) var hecPersistentBuf: String?
    @Option(name: names(.hecBufPath), help: help(.hecBufPath)) var hecBufPath: String?
    @Option(name: names(.hecBufMaxSize), help: help(.hecBufMaxSize)) var hecBufMaxSize: String?
    @Option(name: names(.hecBufFsync), help: help(.hecBufFsync)) var hecBufFsync: String?
    @Option(name: names(.hecAck), help: help(.hecAck)) var hecAck: String?
    @Option(name: names(.hecAckPollInterval), help: help(.hecAckPollInterval)) var hecAckPollInterval: String?
    @Option(name: names(.hecAckTimeout), help: help(.hecAckTimeout)) var hecAckTimeout: String?
    @Option(name: names(.hecCAFile), help: help(.hecCAFile)) var hecCAFile: String?
    @Option(name: names(.hecInsecureSkipVerify), help: help(.hecInsecureSkipVerify)) var hecInsecureSkipVerify: String?
    @Option(name: names(.splunkSourcetype), help: help(.splunkSourcetype)) var splunkSourcetype: String?
    @Option(name: names(.splunkSource), help: help(.splunkSource)) var splunkSource: String?
    @Option(name: names(.splunkHost), help: help(.splunkHost)) var splunkHost: String?
    @Option(name: names(.splunkIndex), help: help(.splunkIndex)) var splunkIndex: String?
    @Option(name: names(.shutdownTimeout), help: help(.shutdownTimeout)) var shutdownTimeout: String?
    @Option(name: names(.statsInterval), help: help(.statsInterval)) var statsInterval: String?
    @Option(name: names(.adminListen), help: help(.adminListen)) var adminListen: String?
    @Option(name: names(.adminClientTTL), help: help(.adminClientTTL)) var adminClientTTL: String?
    @Option(name: names(.resolutionMapSize), help: help(.resolutionMapSize)) var resolutionMapSize: String?
    @Option(name: names(.resolutionTTLMin), help: help(.resolutionTTLMin)) var resolutionTTLMin: String?
    @Option(name: names(.resolutionTTLMax), help: help(.resolutionTTLMax)) var resolutionTTLMax: String?
    @Option(name: names(.logLevel), help: help(.logLevel)) var logLevel: String?

    static func names(_ setting: Setting) -> NameSpecification {
        var names: [NameSpecification.Element] = [.customLong(setting.flag), .customLong(setting.flag, withSingleDash: true)]
        for legacy in setting.legacyFlags {
            names += [.customLong(legacy), .customLong(legacy, withSingleDash: true)]
        }
        return NameSpecification(names)
    }

    static func help(_ setting: Setting) -> ArgumentHelp {
        ArgumentHelp(setting.helpText, valueName: setting.isSecret ? "secret" : "value")
    }

    var flags: [Setting: String] {
        let given: [(Setting, String?)] = [
            (.unixSocket, unixSocket), (.unixSocketMode, unixSocketMode), (.unixSocketGroup, unixSocketGroup),
            (.tcpListen, tcpListen), (.maxConnections, maxConnections), (.maxFrameSize, maxFrameSize),
            (.handshakeTimeout, handshakeTimeout), (.idleTimeout, idleTimeout), (.bufferSize, bufferSize),
            (.batchSize, batchSize), (.flushInterval, flushInterval), (.outputType, outputType), (.hecURL, hecURL),
            (.outputPath, outputPath), (.outputFormat, outputFormat), (.maxFileSize, maxFileSize), (.maxFiles, maxFiles),
            (.filePattern, filePattern),
            (.hecToken, hecToken), (.hecTokenFile, hecTokenFile), (.hecGzip, hecGzip), (.hecGzipLevel, hecGzipLevel), (.hecMaxBatchBytes, hecMaxBatchBytes),
            (.hecRequestTimeout, hecRequestTimeout), (.hecConnectTimeout, hecConnectTimeout),
            (.hecRetryInitialDelay, hecRetryInitialDelay), (.hecRetryMaxDelay, hecRetryMaxDelay), (.hecMaxInFlight, hecMaxInFlight), (.hecDLQPath, hecDLQPath), (.hecPersistentBuf, hecPersistentBuf),
            (.hecBufPath, hecBufPath), (.hecBufMaxSize, hecBufMaxSize), (.hecBufFsync, hecBufFsync),
            (.hecAck, hecAck), (.hecAckPollInterval, hecAckPollInterval), (.hecAckTimeout, hecAckTimeout),
            (.hecCAFile, hecCAFile),
            (.hecInsecureSkipVerify, hecInsecureSkipVerify), (.splunkSourcetype, splunkSourcetype), (.splunkSource, splunkSource),
            (.splunkHost, splunkHost), (.splunkIndex, splunkIndex), (.shutdownTimeout, shutdownTimeout), (.statsInterval, statsInterval),
            (.adminListen, adminListen), (.adminClientTTL, adminClientTTL), (.resolutionMapSize, resolutionMapSize),
            (.resolutionTTLMin, resolutionTTLMin), (.resolutionTTLMax, resolutionTTLMax),
            (.logLevel, logLevel),
        ]
        return Dictionary(uniqueKeysWithValues: given.compactMap { setting, value in value.map { (setting, $0) } })
    }

    /// Parses like ArgumentParser, but every configuration error exits with status 2.
    static func main() async {
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
        let configuration = try ForwarderConfiguration.resolve(flags: flags, environment: ProcessInfo.processInfo.environment)
        let level = configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "dnstap-forwarder")
        // A closed stdout must be an error to count, not a signal that kills the process.
        signal(SIGPIPE, SIG_IGN)
        // As many connections as the hard limit allows (the cap, not the soft limit, should bound them).
        DescriptorLimit.raiseToHardLimit()
        let application = try ForwarderApplication(configuration: configuration, logger: logger)
        let summary = try await application.run()
        if summary.exitStatus != 0 { throw ExitCode(summary.exitStatus) }
    }
}
