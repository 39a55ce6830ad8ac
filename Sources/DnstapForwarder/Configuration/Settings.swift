import Logging

/// The configuration while the settings are applied, with what some of them leave to be combined
/// once all are read (see `ForwarderConfiguration.resolve`).
struct ConfigurationDraft {
    var config = ForwarderConfiguration()
    /// nil: `-max-connections` is auto (derived from the buffer size).
    var maxConnections: Int?
    /// nil: `-batch-size` takes its output's default (`ForwarderConfiguration.defaultBatchSize`).
    var batchSize: Int?
    var persistentBuffer = false
    var bufferPath = ""
    var outputType = OutputType.stdout
    var url: String?
    var token: String?
    var tokenFile: String?
    var tlsCertificate: String?
    var tlsKey: String?
    var tlsClientCA: String?
}

/// Values that must not be empty: empty means off (nil).
private func nonEmpty(_ text: String) -> String? { text.isEmpty ? nil : text }

private func atLeast(_ minimum: Duration, _ text: String, _ what: String) throws -> Duration {
    let value = try ValueParsing.duration(text)
    guard value >= minimum else { throw InvalidValue(what) }
    return value
}

// Every setting, declared once. The order is the README's and `--help`'s.
extension Setting {
    public static let allCases: [Setting] = [
        unixSocket, unixSocketMode, unixSocketGroup, tcpListen, pdnsListen, tlsCertFile, tlsKeyFile, tlsClientCAFile, allowFrom,
        maxConnections, maxConnectionsPerPeer, maxFrameSize, handshakeTimeout, idleTimeout,
        bufferSize, batchSize, flushInterval, outputType, outputPath, outputFormat, maxFileSize, maxFiles, filePattern,
        hecURL, hecToken, hecTokenFile, hecGzip, hecGzipLevel, hecMaxBatchBytes, hecRequestTimeout, hecConnectTimeout,
        hecRetryInitialDelay, hecRetryMaxDelay, hecPersistentBuf, hecBufPath, hecBufMaxSize, hecBufFsync, hecMaxInFlight,
        hecDLQPath, hecAck, hecAckPollInterval, hecAckTimeout, hecCAFile, hecInsecureSkipVerify,
        splunkSourcetype, splunkSource, splunkHost, splunkIndex,
        messageTypes, dropNamesFile, keepNamesFile, sampleRate, transactions, transactionTimeout, transactionTableSize,
        shutdownTimeout, statsInterval, logLevel, adminListen, adminClientTTL, maxSenderSeries,
        resolutionMapSize, resolutionTTLMin, resolutionTTLMax,
    ]

    // MARK: Listening

    public static let unixSocket = Setting(
        "unix-socket", legacy: ["socket"], environment: ["DNSTAP_SOCKET_PATH"], default: nil,
        shown: "`/tmp/dnstap.sock` when no `-tcp-listen` is given",
        "Unix socket to listen on; empty: none. A stale socket file is replaced at start and removed at exit."
    ) { value, draft in
        guard value.utf8.count <= 103 else { throw InvalidValue("a unix socket path must be shorter than 104 bytes") }
        draft.config.unixSocketPath = nonEmpty(value)
    }
    public static let unixSocketMode = Setting("unix-socket-mode", default: "0660", "Permissions of the socket file.") {
        $1.config.unixSocketMode = try ValueParsing.fileMode($0)
    }
    public static let unixSocketGroup = Setting(
        "unix-socket-group", default: nil, shown: "the process's group",
        "Group of the socket file, so a resolver running as its own user (`unbound`, `bind`, `knot-resolver`) can connect."
    ) { $1.config.unixSocketGroup = nonEmpty($0) }
    public static let tcpListen = Setting(
        "tcp-listen", default: nil, shown: "off", "TCP address, `HOST:PORT` or `[::1]:PORT`. Both listeners may run at once."
    ) { value, draft in draft.config.tcpListen = value.isEmpty ? nil : try ValueParsing.hostPort(value) }

    public static let pdnsListen = Setting(
        "pdns-listen", default: nil, shown: "off",
        "TCP address for PowerDNS's protobuf logging (Recursor `protobufServer`, dnsdist `newRemoteLogger`): its client queries and responses, in the same events. Plain TCP, no TLS (PowerDNS has none for it); `-allow-from` and the connection caps apply."
    ) { value, draft in draft.config.pdnsListen = value.isEmpty ? nil : try ValueParsing.hostPort(value) }

    // MARK: Securing the TCP listener

