import Metrics
import ServiceLifecycle
import Synchronization

/// One name an address was the answer for.
public struct ResolvedName: Sendable, Equatable {
    /// The queried name (lowercased).
    public var name: String
    /// The CNAME targets followed from `name` (empty without CNAMEs: no allocation for most entries).
    public var targets: [String]
    /// Microseconds since the epoch.
    public var expiresAtMicros: Int64
    public var lastSeenMicros: Int64

    /// From the queried name to the name that owns the address.
    public var chain: [String] { [name] + targets }
    public var canonicalName: String { targets.last ?? name }
}

/// How the map is bounded.
public struct ResolutionMapSettings: Sendable, Equatable {
    /// Addresses held at most (0 turns the map off); past it the least recently seen is evicted.
    public var capacity: Int = 100_000
    /// An entry lives at least this long, whatever its TTL (TTL 0 answers stay useful for a while).
    public var ttlFloor: Duration = .seconds(60)
    /// And at most this long.
    public var ttlCeiling: Duration = .seconds(86_400)
    /// Names kept per address; past it the one expiring first is dropped.
    public var namesPerAddress: Int = 8

    public init() {}
}

/// The DNS resolution map: IP address → the names it was resolved from, each expiring by its TTL.
///
/// Bounded by address count with least-recently-seen eviction, swept for expired entries. Split
/// into shards, each under its own lock, so connections recording at once rarely meet; a
/// connection records the observations of a whole read under one lock acquisition per shard hit.
public final class ResolutionMap: Sendable {
    public let settings: ResolutionMapSettings
    private let shards: [ShardBox]
    private let clock: @Sendable () -> Int64
    /// The responses already recorded this second, for every connection's encoders.
    public let recentResponses: RecentResponses

    private let hitCount = Atomic<Int>(0)
    private let missCount = Atomic<Int>(0)
    private let insertCount = Atomic<Int>(0)
    private let evictionCount = Atomic<Int>(0)
    private let expiryCount = Atomic<Int>(0)
    private let ignoredCount = Atomic<Int>(0)
    private let metrics: MapMetrics

    static let shardCount = 16

    private struct MapMetrics {
        let hits, misses, insertions, evictions, expirations, ignored: Counter

        init(_ factory: any MetricsFactory) {
            hits = Counter(label: "dnstap_resolution_map_lookups_total", dimensions: [("result", "hit")], factory: factory)
            misses = Counter(label: "dnstap_resolution_map_lookups_total", dimensions: [("result", "miss")], factory: factory)
            insertions = Counter(label: "dnstap_resolution_map_insertions_total", factory: factory)
            evictions = Counter(label: "dnstap_resolution_map_evictions_total", factory: factory)
            expirations = Counter(label: "dnstap_resolution_map_expirations_total", factory: factory)
            ignored = Counter(label: "dnstap_resolution_map_ignored_addresses_total", factory: factory)
        }
    }

    /// - Parameters:
    ///   - clock: the current time in microseconds since the epoch (injected by tests).
    ///   - metricsFactory: where the map's counters are also kept.
    public init(
        settings: ResolutionMapSettings, clock: @escaping @Sendable () -> Int64 = WallClock.nowMicros,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance
    ) {
        self.settings = settings
        self.clock = clock
        self.metrics = MapMetrics(metricsFactory)
        let perShard = (settings.capacity + Self.shardCount - 1) / Self.shardCount
        recentResponses = RecentResponses(slots: settings.capacity > 0 ? RecentResponses.defaultSlots : 2)
        shards = (0..<Self.shardCount).map { _ in ShardBox(capacity: perShard) }
    }

    public var isEnabled: Bool { settings.capacity > 0 }

