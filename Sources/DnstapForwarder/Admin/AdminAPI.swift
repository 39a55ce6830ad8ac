import Foundation
import NIOCore
import NIOHTTP1

/// An answer of the admin API.
public struct AdminResponse: Sendable {
    public var status: HTTPResponseStatus
    public var contentType: String
    public var body: ByteBuffer
    public var headers: [(String, String)] = []

    static func json<Value: Encodable>(_ value: Value, status: HTTPResponseStatus = .ok) -> AdminResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data(#"{"error":"encoding failed"}"#.utf8)
        var body = ByteBuffer(bytes: data)
        body.writeInteger(UInt8(ascii: "\n"))
        return AdminResponse(status: status, contentType: "application/json", body: body)
    }

    static func error(_ status: HTTPResponseStatus, _ message: String) -> AdminResponse {
        json(ErrorBody(error: message, status: Int(status.code)), status: status)
    }

    struct ErrorBody: Encodable {
        var error: String
        var status: Int
    }
}

/// The admin API's routes: plain functions from a request line to a response, over the service's
/// parts (the HTTP server only moves bytes). Shapes are documented in the README ("Admin API").
public struct AdminAPI: Sendable {
    let statistics: ForwarderStatistics
    let registry: ConnectionRegistry
    let buffer: EventBuffer
    let resolutionMap: ResolutionMap
    let activity: ConnectionActivityTracker
    let metrics: PrometheusExporter
    /// Listeners bound and accepting.
    let listening: @Sendable () -> Bool
    let output: @Sendable () -> OutputReadiness
    let startedAtMicros: Int64
    /// `-transactions`' table (nil: off).
    var transactions: TransactionTable? = nil

    public func handle(method: HTTPMethod, uri: String) -> AdminResponse {
        guard method == .GET || method == .HEAD else {
            var response = AdminResponse.error(.methodNotAllowed, "only GET is served")
            response.headers.append(("Allow", "GET, HEAD"))
            return response
        }
        let (path, query) = Self.split(uri)
        switch path {
        case "/healthz":
            return .json(["status": "ok"])
        case "/readyz":
            return readiness()
        case "/metrics":
            return AdminResponse(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics.render())
        case "/stats":
            return .json(StatsBody(self))
        case "/v1/connections":
            return connections(query)
        default:
            if path.hasPrefix("/v1/resolve/") {
                return resolve(String(path.dropFirst("/v1/resolve/".count)))
            }
            return .error(.notFound, "no such endpoint: \(path.prefix(200)) (see README, Admin API)")
        }
    }

    // MARK: - Endpoints

    struct ReadyBody: Encodable {
        var status: String
        var reasons: [String]
    }

    private func readiness() -> AdminResponse {
        var reasons: [String] = []
        if !listening() { reasons.append("dnstap listeners are not accepting (starting or shutting down)") }
        if case .notReady(let why) = output() { reasons.append("output: \(why)") }
        if reasons.isEmpty { return .json(ReadyBody(status: "ready", reasons: [])) }
        return .json(ReadyBody(status: "not_ready", reasons: reasons), status: .serviceUnavailable)
    }

    struct ResolveBody: Encodable {
        struct Name: Encodable {
            var name: String
            var canonical_name: String
            var chain: [String]
            var expires_at: String
            var last_seen: String
        }

        var address: String
        var names: [Name]
    }

    private func resolve(_ text: String) -> AdminResponse {
        let decoded = text.removingPercentEncoding ?? text
        guard let address = IPAddressKey(decoded) else {
            return .error(.badRequest, "not an IPv4 or IPv6 address: \(decoded.prefix(100))")
        }
        guard resolutionMap.isEnabled else { return .error(.notFound, "the resolution map is off (-resolution-map-size 0)") }
        guard let names = resolutionMap.lookup(address) else {
            return .error(.notFound, "no unexpired answer for \(address) has been seen")
        }
        return .json(ResolveBody(address: address.description, names: names.map {
            .init(name: $0.name, canonical_name: $0.canonicalName, chain: $0.chain,
                  expires_at: RFC3339.string(micros: $0.expiresAtMicros), last_seen: RFC3339.string(micros: $0.lastSeenMicros))
        }))
    }

    struct ConnectionsBody: Encodable {
        struct Counts: Encodable {
            var frames: Int
            var bytes: Int
            var decode_errors: Int
        }