    public static let tlsCertFile = Setting(
        "tls-cert-file", default: nil, shown: "off",
        "PEM certificate (then any intermediates) of the TCP listener: with it, `-tcp-listen` speaks only TLS 1.2/1.3. Reloaded when the file changes and on SIGHUP."
    ) { $1.tlsCertificate = nonEmpty($0) }
    public static let tlsKeyFile = Setting(
        "tls-key-file", default: nil, shown: "none", "PEM private key of `-tls-cert-file`."
    ) { $1.tlsKey = nonEmpty($0) }
    public static let tlsClientCAFile = Setting(
        "tls-client-ca-file", default: nil, shown: "off",
        "PEM CA: makes a client certificate signed by it mandatory (mutual TLS); the certificate's name becomes each event's `sender`."
    ) { $1.tlsClientCA = nonEmpty($0) }
    public static let allowFrom = Setting(
        "allow-from", default: nil, shown: "any address",
        "Comma-separated CIDRs (IPv4, IPv6) that may connect over TCP (`-tcp-listen`, `-pdns-listen`); any other address is closed at accept, before any TLS work."
    ) { value, draft in draft.config.allowFrom = value.trimmingSpaces().isEmpty ? nil : try AllowList(parsing: value) }

    // MARK: Connections

    public static let maxConnections = Setting(
        "max-connections", default: nil, shown: "auto: `buffer-size / 10`, clamped to 10..500", "Cap on concurrent connections."
    ) { value, draft in
        let text = value.trimmingSpaces().lowercased()
        draft.maxConnections = ["", "auto", "0"].contains(text) ? nil : try ValueParsing.integer(text, range: 1...100_000)
    }
    public static let maxConnectionsPerPeer = Setting(
        "max-connections-per-peer", default: "0", shown: "`0` (off)",
        "Cap on concurrent TCP connections from one address, so one sender cannot take every slot; `0`: no cap."
    ) { value, draft in
        let limit = try ValueParsing.integer(value, range: 0...100_000)
        draft.config.maxConnectionsPerPeer = limit == 0 ? nil : limit
    }
    public static let maxFrameSize = Setting(
        "max-frame-size", default: "1MiB", "Largest data frame; a larger one is skipped (never buffered) and counted."
    ) { value, draft in
        draft.config.maxFrameSize = try ValueParsing.byteSize(value)
        guard draft.config.maxFrameSize >= 512 else { throw InvalidValue("must be at least 512 bytes") }
    }
    public static let handshakeTimeout = Setting(
        "handshake-timeout", default: "10s", "A connection that has not completed READY/ACCEPT/START by then is closed."
    ) { $1.config.handshakeTimeout = try atLeast(.milliseconds(1), $0, "must be greater than 0") }
    public static let idleTimeout = Setting(
        "idle-timeout", default: "10m",
        "A connection that sends no whole frame for this long is closed (a peer trickling bytes is idle too); `0` turns it off."
    ) { value, draft in
        let idle = try ValueParsing.duration(value)
        draft.config.idleTimeout = idle == .zero ? nil : idle
    }

    // MARK: Buffer and batches

    public static let bufferSize = Setting(
        "buffer-size", legacy: ["buffer"], default: "10000", "Events held between the connections and the output."
    ) { $1.config.bufferSize = try ValueParsing.integer($0, range: 1...10_000_000) }
    public static let batchSize = Setting(
        "batch-size", default: nil, shown: "`1000` for `stdout` and `file`, `100` for `hec` (at most `buffer-size`)",
        "Events written per batch: the output takes a batch when it is full or its oldest event has waited `-flush-interval` (stdout: a backlog goes out in one write of up to 2,048)."
    ) { $1.batchSize = try ValueParsing.integer($0, range: 1...1_000_000) }
    public static let flushInterval = Setting(
        "flush-interval", environment: ["DNSTAP_FLUSH_INTERVAL_SEC"], default: "1s", "Longest an event waits for its batch."
    ) { $1.config.flushInterval = try atLeast(.milliseconds(1), $0, "must be at least 1ms") }

    // MARK: Output

