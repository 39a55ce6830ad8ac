/// Every setting of the service: its flag, its environment variable(s), its default and its help.
///
/// This table is the single source for `--help`, for the configuration resolver and for the
/// README's flag table. Flags are accepted with one or two dashes (`-max-connections 200` and
/// `--max-connections 200`); a flag wins over the environment, the environment over the default.
public enum Setting: String, CaseIterable, Sendable {
    case unixSocket = "unix-socket"
    case unixSocketMode = "unix-socket-mode"
    case unixSocketGroup = "unix-socket-group"
    case tcpListen = "tcp-listen"
    case maxConnections = "max-connections"
    case maxFrameSize = "max-frame-size"
    case handshakeTimeout = "handshake-timeout"
    case idleTimeout = "idle-timeout"
    case bufferSize = "buffer-size"
    case batchSize = "batch-size"
    case flushInterval = "flush-interval"
    case outputType = "output-type"
    case outputPath = "output-path"
    case outputFormat = "output-format"
    case maxFileSize = "max-file-size"
    case maxFiles = "max-files"
    case filePattern = "file-pattern"
    case hecURL = "hec-url"
    case hecToken = "hec-token"
    case hecTokenFile = "hec-token-file"
    case hecGzip = "hec-gzip"
    case hecGzipLevel = "hec-gzip-level"
    case hecMaxBatchBytes = "hec-max-batch-bytes"
    case hecRequestTimeout = "hec-request-timeout"
    case hecConnectTimeout = "hec-connect-timeout"
    case hecRetryInitialDelay = "hec-retry-initial-delay"
    case hecRetryMaxDelay = "hec-retry-max-delay"
    case hecMaxInFlight = "hec-max-in-flight"
    case hecPersistentBuf = "hec-persistent-buf"
    case hecBufPath = "hec-buf-path"
    case hecBufMaxSize = "hec-buf-max-size"
    case hecBufFsync = "hec-buf-fsync"
    case hecAck = "hec-ack"
    case hecAckPollInterval = "hec-ack-poll-interval"
    case hecAckTimeout = "hec-ack-timeout"
    case hecDLQPath = "hec-dlq-path"
    case hecCAFile = "hec-ca-file"
    case hecInsecureSkipVerify = "hec-insecure-skip-verify"
    case splunkSourcetype = "splunk-sourcetype"
    case splunkSource = "splunk-source"
    case splunkHost = "splunk-host"
    case splunkIndex = "splunk-index"
    case shutdownTimeout = "shutdown-timeout"
    case statsInterval = "stats-interval"
    case logLevel = "log-level"
    case adminListen = "admin-listen"
    case adminClientTTL = "admin-client-ttl"
    case resolutionMapSize = "resolution-map-size"
    case resolutionTTLMin = "resolution-ttl-min"
    case resolutionTTLMax = "resolution-ttl-max"

    /// The flag name without dashes.
    public var flag: String { rawValue }

    /// Older spellings (of the earlier Go forwarder) accepted as flags.
    public var legacyFlags: [String] {
        switch self {
        case .unixSocket: return ["socket"]
        case .bufferSize: return ["buffer"]
        default: return []
        }
    }

    /// The environment variable, then older spellings that are still read (first found wins).
    public var environmentNames: [String] {
        let primary = "DNSTAP_" + rawValue.uppercased().replacingOccurrences(of: "-", with: "_")
        switch self {
        case .unixSocket: return [primary, "DNSTAP_SOCKET_PATH"]
        case .flushInterval: return [primary, "DNSTAP_FLUSH_INTERVAL_SEC"]
        default: return [primary]
        }
    }

    public var environmentName: String { environmentNames[0] }

    /// Whether the value must never be logged or printed.
    public var isSecret: Bool { self == .hecToken }

