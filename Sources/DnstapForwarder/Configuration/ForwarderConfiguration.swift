import Logging

public enum ConfigurationError: Error, Equatable, CustomStringConvertible {
    case invalidValue(Setting, String, String)
    case invalid(String)

    public var description: String {
        switch self {
        case .invalidValue(let setting, let value, let expected):
            let shown = setting.isSecret ? "<redacted>" : "'\(value)'"
            return "invalid value \(shown) for -\(setting.flag) (\(setting.environmentName)): \(expected)"
        case .invalid(let message):
            return message
        }
    }
}

/// Where the service listens.
public enum ListenAddress: Equatable, Sendable, CustomStringConvertible {
    case unix(path: String)
    case tcp(host: String, port: Int)

    public var description: String {
        switch self {
        case .unix(let path): return "unix:\(path)"
        case .tcp(let host, let port): return host.contains(":") ? "tcp:[\(host)]:\(port)" : "tcp:\(host):\(port)"
        }
    }
}

/// A TCP address to listen on.
public struct HostPort: Equatable, Sendable {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}

public enum OutputType: String, Equatable, Sendable {
    case stdout
    case hec
    case file
}

/// The effective configuration of one run, resolved from flags, the environment and defaults.
public struct ForwarderConfiguration: Equatable, Sendable {
    public var unixSocketPath: String?
    public var unixSocketMode: UInt16 = 0o660
    public var unixSocketGroup: String?
    public var tcpListen: HostPort?
    /// The connection cap; `maxConnectionsIsAuto` says whether it was derived from the buffer size.
    public var maxConnections: Int = 500
    public var maxConnectionsIsAuto = true
    public var maxFrameSize: Int = 1 << 20
    public var handshakeTimeout: Duration = .seconds(10)
    /// nil: connections are never closed for being idle.
    public var idleTimeout: Duration? = .seconds(600)
    public var bufferSize: Int = 10_000
    public var batchSize: Int = 100
    public var flushInterval: Duration = .seconds(1)
    public var outputType: OutputType = .stdout
    public var hecURL: String?
    public var hecToken: String?
    public var hec = HECSettings()
    public var file = FileOutputSettings()
    public var shutdownTimeout: Duration = .seconds(30)
    /// nil: statistics are logged only at exit.
    public var statsInterval: Duration? = .seconds(60)
    public var logLevel: Logger.Level = .info
    /// nil: no admin API.
    public var adminListen: HostPort? = HostPort(host: "127.0.0.1", port: 9180)
    public var activity = ConnectionActivityTracker.Settings()
    public var resolutionMap = ResolutionMapSettings()

    public init() {}

    public var listenAddresses: [ListenAddress] {
        var addresses: [ListenAddress] = []
        if let path = unixSocketPath { addresses.append(.unix(path: path)) }
        if let tcp = tcpListen { addresses.append(.tcp(host: tcp.host, port: tcp.port)) }
        return addresses
    }

    /// The brief's auto-scaling rule: buffer size / 10, clamped to 10...500.
    public static func automaticMaxConnections(bufferSize: Int) -> Int {
        min(500, max(10, bufferSize / 10))
    }