    public static let outputType = Setting(
        "output-type", default: "stdout", "`stdout` (JSON lines), `hec` (Splunk HTTP Event Collector) or `file` (rotated by size)."
    ) { value, draft in
        guard let output = OutputType(rawValue: value.lowercased()) else { throw InvalidValue("expected stdout, hec or file") }
        draft.outputType = output
    }
    public static let outputPath = Setting(
        "output-path", default: "/var/log/dnstap-forwarder/dnstap.log", "With `-output-type file`: the file events are appended to."
    ) { $1.config.file.path = $0 }
    public static let outputFormat = Setting(
        "output-format", default: "json",
        "With `-output-type file`: `json` (one event a line) or `syslog` (RFC 5424 lines, the JSON event as the message)."
    ) { value, draft in
        guard let format = FileOutputSettings.Format(rawValue: value.lowercased()) else { throw InvalidValue("expected json or syslog") }
        draft.config.file.format = format
    }
    public static let maxFileSize = Setting(
        "max-file-size", default: "100",
        "With `-output-type file`: rotate before the file would pass this size; megabytes, or with a unit (`64KiB`, `1GiB`)."
    ) { value, draft in
        let text = value.trimmingSpaces()
        if let megabytes = Int(text) {
            guard megabytes > 0 && megabytes <= 1 << 20 else { throw InvalidValue("expected megabytes above 0") }
            draft.config.file.maxFileBytes = megabytes << 20
        } else {
            draft.config.file.maxFileBytes = try ValueParsing.byteSize(text)
        }
        guard draft.config.file.maxFileBytes >= 1024 else { throw InvalidValue("must be at least 1KiB") }
    }
    public static let maxFiles = Setting(
        "max-files", default: "10", "With `-output-type file`: rotated files kept; older ones are deleted (`0`: none kept)."
    ) { $1.config.file.maxFiles = try ValueParsing.integer($0, range: 0...100_000) }
    public static let filePattern = Setting(
        "file-pattern", default: "{path}.{n}",
        "With `-output-type file`: name of a rotated file; `{path}` the output path, `{n}` its number (1 is the newest), `{time}` the UTC time of the rotation (`20261122T020520Z`)."
    ) { value, draft in
        guard value.contains("{n}") || value.contains("{time}") else { throw InvalidValue("must contain {n} or {time}") }
        draft.config.file.pattern = value
    }

    // MARK: Splunk HEC