    /// Records what responses said. Observations already expired (by their own time) are skipped.
    public func record(_ observations: [ResolutionObservation]) {
        guard isEnabled, !observations.isEmpty else { return }
        let now = clock()
        let floor = settings.ttlFloor.microseconds
        let ceiling = settings.ttlCeiling.microseconds
        var inserted = 0
        var evicted = 0
        for observation in observations {
            let lifetime = min(max(Int64(observation.ttl) * 1_000_000, floor), ceiling)
            let expires = observation.seenAtMicros + lifetime
            guard expires > now else { continue }
            let outcome = shard(for: observation.address).state.withLock {
                $0.record(observation, expiresAt: expires, now: now, namesPerAddress: settings.namesPerAddress)
            }
            if outcome.inserted { inserted += 1 }
            if outcome.evicted { evicted += 1 }
        }
        if inserted > 0 {
            insertCount.add(inserted, ordering: .relaxed)
            metrics.insertions.increment(by: inserted)
        }
        if evicted > 0 {
            evictionCount.add(evicted, ordering: .relaxed)
            metrics.evictions.increment(by: evicted)
        }
    }

    /// Counts addresses the extractor ignored (not owned by the end of the queried name's chain).
    func noteIgnored(_ count: Int) {
        guard count > 0 else { return }
        ignoredCount.add(count, ordering: .relaxed)
        metrics.ignored.increment(by: count)
    }

    /// The unexpired names of `address`, most recently seen first; nil when none.
    public func lookup(_ address: IPAddressKey) -> [ResolvedName]? {
        let now = clock()
        let names = shard(for: address).state.withLock { $0.names(of: address, now: now) }
        if let names, !names.isEmpty {
            hitCount.add(1, ordering: .relaxed)
            metrics.hits.increment()
            return names.sorted { $0.lastSeenMicros > $1.lastSeenMicros }
        }
        missCount.add(1, ordering: .relaxed)
        metrics.misses.increment()
        return nil
    }

    /// Removes expired names, and addresses left with none. Returns how many addresses went.
    @discardableResult
    public func sweep() -> Int {
        let now = clock()
        var removed = 0
        for shard in shards {
            removed += shard.state.withLock { $0.sweep(now: now) }
        }
        if removed > 0 {
            expiryCount.add(removed, ordering: .relaxed)
            metrics.expirations.increment(by: removed)
        }
        return removed
    }

    public var statistics: Statistics {
        Statistics(
            entries: shards.reduce(0) { total, shard in total + shard.state.withLock { $0.count } },
            capacity: settings.capacity,
            hits: hitCount.load(ordering: .relaxed), misses: missCount.load(ordering: .relaxed),
            insertions: insertCount.load(ordering: .relaxed), evictions: evictionCount.load(ordering: .relaxed),
            expirations: expiryCount.load(ordering: .relaxed), ignoredAddresses: ignoredCount.load(ordering: .relaxed))
    }

    public struct Statistics: Sendable, Equatable {
        public var entries: Int
        public var capacity: Int
        public var hits: Int
        public var misses: Int
        public var insertions: Int
        public var evictions: Int
        public var expirations: Int
        public var ignoredAddresses: Int
    }

    private func shard(for address: IPAddressKey) -> ShardBox {
        // A cheap mix of both words; addresses of one /24 spread over the shards.
        let mixed = (address.low ^ (address.high &* 0x9E37_79B9_7F4A_7C15)) &* 0xBF58_476D_1CE4_E5B9
        return shards[Int(truncatingIfNeeded: mixed >> 60) & (Self.shardCount - 1)]
    }
}

private final class ShardBox: Sendable {
    let state: Locked<ResolutionShard>
    init(capacity: Int) { state = Locked(ResolutionShard(capacity: capacity)) }
}

/// One shard: a dictionary into slots threaded on a least-recently-seen list (index links, no
/// per-node allocation beyond the names).
struct ResolutionShard {
    private struct Node {
        var key: IPAddressKey
        var names: [ResolvedName]
        var previous: Int32
        var next: Int32
    }

