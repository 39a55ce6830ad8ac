import CDnstapProtobufC
import NIOCore

/// `-transactions`, `-transaction-timeout`, `-transaction-table-size` (README, "Transactions").
public struct TransactionSettings: Equatable, Sendable {
    public var enabled = false
    public var timeout: Duration = .seconds(5)
    public var tableSize = 100_000

    public init() {}
}

/// How a query or response fared in the join (labels `dnstap_transactions_total{outcome}`).
public enum TransactionOutcome: String, CaseIterable, Sendable {
    /// A response took its held query: one event for the two.
    case joined
    /// A query with no response within `-transaction-timeout` (or pending at shutdown): written
    /// with `"unanswered": true`.
    case unanswered
    /// The table was full: the oldest query was written unanswered early.
    case evicted
    /// A second query with the same key (a retransmission) replaced it: the first was written
    /// unanswered.
    case superseded
    /// A response whose query was not held (never seen, or from before the start): written as it is.
    case unmatchedResponse = "unmatched_response"
}

/// What identifies a transaction: the bytes of every matched field, in one array.
///
/// dnstap: the query's message type, the identity, the transport, both addresses and ports, the
/// DNS ID and the question (name lowercased, type, class). PowerDNS: the query's type, the server
/// identity and the `messageId` that PowerDNS gives a query and its response.
///
/// Hashed once, when made, over the bytes as one block: `[UInt8]`'s own hashing feeds the hasher a
/// byte at a time (8.6 % of the forwarder's CPU with `-transactions`), and a key is hashed three
/// times (its shard, the lookup, the insert or removal).
struct TransactionKey: Hashable, Sendable {
    let bytes: [UInt8]
    /// The bytes' hash, computed once (a `Hasher`'s, so seeded per process): the table's shard,
    /// and what `hash(into:)` feeds the dictionary.
    let hash: Int

    /// The key of a dnstap message, or nil when it cannot be joined (no DNS message, no question,
    /// a type that is neither query nor response). The response's key is its query's.
    init?(dnstap: UnsafePointer<Dnstap__Dnstap>, isQuery: Bool, scratch: inout [UInt8]) {
        guard let message = dnstap.pointee.message?.pointee, message.has_type != 0 else { return nil }
        let raw = message.type.rawValue
        guard raw >= 1 && raw <= 14 else { return nil }
        let wire: UnsafeRawBufferPointer
        if isQuery {
            guard message.has_query_message != 0 else { return nil }
            wire = message.query_message.bytes
        } else {
            guard message.has_response_message != 0 else { return nil }
            wire = message.response_message.bytes
        }
        scratch.removeAll(keepingCapacity: true)
        scratch.append(0x01)  // dnstap
        scratch.append(UInt8(isQuery ? raw : raw - 1))
        Self.appendField(dnstap.pointee.has_identity != 0 ? dnstap.pointee.identity.bytes : nil, to: &scratch)
        scratch.append(message.has_socket_protocol != 0 ? UInt8(truncatingIfNeeded: message.socket_protocol.rawValue) : 0)
        Self.appendField(message.has_query_address != 0 ? message.query_address.bytes : nil, to: &scratch)
        Self.appendPort(message.has_query_port != 0 ? message.query_port : nil, to: &scratch)
        Self.appendField(message.has_response_address != 0 ? message.response_address.bytes : nil, to: &scratch)
        Self.appendPort(message.has_response_port != 0 ? message.response_port : nil, to: &scratch)
        guard Self.appendIDAndQuestion(wire, to: &scratch) else { return nil }
        self.init(bytes: scratch)
    }

    /// The key of a PowerDNS message: nil without a `messageId` or for a type that is neither
    /// query nor response.
    init?(powerDNS message: UnsafePointer<PBDNSMessage>, isQuery: Bool, scratch: inout [UInt8]) {
        let fields = message.pointee
        guard fields.has_messageid != 0, fields.messageid.len > 0, fields.has_type != 0 else { return nil }
        let raw = fields.type.rawValue
        guard raw >= 1 && raw <= 4 else { return nil }
        scratch.removeAll(keepingCapacity: true)
        scratch.append(0x02)  // PowerDNS
        scratch.append(UInt8(isQuery ? raw : raw - 1))
        Self.appendField(fields.has_serveridentity != 0 ? fields.serveridentity.bytes : nil, to: &scratch)
        Self.appendField(fields.messageid.bytes, to: &scratch)
        self.init(bytes: scratch)
    }

    /// A key from its bytes (tests build them this way too).
    init(bytes: [UInt8]) {
        self.bytes = bytes
        var hasher = Hasher()
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        hash = hasher.finalize()
    }

    func hash(into hasher: inout Hasher) { hasher.combine(hash) }

    static func == (lhs: TransactionKey, rhs: TransactionKey) -> Bool {
        lhs.hash == rhs.hash && lhs.bytes == rhs.bytes
    }

    /// The key to store: its own right-sized copy. A key built in a scratch array shares that
    /// array's storage, whose capacity only grows (it was 664 bytes for a 60-byte key); a key
    /// only looked up (a response's) keeps sharing it, at no cost.
    func compacted() -> TransactionKey { TransactionKey(bytes: Array(bytes[...]), hash: hash) }

    private init(bytes: [UInt8], hash: Int) {
        self.bytes = bytes
        self.hash = hash
    }

