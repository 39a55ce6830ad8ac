#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import Synchronization

public enum ConnectionTransport: String, Sendable {
    case unix
    case tcp
    /// TCP with TLS (`-tls-cert-file`).
    case tls
    /// PowerDNS protobuf logging over TCP (`-pdns-listen`).
    case pdns

    var isNetwork: Bool { self != .unix }
}

/// One tracked connection. Counters are atomics updated by the connection's own task; the
/// registry and the sweeper read them.
public final class ConnectionRecord: Sendable {
    public let id: UInt64
    public let peer: String
    public let transport: ConnectionTransport
    /// The peer's IP address (TCP and TLS only).
    public let peerAddress: String?
    /// Wall-clock start, microseconds since the epoch.
    public let startedAtMicros: Int64
    public let startedAt: NIODeadline
    let channel: any Channel
    private let lastActivityNanos: Atomic<Int64>
    public let frames = Atomic<Int>(0)
    public let bytes = Atomic<Int>(0)
    public let decodeErrors = Atomic<Int>(0)
    private let handshakeDone = Atomic<Bool>(false)
    private let waitingForRoom = Atomic<Bool>(false)
    private let requestedClose = Locked<CloseReason?>(nil)
    private let senderName = Locked<String?>(nil)
    private let tlsRefusal = Locked<(reason: RefusalReason, detail: String)?>(nil)

    init(id: UInt64, peer: String, transport: ConnectionTransport, channel: any Channel, now: NIODeadline = .now()) {
        self.id = id
        self.peer = peer
        self.transport = transport
        self.peerAddress = transport.isNetwork ? channel.remoteAddress?.ipAddress : nil
        self.channel = channel
        self.startedAt = now
        self.startedAtMicros = WallClock.nowMicros()
        self.lastActivityNanos = Atomic(now.uptimeNanoseconds.clampedInt64)
    }

    public var lastActivity: NIODeadline { .uptimeNanoseconds(UInt64(lastActivityNanos.load(ordering: .relaxed))) }
    /// Wall-clock time of the last whole frame received, microseconds since the epoch.
    public var lastActivityMicros: Int64 { startedAtMicros + (lastActivity - startedAt).nanoseconds / 1000 }
    public var isHandshakeComplete: Bool { handshakeDone.load(ordering: .relaxed) }
    /// Whether the connection is parked because the buffer is full (not idle: held back by us).
    public var isWaitingForRoom: Bool { waitingForRoom.load(ordering: .relaxed) }
    public var closeRequest: CloseReason? { requestedClose.withLock { $0 } }
    /// Who sent the stream, as far as the forwarder can vouch: with mutual TLS the verified
    /// certificate's name, on TCP the peer address, on the unix socket the peer's `uid=N`. Nil
    /// until known (a TLS connection before its handshake).
    public var sender: String? { senderName.withLock { $0 } }
    /// Set when the TLS handshake failed: the refusal and BoringSSL's reason.
    public var refusal: (reason: RefusalReason, detail: String)? { tlsRefusal.withLock { $0 } }

    func setSender(_ name: String) { senderName.withLock { $0 = name } }
    func noteRefused(_ reason: RefusalReason, detail: String) { tlsRefusal.withLock { $0 = $0 ?? (reason, detail) } }

    func noteReceived(bytes count: Int) {
        bytes.add(count, ordering: .relaxed)
    }

    /// A whole frame arrived. Only frames count as activity for the idle timeout: a peer that
    /// trickles bytes without ever completing a frame is idle, and does not keep its slot.
    func noteActivity(now: NIODeadline = .now()) {
        lastActivityNanos.store(now.uptimeNanoseconds.clampedInt64, ordering: .relaxed)
    }

    func noteHandshakeComplete() { handshakeDone.store(true, ordering: .relaxed) }
    func setWaitingForRoom(_ waiting: Bool) { waitingForRoom.store(waiting, ordering: .relaxed) }