    /// The default, as a user would write it (nil: no default, the setting is off or derived).
    public var defaultValue: String? {
        switch self {
        case .unixSocket: return "/tmp/dnstap.sock"
        case .unixSocketMode: return "0660"
        case .unixSocketGroup: return nil
        case .tcpListen: return nil
        case .maxConnections: return nil
        case .maxFrameSize: return "1MiB"
        case .handshakeTimeout: return "10s"
        case .idleTimeout: return "10m"
        case .bufferSize: return "10000"
        case .batchSize: return "100"
        case .flushInterval: return "1s"
        case .outputType: return "stdout"
        case .outputPath: return "/var/log/dnstap-forwarder/dnstap.log"
        case .outputFormat: return "json"
        case .maxFileSize: return "100"
        case .maxFiles: return "10"
        case .filePattern: return "{path}.{n}"
        case .hecURL: return nil
        case .hecToken: return nil
        case .hecTokenFile: return nil
        case .hecGzip: return "true"
        case .hecGzipLevel: return "3"
        case .hecMaxBatchBytes: return "1MiB"
        case .hecRequestTimeout: return "30s"
        case .hecConnectTimeout: return "5s"
        case .hecRetryInitialDelay: return "1s"
        case .hecRetryMaxDelay: return "60s"
        case .hecMaxInFlight: return "4"
        case .hecPersistentBuf: return "false"
        case .hecBufPath: return "/var/lib/dnstap-forwarder/spool"
        case .hecBufMaxSize: return "1GiB"
        case .hecBufFsync: return "1s"
        case .hecAck: return "false"
        case .hecAckPollInterval: return "10s"
        case .hecAckTimeout: return "5m"
        case .hecDLQPath: return nil
        case .hecCAFile: return nil
        case .hecInsecureSkipVerify: return "false"
        case .splunkSourcetype: return "dnstap"
        case .splunkSource: return "dnstap-forwarder"
        case .splunkHost: return nil
        case .splunkIndex: return nil
        case .shutdownTimeout: return "30s"
        case .statsInterval: return "60s"
        case .logLevel: return "info"
        case .adminListen: return "127.0.0.1:9180"
        case .adminClientTTL: return "2m"
        case .resolutionMapSize: return "100000"
        case .resolutionTTLMin: return "60s"
        case .resolutionTTLMax: return "24h"
        }
    }

    /// How the default reads in help and in the README.
    public var defaultDescription: String {
        switch self {
        case .unixSocket: return "/tmp/dnstap.sock (when no -tcp-listen is given)"
        case .unixSocketGroup: return "the process's group"
        case .tcpListen: return "off"
        case .maxConnections: return "auto: buffer-size / 10, clamped to 10..500"
        case .hecURL, .hecToken, .hecTokenFile, .hecCAFile: return "none"
        case .hecDLQPath: return "off"
        case .splunkHost: return "this machine's hostname"
        case .splunkIndex: return "the token's default index"
        default: return defaultValue ?? "none"
        }
    }

