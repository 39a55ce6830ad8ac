import NIOCore

/// A connection's counters at one moment, open or closed.
public struct ConnectionSnapshot: Sendable, Equatable {
    public var id: UInt64
    public var peer: String
    public var peerAddress: String?
    public var sender: String?
    public var transport: ConnectionTransport
    public var startedAtMicros: Int64
    public var lastActivityMicros: Int64
    public var handshakeComplete: Bool
    public var counts: ConnectionCounts
    /// Set once the connection has closed.
    public var closedAtMicros: Int64?
    public var closeReason: CloseReason?

    init(_ record: ConnectionRecord, closedReason: CloseReason? = nil) {
        id = record.id
        peer = record.peer
        peerAddress = record.peerAddress
        sender = record.sender
        transport = record.transport
        startedAtMicros = record.startedAtMicros
        lastActivityMicros = record.lastActivityMicros
        handshakeComplete = record.isHandshakeComplete
        counts = ConnectionCounts(
            frames: record.frames.load(ordering: .relaxed), bytes: record.bytes.load(ordering: .relaxed),
            decodeErrors: record.decodeErrors.load(ordering: .relaxed))
        if let closedReason {
            closedAtMicros = WallClock.nowMicros()
            closeReason = closedReason
        }
    }
}

public struct ConnectionCounts: Sendable, Equatable {
    public var frames = 0
    public var bytes = 0
    public var decodeErrors = 0

    static func - (lhs: ConnectionCounts, rhs: ConnectionCounts) -> ConnectionCounts {
        ConnectionCounts(frames: lhs.frames - rhs.frames, bytes: lhs.bytes - rhs.bytes, decodeErrors: lhs.decodeErrors - rhs.decodeErrors)
    }
}

/// What one client's fetch of `/v1/connections` returns.
public struct ConnectionActivityReport: Sendable {
    public struct Entry: Sendable {
        public var connection: ConnectionSnapshot
        /// Counted since this client's previous fetch (since the connection opened on its first).
        public var delta: ConnectionCounts
    }

    public var clientID: String
    /// The previous fetch by this client (nil on its first, or after it expired).
    public var previousFetchMicros: Int64?
    public var fetchedAtMicros: Int64
    public var active: [Entry]
    public var closed: [Entry]
    /// Closed connections not kept for this client because its list was full.
    public var closedNotKept: Int
}

/// The brief's "Managing Active Connections" flow for the dnstap connections: each polling client
/// gets, under one lock, the open connections and those closed since its last fetch, each with
/// the frames, bytes and errors counted since that fetch. Two clients polling at different rates
/// each see complete, non-overlapping deltas. Clients that stop polling are forgotten.
public final class ConnectionActivityTracker: Sendable {
    public struct Settings: Sendable, Equatable {
        /// A client not fetching for this long is forgotten with what was kept for it.
        public var clientTTL: Duration = .seconds(120)
        /// Closed connections kept per client between its fetches.
        public var maxClosedPerClient = 1000
        /// Clients tracked at once; past it the one that fetched least recently is forgotten.
        public var maxClients = 256

        public init() {}
    }

    private struct Client {
        var lastFetchNanos: UInt64
        var lastFetchMicros: Int64
        /// Counts each connection had at this client's previous fetch.
        var baselines: [UInt64: ConnectionCounts] = [:]
        var closed: [ConnectionSnapshot] = []
        var closedNotKept = 0
    }

    public let settings: Settings
    private let clients = Locked<[String: Client]>([:])
    private let monotonicNanos: @Sendable () -> UInt64

    /// - Parameter monotonicNanos: a monotonic clock (injected by tests to expire clients).
    public init(settings: Settings = Settings(), monotonicNanos: @escaping @Sendable () -> UInt64 = { NIODeadline.now().uptimeNanoseconds }) {
        self.settings = settings
        self.monotonicNanos = monotonicNanos
    }

    public var clientCount: Int { clients.withLock { $0.count } }

    /// Keeps a closed connection for every client, until each fetches it.
    func connectionClosed(_ snapshot: ConnectionSnapshot) {
        let limit = settings.maxClosedPerClient
        clients.withLock { clients in
            for key in clients.keys {
                clients[key]!.closed.append(snapshot)
                if clients[key]!.closed.count > limit {
                    let dropped = clients[key]!.closed.removeFirst()
                    clients[key]!.baselines.removeValue(forKey: dropped.id)
                    clients[key]!.closedNotKept += 1
                }
            }
        }
    }

    /// One client's fetch. `open` is read inside the lock, so a connection closing meanwhile is
    /// seen either open now or closed at the next fetch, never both and never neither.
    public func fetch(clientID: String, open: () -> [ConnectionSnapshot]) -> ConnectionActivityReport {
        let now = monotonicNanos()
        let nowMicros = WallClock.nowMicros()
        let ttl = UInt64(settings.clientTTL.microseconds) * 1000
        return clients.withLock { clients in
            clients = clients.filter { now - $0.value.lastFetchNanos < ttl }
            var client = clients[clientID] ?? Client(lastFetchNanos: now, lastFetchMicros: 0)
            let previous = clients[clientID]?.lastFetchMicros
            if clients[clientID] == nil, clients.count >= settings.maxClients,
               let oldest = clients.min(by: { $0.value.lastFetchNanos < $1.value.lastFetchNanos })?.key {
                clients.removeValue(forKey: oldest)
            }
            let openNow = open()
            var active: [ConnectionActivityReport.Entry] = []
            var baselines: [UInt64: ConnectionCounts] = [:]
            for connection in openNow {
                let base = client.baselines[connection.id] ?? ConnectionCounts()
                active.append(.init(connection: connection, delta: connection.counts - base))
                baselines[connection.id] = connection.counts
            }
            let closed = client.closed.map { connection in
                ConnectionActivityReport.Entry(
                    connection: connection, delta: connection.counts - (client.baselines[connection.id] ?? ConnectionCounts()))
            }
            // A connection that closed after `open()` was read but is not yet in `closed` keeps its
            // baseline, so its next report starts where this one ended.
            let reportedClosed = Set(client.closed.map(\.id))
            for (id, counts) in client.baselines where baselines[id] == nil && !reportedClosed.contains(id) {
                baselines[id] = counts
            }
            let report = ConnectionActivityReport(
                clientID: clientID, previousFetchMicros: previous, fetchedAtMicros: nowMicros, active: active, closed: closed,
                closedNotKept: client.closedNotKept)
            client = Client(lastFetchNanos: now, lastFetchMicros: nowMicros, baselines: baselines)
            clients[clientID] = client
            return report
        }
    }
}