    /// A length-prefixed field (0xFFFF: absent), so that adjacent fields cannot run together.
    private static func appendField(_ field: UnsafeRawBufferPointer?, to key: inout [UInt8]) {
        guard let field else { return key.append(contentsOf: [0xFF, 0xFF]) }
        let length = min(field.count, 0xFFFE)
        key.append(UInt8(length >> 8))
        key.append(UInt8(length & 0xFF))
        key.append(contentsOf: UnsafeRawBufferPointer(rebasing: field[..<length]))
    }

    private static func appendPort(_ port: UInt32?, to key: inout [UInt8]) {
        guard let port else { return key.append(contentsOf: [0xFF, 0xFF, 0xFF]) }
        key.append(0)
        key.append(UInt8(truncatingIfNeeded: port >> 8))
        key.append(UInt8(truncatingIfNeeded: port))
    }

    /// The DNS ID, then the first question as it is on the wire (its name's ASCII letters
    /// lowercased: the case a resolver randomises may differ), its type and class. False when the
    /// message has no whole question.
    private static func appendIDAndQuestion(_ wire: UnsafeRawBufferPointer, to key: inout [UInt8]) -> Bool {
        guard wire.count >= 12, wire[4] != 0 || wire[5] != 0 else { return false }
        var position = 12
        while true {
            guard position < wire.count else { return false }
            let length = Int(wire[position])
            position += 1
            if length == 0 { break }
            // The first name cannot point backwards: a pointer here (or a label over 63) is malformed.
            guard length <= 63, position + length <= wire.count else { return false }
            position += length
        }
        guard position + 4 <= wire.count else { return false }
        key.append(wire[0])
        key.append(wire[1])
        // The name, type and class in one copy; then the name's ASCII capitals lowercased in place
        // (its length bytes, at most 63, are below "A").
        let nameStart = key.count
        key.append(contentsOf: UnsafeRawBufferPointer(rebasing: wire[12..<(position + 4)]))
        key.withUnsafeMutableBufferPointer { bytes in
            for index in nameStart..<(nameStart + position - 12) where bytes[index] >= 0x41 && bytes[index] <= 0x5A {
                bytes[index] |= 0x20
            }
        }
        return true
    }
}

/// A query waiting for its response. A dnstap query is kept as the frame it came in, and its event
/// is rendered only if it goes out unanswered: most queries are answered, and then nothing of the
/// query's own event is written but its time (rendering every query's JSON to throw it away cost
/// more than the join itself, and the frame is a fifth of the JSON's size). A PowerDNS query is
/// kept rendered.
struct HeldQuery: Sendable {
    enum Content: Sendable {
        /// The dnstap frame, with what its event needs besides: when it came and from whom.
        case dnstap(frame: [UInt8], receivedAtMicros: Int64, sender: String?)
        /// The event's JSON up to its closing brace.
        case json([UInt8])
    }
    var content: Content
    var timeMicros: Int64
    /// The `-sample-rate` in force (1: none). A query held whatever the sampling says of its name:
    /// its response decides (an rcode other than NOERROR keeps the transaction), and an unanswered
    /// one is always written, with `sample_rate`.
    var sampleRate: Int

    /// Queries' own events, each marked `"unanswered": true`, in one buffer.
    static func unansweredEvents(_ queries: [HeldQuery], allocator: ByteBufferAllocator) -> [ForwardedEvent] {
        var encoder = DnstapEventEncoder(allocator: allocator)
        for query in queries { encoder.appendUnanswered(query) }
        return encoder.takeEvents()
    }
}

/// The pending queries of every connection (a response may come on another connection from the
/// same resolver): `TransactionTableStateMachine` in shards, each behind its own lock, chosen by
/// the key's hash, so connections on different cores seldom meet on one lock. The bound
/// (`-transaction-table-size`) is shared out among the shards; when a shard is full its oldest
/// query is written early.
public final class TransactionTable: Sendable {
    public let settings: TransactionSettings
    private let shards: [Locked<TransactionTableStateMachine<TransactionKey, HeldQuery>>]

    public init(settings: TransactionSettings) {
        self.settings = settings
        // One shard for a small table, so its bound is exact; 16 for the default.
        let count = settings.tableSize >= 16 * 1024 ? 16 : 1
        let perShard = (settings.tableSize + count - 1) / count
        let timeout = TimeAmount.nanoseconds(settings.timeout.nanosecondsClamped)
        shards = (0..<count).map { _ in Locked(TransactionTableStateMachine(capacity: perShard, timeout: timeout)) }
    }

    private func shard(_ key: TransactionKey) -> Locked<TransactionTableStateMachine<TransactionKey, HeldQuery>> {
        shards.count == 1 ? shards[0] : shards[Int(UInt(bitPattern: key.hash) % UInt(shards.count))]
    }

    /// Holds a query; returns the queries that had to leave for it (to be written unanswered).
    func hold(_ key: TransactionKey, _ query: HeldQuery, now: NIODeadline = .now())
        -> [(HeldQuery, TransactionTableStateMachine<TransactionKey, HeldQuery>.Release)]
    {
        shard(key).withLock { $0.hold(key, query, now: now) }
    }

    /// The held query of a response, taken out of the table.
    func take(_ key: TransactionKey) -> HeldQuery? {
        shard(key).withLock { $0.take(key) }
    }

    /// The queries whose timeout passed, oldest first within each shard.
    func expire(now: NIODeadline = .now()) -> [HeldQuery] {
        shards.flatMap { shard in shard.withLock { $0.expire(now: now) } }
    }

    /// Every pending query (the shutdown).
    func drain() -> [HeldQuery] {
        shards.flatMap { shard in shard.withLock { $0.drain() } }
    }

    /// Queries held now.
    public var pending: Int { shards.reduce(0) { total, shard in total + shard.withLock { $0.count } } }
}