    public var summary: String {
        switch self {
        case .unixSocket: return "Unix socket path to listen on for Frame Streams (empty: no unix socket)."
        case .unixSocketMode: return "Permissions of the socket file, octal."
        case .unixSocketGroup: return "Group (name or id) that owns the socket file, so a resolver running as its own user can connect."
        case .tcpListen: return "TCP address to listen on, HOST:PORT ([::1]:PORT for IPv6)."
        case .maxConnections: return "Most concurrent dnstap connections; more are accepted, logged, counted and closed."
        case .maxFrameSize: return "Largest data frame; a larger one is skipped and counted (bytes, or with K/KiB/M/MiB)."
        case .handshakeTimeout: return "Close a connection that has not completed READY/ACCEPT/START by then."
        case .idleTimeout: return "Close a connection that has sent no whole frame for this long (0: never)."
        case .bufferSize: return "Events held between the connections and the output; when full, connections stop reading."
        case .batchSize: return "Events written per batch (stdout: a backlog goes out in one write of up to 2,048)."
        case .flushInterval: return "Longest time an event waits for its batch (seconds, or with ms/s/m)."
        case .outputType: return "Where events go: stdout (JSON lines), hec (Splunk HTTP Event Collector) or file (rotated by size)."
        case .outputPath: return "With -output-type file: the file events are written to."
        case .outputFormat: return "With -output-type file: json (one event a line) or syslog (RFC 5424 lines, the JSON event as the message)."
        case .maxFileSize: return "With -output-type file: rotate before the file would pass this size (MB, or with KiB/MiB/GiB)."
        case .maxFiles: return "With -output-type file: rotated files kept; older ones are deleted (0: none kept)."
        case .filePattern: return "With -output-type file: name of a rotated file; {path} the output path, {n} its number (1 newest), {time} the UTC rotation time."
        case .hecURL: return "Splunk HEC endpoint: https://host:8088/services/collector, .../services/collector/event, or a bare https://host:8088."
        case .hecToken: return "Splunk HEC token (never logged)."
        case .hecTokenFile: return "File holding the HEC token (a mounted secret); used when -hec-token is not given."
        case .hecGzip: return "Compress request bodies with gzip (true or false)."
        case .hecGzipLevel: return "gzip level: 1 (fastest) to 9 (smallest); 3 gives about 22x on JSON events at 2.5x the speed of 6."
        case .hecMaxBatchBytes: return "Largest request body before compression; a batch over it is sent as several requests."
        case .hecRequestTimeout: return "Time limit of one HEC request."
        case .hecConnectTimeout: return "Time limit of connecting to HEC."
        case .hecRetryInitialDelay: return "First wait before retrying a failed HEC request; it doubles with each failure."
        case .hecRetryMaxDelay: return "Longest wait between retries (exponential backoff with jitter)."
        case .hecPersistentBuf: return "Durable buffer: events waiting for HEC live in an on-disk spool that survives restarts and kill -9."
        case .hecBufPath: return "Directory of the durable buffer."
        case .hecBufMaxSize: return "Bound on the durable buffer's size; when full, connections stop reading."
        case .hecBufFsync: return "How often the durable buffer is fsynced; a power loss can cost what was spooled since (0: every batch)."
        case .hecMaxInFlight: return "HEC requests in flight at once (raise it with -hec-ack, where each waits for its acknowledgement)."
        case .hecAck: return "Indexer acknowledgement: a batch counts as delivered only when HEC acknowledges it (at-least-once)."
        case .hecAckPollInterval: return "How often an acknowledgement is asked for."
        case .hecAckTimeout: return "A batch not acknowledged by then is sent again."
        case .hecDLQPath: return "File that events HEC rejects for good are appended to (JSON lines, with the reason)."
        case .hecCAFile: return "PEM file of the CA that signed HEC's certificate (a private CA)."
        case .hecInsecureSkipVerify: return "Do not verify HEC's TLS certificate (logs a warning; for tests only)."
        case .splunkSourcetype: return "The events' sourcetype."
        case .splunkSource: return "The events' source."
        case .splunkHost: return "The events' host."
        case .splunkIndex: return "The events' index (must be allowed for the token)."
        case .shutdownTimeout: return "Bound on draining and flushing at SIGINT/SIGTERM."
        case .statsInterval: return "How often statistics are logged (0: only at exit)."
        case .logLevel: return "debug, info, warn or error. Logs go to stderr."
        case .adminListen: return "Admin API address, HOST:PORT (/healthz, /readyz, /metrics, /stats, /v1/resolve, /v1/connections); empty: off."
        case .adminClientTTL: return "A /v1/connections client that has not fetched for this long is forgotten with its pending deltas."
        case .resolutionMapSize: return "Addresses the DNS resolution map holds; past it the least recently seen is evicted (0: map off)."
        case .resolutionTTLMin: return "Shortest time an address stays mapped, whatever its TTL."
        case .resolutionTTLMax: return "Longest time an address stays mapped, whatever its TTL."
        }
    }

    /// One line for `--help`: the summary, the environment variable(s) and the default.
    public var helpText: String {
        "\(summary) (env \(environmentNames.joined(separator: ", ")); default \(defaultDescription))"
    }
}