    public static let hecURL = Setting(
        "hec-url", default: nil,
        "HEC endpoint: `https://host:8088/services/collector`, `…/services/collector/event`, or a bare `https://host:8088` (then `/services/collector/event`). Several, comma-separated (one per indexer): batches go round-robin to those whose circuit is closed."
    ) { $1.url = nonEmpty($0) }
    public static let hecToken = Setting(
        "hec-token", default: nil, secret: true, "HEC token, sent as `Authorization: Splunk <token>`; never logged or printed."
    ) { $1.token = nonEmpty($0) }
    public static let hecTokenFile = Setting(
        "hec-token-file", default: nil, "File holding the token (a mounted secret); used when `-hec-token` is not given."
    ) { $1.tokenFile = nonEmpty($0) }
    public static let hecGzip = Setting("hec-gzip", default: "true", boolean: true, "Compress request bodies with gzip.") {
        $1.config.hec.gzip = try ValueParsing.boolean($0)
    }
    public static let hecGzipLevel = Setting(
        "hec-gzip-level", default: "3",
        "gzip level, 1 (fastest) to 9 (smallest). 3 compresses typical events about 22× at 2.5× the speed of zlib's default 6 (27×)."
    ) { $1.config.hec.gzipLevel = try ValueParsing.integer($0, range: 1...9) }
    public static let hecMaxBatchBytes = Setting(
        "hec-max-batch-bytes", default: "1MiB", "Largest request body before compression; a larger batch goes out as several requests."
    ) { $1.config.hec.maxBatchBytes = try ValueParsing.byteSize($0) }
    public static let hecRequestTimeout = Setting("hec-request-timeout", default: "30s", "Time limit of one request.") {
        $1.config.hec.requestTimeout = try ValueParsing.duration($0)
    }
    public static let hecConnectTimeout = Setting("hec-connect-timeout", default: "5s", "Time limit of connecting.") {
        $1.config.hec.connectTimeout = try ValueParsing.duration($0)
    }
    public static let hecRetryInitialDelay = Setting(
        "hec-retry-initial-delay", default: "1s", "First wait before a retry; it doubles with each failure (with jitter)."
    ) { $1.config.hec.retryInitialDelay = try atLeast(.milliseconds(1), $0, "must be above 0") }
    public static let hecRetryMaxDelay = Setting("hec-retry-max-delay", default: "60s", "Longest wait between retries.") {
        $1.config.hec.retryMaxDelay = try ValueParsing.duration($0)
    }
    public static let hecPersistentBuf = Setting(
        "hec-persistent-buf", default: "false", boolean: true,
        "Durable buffer: events waiting for HEC live in an append-only spool on disk that survives restarts and `kill -9`."
    ) { $1.persistentBuffer = try ValueParsing.boolean($0) }
    public static let hecBufPath = Setting(
        "hec-buf-path", default: "/var/lib/dnstap-forwarder/spool", "Directory of the durable buffer."
    ) { $1.bufferPath = $0 }
    public static let hecBufMaxSize = Setting(
        "hec-buf-max-size", default: "1GiB", "Bound on the spool; when it is full, writes wait and the connections stop reading."
    ) { $1.config.hec.spoolMaxBytes = try ValueParsing.byteSize($0) }
    public static let hecBufFsync = Setting(
        "hec-buf-fsync", default: "1s",
        "How often the spool is fsynced: a power loss can cost what was spooled since the last sync. `0`: every batch is synced before it counts as accepted (slower; see \"Sending to Splunk HEC\")."
    ) { $1.config.hec.spoolFsyncInterval = try ValueParsing.duration($0) }
    public static let hecMaxInFlight = Setting(
        "hec-max-in-flight", default: "4", "HEC requests in flight at once (stdout always writes one batch at a time, in order)."
    ) { $1.config.hec.maxInFlight = try ValueParsing.integer($0, range: 1...64) }
    public static let hecDLQPath = Setting(
        "hec-dlq-path", default: nil, shown: "off",
        "Dead-letter file: events HEC rejects for good are appended to it, one JSON line each with the reason and HEC's reply."
    ) { $1.config.hec.deadLetterPath = nonEmpty($0) }
    public static let hecAck = Setting(
        "hec-ack", default: "false", boolean: true,
        "Indexer acknowledgement: a batch counts as delivered only when HEC acknowledges it; one channel GUID per process."
    ) { $1.config.hec.acknowledgements = try ValueParsing.boolean($0) }
    public static let hecAckPollInterval = Setting(
        "hec-ack-poll-interval", default: "10s", "How often `/services/collector/ack` is asked."
    ) { $1.config.hec.ackPollInterval = try atLeast(.milliseconds(1), $0, "must be above 0") }
    public static let hecAckTimeout = Setting(
        "hec-ack-timeout", default: "5m", "A batch not acknowledged by then is sent again (HEC may then index it twice: at-least-once)."
    ) { $1.config.hec.ackTimeout = try ValueParsing.duration($0) }
    public static let hecCAFile = Setting(
        "hec-ca-file", default: nil, shown: "none (system roots)", "PEM file of a private CA that signed HEC's certificate."
    ) { $1.config.hec.caFile = nonEmpty($0) }
    public static let hecInsecureSkipVerify = Setting(
        "hec-insecure-skip-verify", default: "false", boolean: true, "Skip TLS verification (logs a warning at start; for tests only)."
    ) { $1.config.hec.insecureSkipVerify = try ValueParsing.boolean($0) }
    public static let splunkSourcetype = Setting("splunk-sourcetype", default: "dnstap", "The events' sourcetype.") {
        $1.config.hec.sourcetype = $0
    }
    public static let splunkSource = Setting("splunk-source", default: "dnstap-forwarder", "The events' source.") {
        $1.config.hec.source = $0
    }
    public static let splunkHost = Setting("splunk-host", default: nil, shown: "this machine's hostname", "The events' host.") {
        $1.config.hec.host = nonEmpty($0)
    }
    public static let splunkIndex = Setting(
        "splunk-index", default: nil, shown: "the token's default index", "The events' index (must be allowed for the token)."
    ) { $1.config.hec.index = nonEmpty($0) }

    // MARK: Service

    public static let shutdownTimeout = Setting(
        "shutdown-timeout", default: "30s", "Bound on draining and flushing at SIGINT/SIGTERM."
    ) { $1.config.shutdownTimeout = try ValueParsing.duration($0) }
    public static let statsInterval = Setting(
        "stats-interval", default: "60s", "How often statistics are logged; `0`: only at exit."
    ) { value, draft in
        let interval = try ValueParsing.duration(value)
        draft.config.statsInterval = interval == .zero ? nil : interval
    }
    public static let logLevel = Setting(
        "log-level", default: "info", "`debug`, `info`, `warn` or `error`. Logs go to stderr; stdout carries only events."
    ) { $1.config.logLevel = try ForwarderConfiguration.parseLogLevel($0) }
    public static let adminListen = Setting(
        "admin-listen", default: "127.0.0.1:9180",
        "Admin API address, `HOST:PORT` (see [Admin API](#admin-api)); empty turns it off. Never on the dnstap listeners."
    ) { value, draft in
        let text = value.trimmingSpaces()
        draft.config.adminListen = text.isEmpty ? nil : try ValueParsing.hostPort(text)
    }
    public static let adminClientTTL = Setting(
        "admin-client-ttl", default: "2m",
        "A `/v1/connections` client that has not fetched for this long is forgotten, with the deltas kept for it."
    ) { $1.config.activity.clientTTL = try atLeast(.seconds(1), $0, "must be at least 1s") }