        struct Connection: Encodable {
            var id: UInt64
            var state: String
            var peer: String
            var sender: String?
            var peer_names: [String]
            var transport: String
            var started_at: String
            var last_activity: String
            var duration_seconds: Double
            var handshake_complete: Bool
            var frames: Int
            var bytes: Int
            var decode_errors: Int
            var delta: Counts
            var closed_at: String?
            var close_reason: String?
        }

        var client_id: String
        var previous_fetch: String?
        var fetched_at: String
        var active: [Connection]
        var closed: [Connection]
        var closed_not_kept: Int
    }

    private func connections(_ query: [String: String]) -> AdminResponse {
        guard let clientID = query["client_id"], !clientID.isEmpty else {
            return .error(.badRequest, "client_id is required: /v1/connections?client_id=ID")
        }
        guard clientID.utf8.count <= 128, clientID.utf8.allSatisfy({ Self.clientIDCharacters.contains($0) }) else {
            return .error(.badRequest, "client_id must be 1 to 128 characters of A-Z a-z 0-9 . _ -")
        }
        let report = activity.fetch(clientID: clientID) { registry.snapshot().map { ConnectionSnapshot($0) } }
        var names: [String: [String]] = [:]
        func peerNames(_ address: String?) -> [String] {
            guard let address, resolutionMap.isEnabled, let key = IPAddressKey(address) else { return [] }
            if let known = names[address] { return known }
            let found = resolutionMap.lookup(key)?.map(\.name) ?? []
            names[address] = found
            return found
        }
        func body(_ entry: ConnectionActivityReport.Entry) -> ConnectionsBody.Connection {
            let connection = entry.connection
            let end = connection.closedAtMicros ?? report.fetchedAtMicros
            return .init(
                id: connection.id, state: connection.closedAtMicros == nil ? "open" : "closed", peer: connection.peer,
                sender: connection.sender,
                peer_names: peerNames(connection.peerAddress), transport: connection.transport.rawValue,
                started_at: RFC3339.string(micros: connection.startedAtMicros),
                last_activity: RFC3339.string(micros: connection.lastActivityMicros),
                duration_seconds: Double(max(0, end - connection.startedAtMicros) / 1000) / 1000,
                handshake_complete: connection.handshakeComplete, frames: connection.counts.frames,
                bytes: connection.counts.bytes, decode_errors: connection.counts.decodeErrors,
                delta: .init(frames: entry.delta.frames, bytes: entry.delta.bytes, decode_errors: entry.delta.decodeErrors),
                closed_at: connection.closedAtMicros.map { RFC3339.string(micros: $0) },
                close_reason: connection.closeReason?.rawValue)
        }
        return .json(ConnectionsBody(
            client_id: clientID, previous_fetch: report.previousFetchMicros.map { RFC3339.string(micros: $0) },
            fetched_at: RFC3339.string(micros: report.fetchedAtMicros), active: report.active.map(body),
            closed: report.closed.map(body), closed_not_kept: report.closedNotKept))
    }

    private static let clientIDCharacters = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-".utf8)

    /// Splits a request target into its path and its (percent-decoded) query parameters.
    static func split(_ uri: String) -> (path: String, query: [String: String]) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard let key = parts.first.flatMap({ String($0).removingPercentEncoding }) else { continue }
            let value = parts.count > 1 ? String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding : ""
            query[key] = value ?? ""
        }
        return (String(uri[..<mark]), query)
    }
}

/// `/stats`: the statistics as JSON (the brief's "Connection Statistics").
struct StatsBody: Encodable {
    struct Connections: Encodable {
        var active: Int
        var max: Int
        var accepted: Int
        var rejected: Int
        var rejected_by_reason: [String: Int]
        var accept_errors: Int
        var closed: [String: Int]
    }

    /// The open connections by sender (README, "Securing the TCP listener").
    struct Sender: Encodable {
        var sender: String
        var transport: String
        var connections: Int
        var frames: Int
        var bytes: Int
    }

    struct DecodeErrors: Encodable {
        var protobuf: Int
        var oversized_frame: Int
        var unknown_control: Int
        var truncated_message: Int
    }

    struct Events: Encodable {
        var queued: Int
        var out: Int
        var dropped: [String: Int]
        /// Left out on purpose by the filters (not a loss).
        var filtered: [String: Int]
        var output_retries: Int
        var spooled: Int
        var spool_pending: Int
    }