    private let capacity: Int
    private var slots: [IPAddressKey: Int32] = [:]
    private var nodes: [Node] = []
    private var free: [Int32] = []
    /// Most recently seen.
    private var head: Int32 = -1
    /// Least recently seen: evicted first.
    private var tail: Int32 = -1

    init(capacity: Int) { self.capacity = max(capacity, 1) }

    var count: Int { slots.count }

    mutating func record(
        _ observation: ResolutionObservation, expiresAt: Int64, now: Int64, namesPerAddress: Int
    ) -> (inserted: Bool, evicted: Bool) {
        if let slot = slots[observation.address] {
            let index = Int(slot)
            // Seen before (the usual case): renew it in place.
            if let existing = nodes[index].names.firstIndex(where: { $0.name == observation.name && $0.targets == observation.targets }) {
                nodes[index].names[existing].expiresAtMicros = expiresAt
                nodes[index].names[existing].lastSeenMicros = now
            } else {
                nodes[index].names.append(
                    ResolvedName(name: observation.name, targets: observation.targets, expiresAtMicros: expiresAt, lastSeenMicros: now))
                if nodes[index].names.count > namesPerAddress,
                   let first = nodes[index].names.indices.min(by: { nodes[index].names[$0].expiresAtMicros < nodes[index].names[$1].expiresAtMicros }) {
                    nodes[index].names.remove(at: first)
                }
            }
            moveToFront(slot)
            return (false, false)
        }
        var evicted = false
        if slots.count >= capacity, tail >= 0 {
            remove(tail)
            evicted = true
        }
        let fresh = ResolvedName(name: observation.name, targets: observation.targets, expiresAtMicros: expiresAt, lastSeenMicros: now)
        let node = Node(key: observation.address, names: [fresh], previous: -1, next: head)
        let slot: Int32
        if let reused = free.popLast() {
            slot = reused
            nodes[Int(slot)] = node
        } else {
            slot = Int32(nodes.count)
            nodes.append(node)
        }
        if head >= 0 { nodes[Int(head)].previous = slot }
        head = slot
        if tail < 0 { tail = slot }
        slots[observation.address] = slot
        return (true, evicted)
    }

    func names(of address: IPAddressKey, now: Int64) -> [ResolvedName]? {
        guard let slot = slots[address] else { return nil }
        return nodes[Int(slot)].names.filter { $0.expiresAtMicros > now }
    }

    mutating func sweep(now: Int64) -> Int {
        var emptied: [Int32] = []
        for slot in slots.values {
            let index = Int(slot)
            nodes[index].names.removeAll { $0.expiresAtMicros <= now }
            if nodes[index].names.isEmpty { emptied.append(slot) }
        }
        for slot in emptied { remove(slot) }
        return emptied.count
    }

    private mutating func remove(_ slot: Int32) {
        unlink(slot)
        let index = Int(slot)
        slots.removeValue(forKey: nodes[index].key)
        nodes[index].names = []
        free.append(slot)
    }

    private mutating func unlink(_ slot: Int32) {
        // The links only: copying the node would retain and release its names.
        let previous = nodes[Int(slot)].previous
        let next = nodes[Int(slot)].next
        if previous >= 0 { nodes[Int(previous)].next = next } else { head = next }
        if next >= 0 { nodes[Int(next)].previous = previous } else { tail = previous }
        nodes[Int(slot)].previous = -1
        nodes[Int(slot)].next = -1
    }

    private mutating func moveToFront(_ slot: Int32) {
        guard head != slot else { return }
        unlink(slot)
        nodes[Int(slot)].next = head
        if head >= 0 { nodes[Int(head)].previous = slot }
        head = slot
        if tail < 0 { tail = slot }
    }
}

extension Duration {
    var microseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }
}

/// Sweeps the map's expired entries every `interval` until the service shuts down.
struct ResolutionMapSweeper: Service {
    let map: ResolutionMap
    let interval: Duration

    func run() async throws {
        await repeatUntilGracefulShutdown(every: map.isEnabled ? interval : nil) { map.sweep() }
    }
}
