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
    /// PowerDNS's protobuf logging over TCP (`-pdns-listen`).
    case pdns(host: String, port: Int)

    public var description: String {
        switch self {
        case .unix(let path): return "unix:\(path)"
        case .tcp(let host, let port): return host.contains(":") ? "tcp:[\(host)]:\(port)" : "tcp:\(host):\(port)"
        case .pdns(let host, let port): return host.contains(":") ? "pdns:[\(host)]:\(port)" : "pdns:\(host):\(port)"
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

/// The value of `-output-type`.
public enum OutputType: String, Equatable, Sendable {
    case stdout
    case hec
    case file
}

/// Where events go, with what each output cannot do without: a HEC output has its endpoints (one
/// at least) and token by construction, so no output can start half-configured. The outputs' other settings
/// are `ForwarderConfiguration.hec` and `.file`.
public enum Output: Equatable, Sendable {
    case stdout
    case file
    case hec([HECEndpoint], token: String)

    public var type: OutputType {
        switch self {
        case .stdout: return .stdout
        case .file: return .file
        case .hec: return .hec
        }
    }
}

/// The effective configuration of one run, resolved from flags, the environment and defaults.
public struct ForwarderConfiguration: Equatable, Sendable {
    public var unixSocketPath: String?
    public var unixSocketMode: UInt16 = 0o660
    public var unixSocketGroup: String?
    public var tcpListen: HostPort?
    /// `-pdns-listen`: PowerDNS protobuf logging (nil: off).
    public var pdnsListen: HostPort?
    /// TLS on the TCP listener (nil: plain Frame Streams).
    public var tls: TLSFiles?
    /// `-allow-from` (nil: any address).
    public var allowFrom: AllowList?
    /// `-max-connections-per-peer` (nil: no cap per address).
    public var maxConnectionsPerPeer: Int?
    /// The connection cap; `maxConnectionsIsAuto` says whether it was derived from the buffer size.
    public var maxConnections: Int = 500
    public var maxConnectionsIsAuto = true
    public var maxFrameSize: Int = 1 << 20
    public var handshakeTimeout: Duration = .seconds(10)
    /// nil: connections are never closed for being idle.
    public var idleTimeout: Duration? = .seconds(600)
    public var bufferSize: Int = 10_000
    /// Resolved from `-batch-size` or its output's default (`defaultBatchSize`).
    public var batchSize: Int = 100
    public var flushInterval: Duration = .seconds(1)
    public var output: Output = .stdout
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
    /// `-message-types`, `-drop-names-file`, `-keep-names-file`, `-sample-rate`.
    public var filters = FilterSettings()
    /// `-transactions`, `-transaction-timeout`, `-transaction-table-size`.
    public var transactions = TransactionSettings()
    /// `-max-sender-series`: senders with series of their own in /metrics (0: none).
    public var maxSenderSeries = 1000

    public init() {}

    public var listenAddresses: [ListenAddress] {
        var addresses: [ListenAddress] = []
        if let path = unixSocketPath { addresses.append(.unix(path: path)) }
        if let tcp = tcpListen { addresses.append(.tcp(host: tcp.host, port: tcp.port)) }
        if let pdns = pdnsListen { addresses.append(.pdns(host: pdns.host, port: pdns.port)) }
        return addresses
    }

    /// The brief's auto-scaling rule: buffer size / 10, clamped to 10...500.
    public static func automaticMaxConnections(bufferSize: Int) -> Int {
        min(500, max(10, bufferSize / 10))
    }

    /// `-batch-size` when it is not given. A stdout or file batch is one write (a file's may be
    /// split where it rotates), and each wakes the output's task and its writer thread: at a
    /// resolver's steady 10,000 messages/s, batches of 1,000 instead of 100 took about 11 % off the
    /// CPU a message (context switches 10.1k -> 6.7k for 100,000 messages; README, "Performance"),
    /// and the flush interval still bounds how long an event waits. A HEC batch is one request (100
    /// events, about 65 KB of JSON before gzip).
    public static func defaultBatchSize(output: OutputType, bufferSize: Int) -> Int {
        switch output {
        case .stdout, .file: min(1000, bufferSize)
        case .hec: min(100, bufferSize)
        }
    }

    /// Resolves `flag ?? environment ?? default` for every setting, then the rules that tie
    /// settings together.
    /// - Parameters:
    ///   - flags: values given on the command line, by setting.
    ///   - environment: the process environment (only `DNSTAP_*` names are read).
    public static func resolve(flags: [Setting: String], environment: [String: String]) throws -> ForwarderConfiguration {
        func given(_ setting: Setting) -> String? {
            if let value = flags[setting] { return value }
            for name in setting.environmentNames { if let value = environment[name] { return value } }
            return nil
        }
        var draft = ConfigurationDraft()
        for setting in Setting.allCases {
            guard let value = given(setting) ?? setting.defaultValue else { continue }
            do {
                try setting.apply(value, &draft)
            } catch let error as InvalidValue {
                throw ConfigurationError.invalidValue(setting, value, error.expected)
            }
        }
        var config = draft.config
        // The default socket only when no TCP address is given either.
        if given(.unixSocket) == nil && config.tcpListen == nil && config.pdnsListen == nil { config.unixSocketPath = "/tmp/dnstap.sock" }
        guard !config.listenAddresses.isEmpty else {
            throw ConfigurationError.invalid("nothing to listen on: give -unix-socket PATH and/or -tcp-listen HOST:PORT")
        }
        config.batchSize = draft.batchSize ?? Self.defaultBatchSize(output: draft.outputType, bufferSize: config.bufferSize)
        if config.batchSize > config.bufferSize {
            throw ConfigurationError.invalid("-batch-size (\(config.batchSize)) must not exceed -buffer-size (\(config.bufferSize))")
        }
        switch (draft.tlsCertificate, draft.tlsKey) {
        case (let certificate?, let key?): config.tls = TLSFiles(certificate: certificate, key: key, clientCA: draft.tlsClientCA)
        case (nil, nil):
            if draft.tlsClientCA != nil { throw ConfigurationError.invalid("-tls-client-ca-file needs -tls-cert-file and -tls-key-file") }
        case (nil, _?): throw ConfigurationError.invalid("-tls-key-file needs -tls-cert-file (DNSTAP_TLS_CERT_FILE)")
        case (_?, nil): throw ConfigurationError.invalid("-tls-cert-file needs -tls-key-file (DNSTAP_TLS_KEY_FILE)")
        }
        if config.tcpListen == nil {
            if config.tls != nil { throw ConfigurationError.invalid("-tls-cert-file secures -tcp-listen: give -tcp-listen HOST:PORT") }
            if config.allowFrom != nil && config.pdnsListen == nil {
                throw ConfigurationError.invalid("-allow-from applies to -tcp-listen and -pdns-listen: give one of them")
            }
        }
        config.maxConnections = draft.maxConnections ?? automaticMaxConnections(bufferSize: config.bufferSize)
        config.maxConnectionsIsAuto = draft.maxConnections == nil
        if draft.outputType == .file, config.file.path.isEmpty {
            throw ConfigurationError.invalid("-output-type file needs -output-path (DNSTAP_OUTPUT_PATH)")
        }
        if config.file.format == .syslog, draft.outputType != .file {
            throw ConfigurationError.invalid("-output-format syslog is for -output-type file")
        }
        if config.file.pattern.replacingOccurrences(of: "{path}", with: config.file.path) == config.file.path {
            throw ConfigurationError.invalidValue(.filePattern, config.file.pattern, "a rotated name must differ from the output path")
        }
        if draft.token == nil, let file = draft.tokenFile {
            guard let contents = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ConfigurationError.invalidValue(.hecTokenFile, file, "cannot read the file")
            }
            draft.token = contents.trimmingSpaces()
        }
        if config.hec.retryMaxDelay < config.hec.retryInitialDelay {
            throw ConfigurationError.invalid("-hec-retry-initial-delay must be above 0 and at most -hec-retry-max-delay")
        }
        if draft.persistentBuffer { config.hec.spoolPath = draft.bufferPath }
        if config.hec.ackTimeout < config.hec.ackPollInterval {
            throw ConfigurationError.invalid("-hec-ack-poll-interval must be above 0 and at most -hec-ack-timeout")
        }
        switch draft.outputType {
        case .stdout: config.output = .stdout
        case .file: config.output = .file
        case .hec:
            guard let url = draft.url else {
                throw ConfigurationError.invalid("-output-type hec needs -hec-url (DNSTAP_HEC_URL)")
            }
            guard let token = draft.token else {
                throw ConfigurationError.invalid("-output-type hec needs -hec-token or -hec-token-file (DNSTAP_HEC_TOKEN, DNSTAP_HEC_TOKEN_FILE)")
            }
            config.output = .hec(try HECEndpoint.list(url), token: token)
        }
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
            "max_connections_per_peer": .string(maxConnectionsPerPeer.map(String.init) ?? "off"),
            "max_frame_size": .stringConvertible(maxFrameSize),
            "handshake_timeout": .stringConvertible(handshakeTimeout),
            "idle_timeout": .string(idleTimeout.map { "\($0)" } ?? "off"),
            "buffer_size": .stringConvertible(bufferSize),
            "batch_size": .stringConvertible(batchSize),
            "flush_interval": .stringConvertible(flushInterval),
            "output_type": .string(output == .file ? "file \(file.path) (\(file.format.rawValue), rotate at \(file.maxFileBytes) bytes, keep \(file.maxFiles) as \(file.pattern))" : output.type.rawValue),
            "shutdown_timeout": .stringConvertible(shutdownTimeout),
            "stats_interval": .string(statsInterval.map { "\($0)" } ?? "off"),
            "log_level": .string(logLevel.rawValue),
            "admin_listen": .string(adminListen.map { $0.host.contains(":") ? "[\($0.host)]:\($0.port)" : "\($0.host):\($0.port)" } ?? "off"),
            "filters": .string(filters.isActive ? filters.description : "off"),
            "transactions": .string(
                transactions.enabled ? "on, timeout \(transactions.timeout), table \(transactions.tableSize)" : "off"),
            "resolution_map": .string(resolutionMap.capacity == 0 ? "off" : "\(resolutionMap.capacity) addresses, ttl \(resolutionMap.ttlFloor)..\(resolutionMap.ttlCeiling)"),
        ]
        if let pdns = pdnsListen {
            metadata["pdns_listen"] = .string(pdns.host.contains(":") ? "[\(pdns.host)]:\(pdns.port)" : "\(pdns.host):\(pdns.port)")
        }
        if tcpListen != nil || pdnsListen != nil { metadata["allow_from"] = .string(allowFrom?.description ?? "any") }
        if tcpListen != nil {
            metadata["tls"] = .string(tls.map { "cert \($0.certificate), key \($0.key), client CA \($0.clientCA ?? "off")" } ?? "off")
        }
        if unixSocketPath != nil {
            metadata["unix_socket_mode"] = .string("0" + String(unixSocketMode, radix: 8))
            metadata["unix_socket_group"] = .string(unixSocketGroup ?? "-")
        }
        if case .hec(let endpoints, _) = output {
            metadata["hec_url"] = .string(endpoints.map(\.eventURL).joined(separator: ","))
            metadata["hec_token"] = "<redacted>"
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