    struct Buffer: Encodable {
        var fill: Int
        var capacity: Int
        var full_pauses: Int
    }

    struct Map: Encodable {
        var entries: Int
        var capacity: Int
        var hits: Int
        var misses: Int
        var insertions: Int
        var evictions: Int
        var expirations: Int
        var ignored_addresses: Int
    }

    struct Transactions: Encodable {
        var enabled: Bool
        var pending: Int
        var capacity: Int
        /// By outcome: joined, unanswered, evicted, superseded, unmatched_response.
        var outcomes: [String: Int]
    }

    var started_at: String
    var uptime_seconds: Double
    var connections: Connections
    var senders: [Sender]
    var frames: Int
    var bytes: Int
    var decode_errors: DecodeErrors
    var events: Events
    var buffer: Buffer
    var resolution_map: Map
    var transactions: Transactions

    init(_ api: AdminAPI) {
        let statistics = api.statistics
        let now = WallClock.nowMicros()
        started_at = RFC3339.string(micros: api.startedAtMicros)
        uptime_seconds = Double((now - api.startedAtMicros) / 1000) / 1000
        connections = Connections(
            active: api.registry.active, max: api.registry.maxConnections,
            accepted: statistics.connectionsAccepted.load(ordering: .relaxed),
            rejected: statistics.connectionsRejected.load(ordering: .relaxed),
            rejected_by_reason: Dictionary(uniqueKeysWithValues: RefusalReason.allCases.map {
                ($0.rawValue, statistics.rejectedByReason[$0] ?? 0)
            }),
            accept_errors: statistics.acceptErrors.load(ordering: .relaxed),
            closed: Dictionary(uniqueKeysWithValues: CloseReason.allCases.map { ($0.rawValue, statistics.closedByReason[$0] ?? 0) }))
        var senders: [String: Sender] = [:]
        for record in api.registry.snapshot() {
            guard let name = record.sender else { continue }
            let key = record.transport.rawValue + " " + name
            var entry = senders[key] ?? Sender(sender: name, transport: record.transport.rawValue, connections: 0, frames: 0, bytes: 0)
            entry.connections += 1
            entry.frames += record.frames.load(ordering: .relaxed)
            entry.bytes += record.bytes.load(ordering: .relaxed)
            senders[key] = entry
        }
        self.senders = senders.values.sorted { ($0.sender, $0.transport) < ($1.sender, $1.transport) }
        frames = statistics.frames.load(ordering: .relaxed)
        bytes = statistics.bytes.load(ordering: .relaxed)
        decode_errors = DecodeErrors(
            protobuf: statistics.protobufErrors.load(ordering: .relaxed),
            oversized_frame: statistics.oversizedFrames.load(ordering: .relaxed),
            unknown_control: statistics.unknownControlFrames.load(ordering: .relaxed),
            truncated_message: statistics.truncatedMessages.load(ordering: .relaxed))
        let dropped = statistics.droppedByReason
        let filtered = statistics.filteredByReason
        events = Events(
            queued: statistics.eventsQueued.load(ordering: .relaxed), out: statistics.eventsOut.load(ordering: .relaxed),
            dropped: Dictionary(uniqueKeysWithValues: DropReason.allCases.map { ($0.rawValue, dropped[$0] ?? 0) }),
            filtered: Dictionary(uniqueKeysWithValues: FilterReason.allCases.map { ($0.rawValue, filtered[$0] ?? 0) }),
            output_retries: statistics.outputRetries.load(ordering: .relaxed), spooled: statistics.spooledTotal,
            spool_pending: statistics.spoolPending)
        buffer = Buffer(
            fill: api.buffer.fill, capacity: api.buffer.capacity,
            full_pauses: api.statistics.bufferFullPauses.load(ordering: .relaxed))
        let outcomes = statistics.transactionsByOutcome
        transactions = Transactions(
            enabled: api.transactions != nil, pending: api.transactions?.pending ?? 0,
            capacity: api.transactions?.settings.tableSize ?? 0,
            outcomes: Dictionary(uniqueKeysWithValues: TransactionOutcome.allCases.map { ($0.rawValue, outcomes[$0] ?? 0) }))
        let map = api.resolutionMap.statistics
        resolution_map = Map(
            entries: map.entries, capacity: map.capacity, hits: map.hits, misses: map.misses, insertions: map.insertions,
            evictions: map.evictions, expirations: map.expirations, ignored_addresses: map.ignoredAddresses)
    }
}
