import Testing

@testable import DnstapForwarder

/// The spool's index: appends, segments, the drainer's hand-out, commits and recovery, no I/O.
@Suite("spool index")
struct SpoolIndexTests {
    typealias Entry = SpoolIndex.Entry

    /// Plans and records an append of `bytes`; returns the plan.
    @discardableResult
    func append(_ index: inout SpoolIndex, bytes: Int, count: Int = 10) -> SpoolIndex.AppendPlan {
        let plan = index.planAppend(recordBytes: bytes)
        if case .write(let seq, let segment, let offset, _, _) = plan {
            index.appended(Entry(seq: seq, segment: segment, offset: offset, length: bytes, count: count))
        }
        return plan
    }

    @Test("appends fill a segment, then start the next one named by its first sequence number")
    func segments() {
        var index = SpoolIndex(maxBytes: 10_000, segmentLimit: 250)
        #expect(append(&index, bytes: 100) == .write(seq: 1, segment: 1, offset: 0, newSegment: true, retire: nil))
        #expect(append(&index, bytes: 100) == .write(seq: 2, segment: 1, offset: 100, newSegment: false, retire: nil))
        #expect(append(&index, bytes: 100) == .write(seq: 3, segment: 3, offset: 0, newSegment: true, retire: nil))
        #expect(index.totalBytes == 300 && index.totalEvents == 30 && index.pendingBatches == 3)
    }

    @Test("the drainer gets batches in order; a commit of a whole segment deletes it, not the current one")
    func drainAndCommit() {
        var index = SpoolIndex(maxBytes: 10_000, segmentLimit: 250)
        for _ in 0..<3 { append(&index, bytes: 100) }
        #expect(index.nextToSend()?.seq == 1)
        #expect(index.commit(2) == nil, "only the oldest handed batch can be committed")
        #expect(index.commit(1) == nil, "segment 1 still holds batch 2")
        #expect(index.nextToSend()?.seq == 2)
        #expect(index.commit(2) == 1, "segment 1 is all delivered")
        #expect(index.nextToSend()?.seq == 3)
        #expect(index.commit(3) == nil, "segment 3 is still appended to")
        #expect(index.isEmpty && index.committed == 3)
        // The next segment retires the delivered current one.
        #expect(append(&index, bytes: 100) == .write(seq: 4, segment: 3, offset: 100, newSegment: false, retire: nil))
        #expect(append(&index, bytes: 100) == .write(seq: 5, segment: 5, offset: 0, newSegment: true, retire: nil), "segment 3 holds batch 4")
        var drained = SpoolIndex(maxBytes: 10_000, segmentLimit: 100)
        append(&drained, bytes: 100)
        _ = drained.nextToSend()
        _ = drained.commit(1)
        #expect(append(&drained, bytes: 100) == .write(seq: 2, segment: 2, offset: 0, newSegment: true, retire: 1))
    }

    @Test("at the byte bound appends wait; a commit makes room; one batch over the bound still goes into an empty spool")
    func bound() {
        var index = SpoolIndex(maxBytes: 250, segmentLimit: 1000)
        append(&index, bytes: 100)
        append(&index, bytes: 100)
        append(&index, bytes: 100)
        #expect(index.isFull)
        #expect(index.planAppend(recordBytes: 10) == .wait)
        _ = index.nextToSend()
        _ = index.commit(1)
        #expect(!index.isFull)
        var empty = SpoolIndex(maxBytes: 50, segmentLimit: 1000)
        guard case .write = append(&empty, bytes: 500) else {
            Issue.record("an empty spool takes one batch larger than its bound")
            return
        }
    }

    @Test("a batch given back (the shutdown bound) is handed out again; a failed write is forgotten")
    func giveBackAndFailure() {
        var index = SpoolIndex(maxBytes: 10_000, segmentLimit: 1000)
        append(&index, bytes: 100)
        #expect(index.nextToSend()?.seq == 1)
        #expect(index.nextToSend() == nil)
        index.giveBack()
        #expect(index.nextToSend()?.seq == 1)
        guard case .write(_, let segment, let offset, _, _) = index.planAppend(recordBytes: 50) else { return }
        index.appendFailed(segment: segment, offset: offset)
        #expect(index.pendingBatches == 1)
        #expect(append(&index, bytes: 70) == .write(seq: 3, segment: 1, offset: 100, newSegment: false, retire: nil), "the failed bytes are reused")
    }

    @Test("recovery keeps what follows the checkpoint, continues the numbering, and names the delivered segments")
    func recovery() {
        var index = SpoolIndex(maxBytes: 10_000, segmentLimit: 1000, committed: 2)
        for (seq, segment) in [(1, 1), (2, 1), (3, 3), (4, 3)] as [(UInt64, UInt64)] {
            index.recovered(Entry(seq: seq, segment: segment, offset: 0, length: 10, count: 1))
        }
        #expect(index.pending.map(\.seq) == [3, 4])
        #expect(index.deliveredSegments(among: [1, 3]) == [1])
        #expect(append(&index, bytes: 10) == .write(seq: 5, segment: 5, offset: 0, newSegment: true, retire: nil), "after a restart appends start a new segment")
    }

    @Test("closed: no appends; drained once empty")
    func closed() {
        var index = SpoolIndex(maxBytes: 10_000, segmentLimit: 1000)
        append(&index, bytes: 10)
        index.close()
        #expect(index.planAppend(recordBytes: 10) == .closed)
        #expect(!index.isDrained)
        _ = index.nextToSend()
        _ = index.commit(1)
        #expect(index.isDrained)
    }
}
