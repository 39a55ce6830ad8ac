/// Settings of the Splunk HEC output.
public struct HECSettings: Equatable, Sendable {
    public var gzip = true
    /// zlib level: levels 1-3 use zlib's fast deflate (about 650 MB/s on JSON events here, 22x at 3);
    /// zlib's default 6 is about 260 MB/s for 27x, and was half of the forwarder's CPU sending to HEC.
    public var gzipLevel = 3
    public var maxBatchBytes = 1 << 20
    public var requestTimeout: Duration = .seconds(30)
    public var connectTimeout: Duration = .seconds(5)
    public var retryInitialDelay: Duration = .seconds(1)
    public var retryMaxDelay: Duration = .seconds(60)
    public var maxInFlight = 4
    /// The durable buffer's directory (nil: events waiting for HEC live only in memory).
    public var spoolPath: String?
    public var spoolMaxBytes = 1 << 30
    /// How often the spool is fsynced (zero: every batch, before it counts as accepted).
    public var spoolFsyncInterval: Duration = .seconds(1)
    /// Indexer acknowledgement: a request counts as delivered only once HEC acknowledges it.
    public var acknowledgements = false
    public var ackPollInterval: Duration = .seconds(10)
    public var ackTimeout: Duration = .seconds(300)
    /// nil: events HEC rejects for good are only counted and logged.
    public var deadLetterPath: String?
    public var caFile: String?
    public var insecureSkipVerify = false
    public var sourcetype = "dnstap"
    public var source = "dnstap-forwarder"
    /// nil: the machine's hostname.
    public var host: String?
    /// nil: the token's default index.
    public var index: String?
    /// Consecutive failed requests after which the circuit opens and HEC's health endpoint is
    /// probed until it answers healthy.
    public var circuitBreakerThreshold = 5

    public init() {}
}

/// The HEC URLs: where events are posted, and the health endpoint.
public struct HECEndpoint: Equatable, Sendable {
    /// scheme://host[:port]
    public let base: String
    /// The events path: as given, or /services/collector/event for a bare host.
    public let eventPath: String

    public var eventURL: String { base + eventPath }
    public var healthURL: String { base + "/services/collector/health" }

    /// `-hec-url`: one URL, or several separated by commas (each endpoint once).
    public static func list(_ urls: String) throws -> [HECEndpoint] {
        let items = urls.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmingSpaces() }
        guard !items.contains(where: \.isEmpty) else {
            throw ConfigurationError.invalidValue(.hecURL, urls, "an empty item in the comma-separated list")
        }
        let endpoints = try items.map { try HECEndpoint($0) }
        var seen = Set<String>()
        for endpoint in endpoints where !seen.insert(endpoint.eventURL).inserted {
            throw ConfigurationError.invalidValue(.hecURL, urls, "\(endpoint.eventURL) is listed twice")
        }
        return endpoints
    }

    public init(_ url: String) throws {
        let trimmed = url.trimmingSpaces()
        guard let schemeEnd = trimmed.range(of: "://"),
            ["http", "https"].contains(trimmed[..<schemeEnd.lowerBound].lowercased())
        else {
            throw ConfigurationError.invalidValue(.hecURL, url, "expected an http:// or https:// URL")
        }
        let rest = trimmed[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        guard authorityEnd > rest.startIndex else {
            throw ConfigurationError.invalidValue(.hecURL, url, "the URL has no host")
        }
        base = String(trimmed[..<authorityEnd])
        var path = String(rest[authorityEnd...])
        while path.hasSuffix("/") { path.removeLast() }
        eventPath = path.isEmpty ? "/services/collector/event" : path
    }
}
