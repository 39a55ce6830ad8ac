/// What the durable spool holds, as an index with no I/O: for every batch not yet delivered, its
/// sequence number, segment, offset, length and event count. The events themselves stay on disk
/// and are read back when their batch is sent, so memory does not grow with the spool.
///
/// Batches are appended to the current segment (a new one once it would pass `segmentLimit`),
/// handed to the one drainer in order, and committed once delivered; a segment whose batches are
/// all delivered is deleted, unless it is still the one being appended to.
struct SpoolIndex {
    struct Entry: Equatable, Sendable {
        var seq: UInt64
        var segment: UInt64
        var offset: Int
        var length: Int
        var count: Int
    }

    let maxBytes: Int
    let segmentLimit: Int
    /// Undelivered batches, oldest first; the first `handed` are with the drainer.
    private(set) var entries: [Entry] = []
    private var head = 0
    private(set) var handed = 0
    private(set) var nextSeq: UInt64 = 1
    private(set) var committed: UInt64 = 0
    private(set) var pendingBytes: [UInt64: Int] = [:]
    private(set) var current: (id: UInt64, size: Int)?
    private(set) var totalBytes = 0
    private(set) var totalEvents = 0
    private(set) var closed = false

    init(maxBytes: Int, segmentLimit: Int, committed: UInt64 = 0) {
        self.maxBytes = maxBytes
        self.segmentLimit = segmentLimit
        self.committed = committed
        self.nextSeq = committed + 1
    }

    var pending: ArraySlice<Entry> { entries[head...] }
    var pendingBatches: Int { entries.count - head }
    var isEmpty: Bool { pendingBatches == 0 }
    /// At its bound: appends wait (never when empty, so one batch larger than the bound still goes).
    var isFull: Bool { !isEmpty && totalBytes >= maxBytes }
    var isDrained: Bool { closed && isEmpty }

    // MARK: - Recovery

    /// A batch found on disk at start (in segment order, then offset order). Those at or before
    /// the checkpoint were delivered: they only move `nextSeq` on.
    mutating func recovered(_ entry: Entry) {
        nextSeq = max(nextSeq, entry.seq + 1)
        guard entry.seq > committed else { return }
        add(entry)
    }

    /// After recovery: the segments on disk that hold nothing undelivered (to delete).
    func deliveredSegments(among segments: [UInt64]) -> [UInt64] {
        segments.filter { pendingBytes[$0] == nil }
    }

    // MARK: - Appending

    enum AppendPlan: Equatable {
        /// At the bound: wait until a commit makes room.
        case wait
        /// Closed: no more appends.
        case closed
        /// Write the record as `seq` at `offset` of `segment`; `newSegment`: create it first (and
        /// close the one before). `retire`: a segment to delete, all of it delivered.
        case write(seq: UInt64, segment: UInt64, offset: Int, newSegment: Bool, retire: UInt64?)
    }

    mutating func planAppend(recordBytes: Int) -> AppendPlan {
        guard !closed else { return .closed }
        guard !isFull else { return .wait }
        let seq = nextSeq
        nextSeq += 1
        if let segment = current, segment.size == 0 || segment.size + recordBytes <= segmentLimit {
            current = (segment.id, segment.size + recordBytes)
            return .write(seq: seq, segment: segment.id, offset: segment.size, newSegment: false, retire: nil)
        }
        let retire = current.flatMap { pendingBytes[$0.id] == nil ? $0.id : nil }
        current = (seq, recordBytes)
        return .write(seq: seq, segment: seq, offset: 0, newSegment: true, retire: retire)
    }

    /// The planned record is on disk: the drainer may have it.
    mutating func appended(_ entry: Entry) {
        add(entry)
    }

    /// The planned write failed (the writer cut the segment back to `offset`): forget it.
    mutating func appendFailed(segment: UInt64, offset: Int) {
        if current?.id == segment { current = (segment, offset) }
    }

    // MARK: - Draining

    /// The next batch to send, in order.
    mutating func nextToSend() -> Entry? {
        guard head + handed < entries.count else { return nil }
        defer { handed += 1 }
        return entries[head + handed]
    }

    /// The drainer gives its batch back unsent (the shutdown bound): it is handed out again.
    mutating func giveBack() {
        handed = max(0, handed - 1)
    }

    /// `seq`, the oldest batch handed out, was delivered. Returns the segment to delete, if that
    /// batch was the last undelivered one of a segment no longer appended to.
    mutating func commit(_ seq: UInt64) -> UInt64? {
        guard head < entries.count, entries[head].seq == seq, handed > 0 else { return nil }
        let entry = entries[head]
        head += 1
        handed -= 1
        committed = seq
        totalBytes -= entry.length
        totalEvents -= entry.count
        let left = (pendingBytes[entry.segment] ?? 0) - entry.length
        pendingBytes[entry.segment] = left > 0 ? left : nil
        compact()
        guard left <= 0, current?.id != entry.segment else { return nil }
        return entry.segment
    }

    mutating func close() { closed = true }

    // MARK: -

    private mutating func add(_ entry: Entry) {
        entries.append(entry)
        pendingBytes[entry.segment, default: 0] += entry.length
        totalBytes += entry.length
        totalEvents += entry.count
    }

    /// Drops delivered entries from the front once they are half the array.
    private mutating func compact() {
        guard head > 64, head * 2 >= entries.count else { return }
        entries.removeFirst(head)
        head = 0
    }
}