    /// Resolves `flag ?? environment ?? default` for every setting.
    /// - Parameters:
    ///   - flags: values given on the command line, by setting.
    ///   - environment: the process environment (only `DNSTAP_*` names are read).
    public static func resolve(flags: [Setting: String], environment: [String: String]) throws -> ForwarderConfiguration {
        func given(_ setting: Setting) -> String? {
            if let value = flags[setting] { return value }
            for name in setting.environmentNames { if let value = environment[name] { return value } }
            return nil
        }
        func value(_ setting: Setting) -> String? { given(setting) ?? setting.defaultValue }

        var config = ForwarderConfiguration()
        let tcpGiven = given(.tcpListen).map { !$0.isEmpty } ?? false
        if let socket = given(.unixSocket) {
            config.unixSocketPath = socket.isEmpty ? nil : socket
        } else if !tcpGiven {
            config.unixSocketPath = Setting.unixSocket.defaultValue
        }
        if let path = config.unixSocketPath, path.utf8.count > 103 {
            throw ConfigurationError.invalidValue(.unixSocket, path, "a unix socket path must be shorter than 104 bytes")
        }
        config.unixSocketMode = try ValueParsing.fileMode(value(.unixSocketMode)!, setting: .unixSocketMode)
        config.unixSocketGroup = given(.unixSocketGroup).flatMap { $0.isEmpty ? nil : $0 }
        if let tcp = given(.tcpListen), !tcp.isEmpty {
            config.tcpListen = try ValueParsing.hostPort(tcp, setting: .tcpListen)
        }
        guard !config.listenAddresses.isEmpty else {
            throw ConfigurationError.invalid("nothing to listen on: give -unix-socket PATH and/or -tcp-listen HOST:PORT")
        }
        config.bufferSize = try ValueParsing.integer(value(.bufferSize)!, setting: .bufferSize, range: 1...10_000_000)
        config.batchSize = try ValueParsing.integer(value(.batchSize)!, setting: .batchSize, range: 1...1_000_000)
        if config.batchSize > config.bufferSize {
            throw ConfigurationError.invalid(
                "-batch-size (\(config.batchSize)) must not exceed -buffer-size (\(config.bufferSize))")
        }
        if let cap = given(.maxConnections), !cap.isEmpty, cap.lowercased() != "auto", cap != "0" {
            config.maxConnections = try ValueParsing.integer(cap, setting: .maxConnections, range: 1...100_000)
            config.maxConnectionsIsAuto = false
        } else {
            config.maxConnections = automaticMaxConnections(bufferSize: config.bufferSize)
            config.maxConnectionsIsAuto = true
        }
        config.maxFrameSize = try ValueParsing.byteSize(value(.maxFrameSize)!, setting: .maxFrameSize)
        if config.maxFrameSize < 512 {
            throw ConfigurationError.invalidValue(.maxFrameSize, value(.maxFrameSize)!, "must be at least 512 bytes")
        }
        config.handshakeTimeout = try ValueParsing.duration(value(.handshakeTimeout)!, setting: .handshakeTimeout)
        if config.handshakeTimeout == .zero {
            throw ConfigurationError.invalidValue(.handshakeTimeout, value(.handshakeTimeout)!, "must be greater than 0")
        }
        let idle = try ValueParsing.duration(value(.idleTimeout)!, setting: .idleTimeout)
        config.idleTimeout = idle == .zero ? nil : idle
        config.flushInterval = try ValueParsing.duration(value(.flushInterval)!, setting: .flushInterval)
        if config.flushInterval < .milliseconds(1) {
            throw ConfigurationError.invalidValue(.flushInterval, value(.flushInterval)!, "must be at least 1ms")
        }
        guard let output = OutputType(rawValue: value(.outputType)!.lowercased()) else {
            throw ConfigurationError.invalidValue(.outputType, value(.outputType)!, "expected stdout, hec or file")
        }
        config.outputType = output
        config.file.path = value(.outputPath)!
        if output == .file, config.file.path.isEmpty {
            throw ConfigurationError.invalid("-output-type file needs -output-path (DNSTAP_OUTPUT_PATH)")
        }
        guard let format = FileOutputSettings.Format(rawValue: value(.outputFormat)!.lowercased()) else {
            throw ConfigurationError.invalidValue(.outputFormat, value(.outputFormat)!, "expected json or syslog")
        }
        if format == .syslog, output != .file {
            throw ConfigurationError.invalid("-output-format syslog is for -output-type file")
        }
        config.file.format = format
        let fileSize = value(.maxFileSize)!.trimmingSpaces()
        config.file.maxFileBytes = try Int(fileSize).map { megabytes in
            guard megabytes > 0 && megabytes <= 1 << 20 else {
                throw ConfigurationError.invalidValue(.maxFileSize, fileSize, "expected megabytes above 0")
            }
            return megabytes << 20
        } ?? ValueParsing.byteSize(fileSize, setting: .maxFileSize)
        if config.file.maxFileBytes < 1024 {
            throw ConfigurationError.invalidValue(.maxFileSize, fileSize, "must be at least 1KiB")
        }
        config.file.maxFiles = try ValueParsing.integer(value(.maxFiles)!, setting: .maxFiles, range: 0...100_000)
        config.file.pattern = value(.filePattern)!
        if !config.file.pattern.contains("{n}") && !config.file.pattern.contains("{time}") {
            throw ConfigurationError.invalidValue(.filePattern, config.file.pattern, "must contain {n} or {time}")
        }
        if config.file.pattern.replacingOccurrences(of: "{path}", with: config.file.path) == config.file.path {
            throw ConfigurationError.invalidValue(.filePattern, config.file.pattern, "a rotated name must differ from the output path")
        }
        config.hecURL = given(.hecURL).flatMap { $0.isEmpty ? nil : $0 }
        config.hecToken = given(.hecToken).flatMap { $0.isEmpty ? nil : $0 }
        if config.hecToken == nil, let file = given(.hecTokenFile), !file.isEmpty {
            guard let contents = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ConfigurationError.invalidValue(.hecTokenFile, file, "cannot read the file")
            }
            config.hecToken = contents.trimmingSpaces()
        }
        config.hec.gzip = try ValueParsing.boolean(value(.hecGzip)!, setting: .hecGzip)
        config.hec.gzipLevel = try ValueParsing.integer(value(.hecGzipLevel)!, setting: .hecGzipLevel, range: 1...9)
        config.hec.maxBatchBytes = try ValueParsing.byteSize(value(.hecMaxBatchBytes)!, setting: .hecMaxBatchBytes)
        config.hec.requestTimeout = try ValueParsing.duration(value(.hecRequestTimeout)!, setting: .hecRequestTimeout)
        config.hec.connectTimeout = try ValueParsing.duration(value(.hecConnectTimeout)!, setting: .hecConnectTimeout)
        config.hec.retryInitialDelay = try ValueParsing.duration(value(.hecRetryInitialDelay)!, setting: .hecRetryInitialDelay)
        config.hec.retryMaxDelay = try ValueParsing.duration(value(.hecRetryMaxDelay)!, setting: .hecRetryMaxDelay)
        if config.hec.retryInitialDelay == .zero || config.hec.retryMaxDelay < config.hec.retryInitialDelay {
            throw ConfigurationError.invalid("-hec-retry-initial-delay must be above 0 and at most -hec-retry-max-delay")
        }
        config.hec.maxInFlight = try ValueParsing.integer(value(.hecMaxInFlight)!, setting: .hecMaxInFlight, range: 1...64)
        config.hec.deadLetterPath = given(.hecDLQPath).flatMap { $0.isEmpty ? nil : $0 }
        if try ValueParsing.boolean(value(.hecPersistentBuf)!, setting: .hecPersistentBuf) {
            config.hec.spoolPath = value(.hecBufPath)!
        }
        config.hec.spoolMaxBytes = try ValueParsing.byteSize(value(.hecBufMaxSize)!, setting: .hecBufMaxSize)
        config.hec.spoolFsyncInterval = try ValueParsing.duration(value(.hecBufFsync)!, setting: .hecBufFsync)
        config.hec.acknowledgements = try ValueParsing.boolean(value(.hecAck)!, setting: .hecAck)
        config.hec.ackPollInterval = try ValueParsing.duration(value(.hecAckPollInterval)!, setting: .hecAckPollInterval)
        config.hec.ackTimeout = try ValueParsing.duration(value(.hecAckTimeout)!, setting: .hecAckTimeout)
        if config.hec.ackPollInterval == .zero || config.hec.ackTimeout < config.hec.ackPollInterval {
            throw ConfigurationError.invalid("-hec-ack-poll-interval must be above 0 and at most -hec-ack-timeout")
        }
        config.hec.caFile = given(.hecCAFile).flatMap { $0.isEmpty ? nil : $0 }
        config.hec.insecureSkipVerify = try ValueParsing.boolean(value(.hecInsecureSkipVerify)!, setting: .hecInsecureSkipVerify)
        config.hec.sourcetype = value(.splunkSourcetype)!
        config.hec.source = value(.splunkSource)!
        config.hec.host = given(.splunkHost).flatMap { $0.isEmpty ? nil : $0 }
        config.hec.index = given(.splunkIndex).flatMap { $0.isEmpty ? nil : $0 }
        if config.outputType == .hec {
            guard let url = config.hecURL else {
                throw ConfigurationError.invalid("-output-type hec needs -hec-url (DNSTAP_HEC_URL)")
            }
            config.hec.endpoint = try HECEndpoint(url)
            guard config.hecToken != nil else {
                throw ConfigurationError.invalid("-output-type hec needs -hec-token or -hec-token-file (DNSTAP_HEC_TOKEN, DNSTAP_HEC_TOKEN_FILE)")
            }
        }
        config.shutdownTimeout = try ValueParsing.duration(value(.shutdownTimeout)!, setting: .shutdownTimeout)
        let stats = try ValueParsing.duration(value(.statsInterval)!, setting: .statsInterval)
        config.statsInterval = stats == .zero ? nil : stats
        config.logLevel = try parseLogLevel(value(.logLevel)!)
        let admin = value(.adminListen)!.trimmingSpaces()
        config.adminListen = admin.isEmpty ? nil : try ValueParsing.hostPort(admin, setting: .adminListen)
        config.activity.clientTTL = try ValueParsing.duration(value(.adminClientTTL)!, setting: .adminClientTTL)
        if config.activity.clientTTL < .seconds(1) {
            throw ConfigurationError.invalidValue(.adminClientTTL, value(.adminClientTTL)!, "must be at least 1s")
        }
        config.resolutionMap.capacity = try ValueParsing.integer(value(.resolutionMapSize)!, setting: .resolutionMapSize, range: 0...50_000_000)
        config.resolutionMap.ttlFloor = try ValueParsing.duration(value(.resolutionTTLMin)!, setting: .resolutionTTLMin)
        config.resolutionMap.ttlCeiling = try ValueParsing.duration(value(.resolutionTTLMax)!, setting: .resolutionTTLMax)
        if config.resolutionMap.ttlCeiling < config.resolutionMap.ttlFloor || config.resolutionMap.ttlCeiling == .zero {
            throw ConfigurationError.invalid("-resolution-ttl-max must be above 0 and at least -resolution-ttl-min")
        }
        return config
    }

    static func parseLogLevel(_ text: String) throws -> Logger.Level {
        switch text.lowercased() {
        case "trace": return .trace
        case "debug": return .debug
        case "info": return .info
        case "notice": return .notice
        case "warn", "warning": return .warning
        case "error": return .error
        case "critical": return .critical
        default: throw ConfigurationError.invalidValue(.logLevel, text, "expected debug, info, warn or error")
        }
    }

    /// The configuration as log metadata, secrets redacted.
    public var logMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = [
            "listen": .string(listenAddresses.map(\.description).joined(separator: ",")),
            "max_connections": .string("\(maxConnections)\(maxConnectionsIsAuto ? " (auto)" : "")"),
            "max_frame_size": .stringConvertible(maxFrameSize),
            "handshake_timeout": .stringConvertible(handshakeTimeout),
            "idle_timeout": .string(idleTimeout.map { "\($0)" } ?? "off"),
            "buffer_size": .stringConvertible(bufferSize),
            "batch_size": .stringConvertible(batchSize),
            "flush_interval": .stringConvertible(flushInterval),
            "output_type": .string(outputType == .file ? "file \(file.path) (\(file.format.rawValue), rotate at \(file.maxFileBytes) bytes, keep \(file.maxFiles) as \(file.pattern))" : outputType.rawValue),
            "shutdown_timeout": .stringConvertible(shutdownTimeout),
            "stats_interval": .string(statsInterval.map { "\($0)" } ?? "off"),
            "log_level": .string(logLevel.rawValue),
            "admin_listen": .string(adminListen.map { $0.host.contains(":") ? "[\($0.host)]:\($0.port)" : "\($0.host):\($0.port)" } ?? "off"),
            "resolution_map": .string(resolutionMap.capacity == 0 ? "off" : "\(resolutionMap.capacity) addresses, ttl \(resolutionMap.ttlFloor)..\(resolutionMap.ttlCeiling)"),
        ]
        if unixSocketPath != nil {
            metadata["unix_socket_mode"] = .string("0" + String(unixSocketMode, radix: 8))
            metadata["unix_socket_group"] = .string(unixSocketGroup ?? "-")
        }
        if let hecURL { metadata["hec_url"] = .string(hecURL) }
        if hecToken != nil { metadata["hec_token"] = "<redacted>" }
        if outputType == .hec {
            metadata["hec_gzip"] = .stringConvertible(hec.gzip)
            metadata["hec_gzip_level"] = .stringConvertible(hec.gzipLevel)
            metadata["hec_max_batch_bytes"] = .stringConvertible(hec.maxBatchBytes)
            metadata["hec_max_in_flight"] = .stringConvertible(hec.maxInFlight)
            metadata["hec_dlq_path"] = .string(hec.deadLetterPath ?? "off")
            metadata["hec_persistent_buf"] = .string(
                hec.spoolPath.map { "\($0) (max \(hec.spoolMaxBytes) bytes, fsync \(hec.spoolFsyncInterval == .zero ? "every batch" : "\(hec.spoolFsyncInterval)"))" } ?? "off")
            metadata["hec_ack"] = .string(hec.acknowledgements ? "on (poll \(hec.ackPollInterval), resend after \(hec.ackTimeout))" : "off")
            metadata["splunk_sourcetype"] = .string(hec.sourcetype)
            metadata["splunk_source"] = .string(hec.source)
            metadata["splunk_index"] = .string(hec.index ?? "-")
            metadata["hec_tls_verify"] = .string(hec.insecureSkipVerify ? "OFF" : (hec.caFile.map { "ca-file \($0)" } ?? "system roots"))
        }
        return metadata
    }
}
