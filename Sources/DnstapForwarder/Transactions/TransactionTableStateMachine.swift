import NIOCore

/// The pending queries of `-transactions` (README, "Transactions"): each query held until its
/// response takes it, its timeout passes, or room is needed. Pure: no I/O, no clock of its own
/// (the time comes in as `now`), tested without either.
///
/// Bounded by `capacity`: holding a query when full releases the oldest one. The order of expiry
/// is the order of holding (every entry has the same timeout), kept in a FIFO of (sequence, key);
/// an entry taken by its response leaves its FIFO slot behind. Those slots are dropped from the
/// front when the oldest entry is taken and by `expire`, and the FIFO is compacted whenever they
/// outnumber the entries held (plus 64):
/// at most about twice as many slots as entries, at an amortised constant cost a query. (A slot
/// holds its key: left to pile up behind one long-waiting query, they were most of the table's
/// memory.)
public struct TransactionTableStateMachine<Key: Hashable, Value> {
    public let capacity: Int
    public let timeout: TimeAmount

    private struct Entry {
        var value: Value
        var sequence: UInt64
        var deadline: NIODeadline
    }
    private var entries: [Key: Entry] = [:]
    private var order = CircularBuffer<(sequence: UInt64, key: Key)>()
    private var nextSequence: UInt64 = 0

    /// Why a held query left the table without its response.
    public enum Release: Equatable, Sendable {
        /// Its timeout passed.
        case timedOut
        /// The table was full and it was the oldest.
        case evicted
        /// A query with the same key came (a retransmission); the newer one is held.
        case superseded
        /// The shutdown: every pending query goes out.
        case drained
    }

    public init(capacity: Int, timeout: TimeAmount) {
        precondition(capacity > 0, "a transaction table holds at least one query")
        self.capacity = capacity
        self.timeout = timeout
        // Not reserved up front: a table sized for its bound spreads the few queries usually in
        // flight over megabytes, and every hold and take would miss the cache. It grows (and
        // stays) as large as the queries held at once.
    }

    public var count: Int { entries.count }

    /// The FIFO's slots, taken ones included (tests: at most twice the entries, plus 65).
    public var queuedSlots: Int { order.count }

    /// Holds a query until `now + timeout`. Returns what had to leave for it: the entry it
    /// supersedes (same key) and, when the table was full, the oldest.
    public mutating func hold(_ key: Key, _ value: Value, now: NIODeadline) -> [(Value, Release)] {
        var released: [(Value, Release)] = []
        let sequence = nextSequence
        nextSequence &+= 1
        // One lookup: the new entry replaces a held one with its key, or is added (and then, over
        // the bound, the oldest leaves; the new one is not in the FIFO yet).
        if let old = entries.updateValue(Entry(value: value, sequence: sequence, deadline: now + timeout), forKey: key) {
            released.append((old.value, .superseded))
        } else if entries.count > capacity, let oldest = popOldest() {
            released.append((oldest, .evicted))
        }
        order.append((sequence, key))
        if order.count > 2 * entries.count + 64 { compact() }
        return released
    }

    /// The response's query, if it is held: it leaves the table.
    public mutating func take(_ key: Key) -> Value? {
        guard let entry = entries.removeValue(forKey: key) else { return nil }
        // Responses come mostly in the order of their queries: when this one was the oldest, its
        // slot and the taken ones behind it leave the FIFO now (each slot once), so compaction is
        // left for the slots behind a query that waits long.
        if order.first?.sequence == entry.sequence {
            order.removeFirst()
            while let first = order.first, entries[first.key]?.sequence != first.sequence { order.removeFirst() }
        }
        return entry.value
    }

    /// The queries whose timeout has passed at `now`, oldest first.
    public mutating func expire(now: NIODeadline) -> [Value] {
        var expired: [Value] = []
        while let first = order.first {
            guard let entry = entries[first.key], entry.sequence == first.sequence else {
                order.removeFirst()  // taken by its response, or superseded
                continue
            }
            guard entry.deadline <= now else { break }
            order.removeFirst()
            entries.removeValue(forKey: first.key)
            expired.append(entry.value)
        }
        return expired
    }

    /// Every held query, oldest first; the table is empty afterwards.
    public mutating func drain() -> [Value] {
        var all: [Value] = []
        all.reserveCapacity(entries.count)
        while let oldest = popOldest() { all.append(oldest) }
        order.removeAll()
        return all
    }

    private mutating func popOldest() -> Value? {
        while let first = order.popFirst() {
            if let entry = entries[first.key], entry.sequence == first.sequence {
                entries.removeValue(forKey: first.key)
                return entry.value
            }
        }
        return nil
    }

    /// Drops the FIFO slots of entries no longer held.
    private mutating func compact() {
        var kept = CircularBuffer<(sequence: UInt64, key: Key)>(initialCapacity: max(16, entries.count + 64))
        for slot in order where entries[slot.key]?.sequence == slot.sequence { kept.append(slot) }
        order = kept
    }
}