    // MARK: Resolution map

    public static let maxSenderSeries = Setting(
        "max-sender-series", default: "1000",
        "Senders that get series of their own in `/metrics` (`dnstap_sender_*{sender}`: frames, bytes, decode errors, last frame time); past it they share `sender=\"other\"`. `0`: none."
    ) { $1.config.maxSenderSeries = try ValueParsing.integer($0, range: 0...100_000) }

    // MARK: Filters and sampling

    public static let messageTypes = Setting(
        "message-types", default: nil, shown: "all",
        "Comma-separated dnstap types to write (e.g. `CLIENT_QUERY,CLIENT_RESPONSE`); the others are left out and counted."
    ) { value, draft in
        let names = value.split(separator: ",").map { String($0).trimmingSpaces().uppercased() }.filter { !$0.isEmpty }
        guard !names.isEmpty else { draft.config.filters.messageTypes = nil; return }
        for name in names where !FilterSettings.knownTypes.contains(name) {
            throw InvalidValue("unknown type \(name); one of \(FilterSettings.knownTypes.sorted().joined(separator: ", "))")
        }
        draft.config.filters.messageTypes = Set(names)
    }
    public static let dropNamesFile = Setting(
        "drop-names-file", default: nil, shown: "off",
        "File of names, one a line (`#` comments): a message whose question is one of them or under one is left out. Read again on SIGHUP."
    ) { $1.config.filters.dropNamesFile = nonEmpty($0) }
    public static let keepNamesFile = Setting(
        "keep-names-file", default: nil, shown: "off",
        "File of names: only messages whose question is one of them or under one are written. Read again on SIGHUP."
    ) { $1.config.filters.keepNamesFile = nonEmpty($0) }
    public static let sampleRate = Setting(
        "sample-rate", default: "1", "Write the messages of one question name in N (by a hash of the name, so a name's traffic stays together); answers other than NOERROR are always written; kept events carry `sample_rate`. `1`: all."
    ) { $1.config.filters.sampleRate = try ValueParsing.integer($0, range: 1...1_000_000) }

    // MARK: Transactions

    public static let transactions = Setting(
        "transactions", default: "false", boolean: true,
        "Join each query with its response into one event (the response's fields, `query_timestamp` and `duration`); a query without a response is written with `\"unanswered\": true`."
    ) { $1.config.transactions.enabled = try ValueParsing.boolean($0) }
    public static let transactionTimeout = Setting(
        "transaction-timeout", default: "5s",
        "How long a query waits for its response before it is written unanswered."
    ) { $1.config.transactions.timeout = try atLeast(.milliseconds(1), $0, "must be greater than 0") }
    public static let transactionTableSize = Setting(
        "transaction-table-size", default: "100000",
        "Queries waiting for their responses, at most; when full, the oldest is written unanswered early (counted `evicted`)."
    ) { $1.config.transactions.tableSize = try ValueParsing.integer($0, range: 1...10_000_000) }

    public static let resolutionMapSize = Setting(
        "resolution-map-size", default: "100000",
        "Addresses the DNS resolution map holds; past it the least recently seen is evicted. `0` turns the map off."
    ) { $1.config.resolutionMap.capacity = try ValueParsing.integer($0, range: 0...50_000_000) }
    public static let resolutionTTLMin = Setting(
        "resolution-ttl-min", default: "60s",
        "Shortest time an address stays mapped, whatever its TTL (TTL 0 answers stay useful for a minute)."
    ) { $1.config.resolutionMap.ttlFloor = try ValueParsing.duration($0) }
    public static let resolutionTTLMax = Setting(
        "resolution-ttl-max", default: "24h", "Longest time an address stays mapped, whatever its TTL."
    ) { $1.config.resolutionMap.ttlCeiling = try ValueParsing.duration($0) }
}