    /// Asks the connection to close for `reason` (the first reason wins).
    func requestClose(_ reason: CloseReason) {
        let first = requestedClose.withLock { current -> Bool in
            guard current == nil else { return false }
            current = reason
            return true
        }
        if first { channel.close(promise: nil) }
    }
}

/// The atomic connection cap and the set of open connections.
public final class ConnectionRegistry: Sendable {
    public let maxConnections: Int
    /// `-max-connections-per-peer` (nil: no cap per address).
    public let maxPerPeer: Int?
    private let activeCount = Atomic<Int>(0)
    /// Open connections (and reservations) by peer address, when there is a cap per peer.
    private let perPeer = Locked<[String: Int]>([:])
    private let nextID = Atomic<UInt64>(0)
    private let records = Locked<[UInt64: ConnectionRecord]>([:])
    private let drainWaiters = Locked<[(atMost: Int, continuation: CheckedContinuation<Void, Never>)]>([])

    /// Told of every connection that closes (for `/v1/connections`).
    private let activity: ConnectionActivityTracker?

    public init(maxConnections: Int, maxPerPeer: Int? = nil, activity: ConnectionActivityTracker? = nil) {
        self.maxConnections = maxConnections
        self.maxPerPeer = maxPerPeer
        self.activity = activity
    }

    public var active: Int { activeCount.load(ordering: .relaxed) }

    /// Takes a slot if one is free. Lock-free: the cap holds under any number of accepting loops.
    func tryReserve() -> Bool {
        var current = activeCount.load(ordering: .relaxed)
        while current < maxConnections {
            let (exchanged, original) = activeCount.compareExchange(
                expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func releaseReservation() {
        activeCount.subtract(1, ordering: .acquiringAndReleasing)
    }

    /// Takes one of `address`'s slots under `-max-connections-per-peer`; true without that cap.
    func tryReservePeer(_ address: String?) -> Bool {
        guard let limit = maxPerPeer, let address else { return true }
        return perPeer.withLock { counts in
            let open = counts[address, default: 0]
            guard open < limit else { return false }
            counts[address] = open + 1
            return true
        }
    }

    func releasePeer(_ address: String?) {
        guard maxPerPeer != nil, let address else { return }
        perPeer.withLock { counts in
            let left = counts[address, default: 1] - 1
            counts[address] = left > 0 ? left : nil
        }
    }

    /// Open connections of one address (counted only with a cap per peer).
    public func openConnections(from address: String) -> Int { perPeer.withLock { $0[address, default: 0] } }

    func open(peer: String, transport: ConnectionTransport, channel: any Channel) -> ConnectionRecord {
        let id = nextID.add(1, ordering: .relaxed).newValue
        let record = ConnectionRecord(id: id, peer: peer, transport: transport, channel: channel)
        records.withLock { $0[id] = record }
        return record
    }

    /// Forgets a connection and frees its slot.
    func close(_ record: ConnectionRecord, reason: CloseReason) {
        let removed = records.withLock { $0.removeValue(forKey: record.id) }
        if removed != nil {
            releaseReservation()
            releasePeer(record.peerAddress)
            activity?.connectionClosed(ConnectionSnapshot(record, closedReason: reason))
        }
        let open = active
        let ready = drainWaiters.withLock { waiters in
            let ready = waiters.filter { open <= $0.atMost }.map(\.continuation)
            waiters.removeAll { open <= $0.atMost }
            return ready
        }
        for waiter in ready { waiter.resume() }
    }

    /// Returns once at most `count` connections are open (each closed one fully accounted for).
    public func waitUntilActive(atMost count: Int) async {
        await withCheckedContinuation { continuation in
            let done = drainWaiters.withLock { waiters -> Bool in
                if active <= count { return true }
                waiters.append((count, continuation))
                return false
            }
            if done { continuation.resume() }
        }
    }

    public func snapshot() -> [ConnectionRecord] {
        records.withLock { Array($0.values) }.sorted { $0.id < $1.id }
    }
}

extension UInt64 {
    var clampedInt64: Int64 { Int64(clamping: self) }
}
