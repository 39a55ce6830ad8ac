import CDnstapProtobufC
import Synchronization

/// Remembers which DNS responses were handed to the resolution map in the last few seconds
/// (`windowSeconds`), so that the same answer repeated (a popular name, resolved many times a
/// second, by one connection or several) is extracted and recorded once in that window instead of
/// every time.
///
/// A response is identified by a 64-bit hash of its header (without the DNS ID), question and
/// answer section, with the answers' TTLs left out: a cached answer, whose TTLs count down from one
/// response to the next, is the same answer, and the expiry it gives (its time plus its TTL) is the
/// same too. Skipping a repeat within the window therefore changes an entry's recency by under the
/// window, and the expiry of an answer whose TTL does not count down (an authoritative one) by as
/// much; the authority and additional sections (NS records, EDNS) are not the map's concern.
///
/// One table per map, shared by every connection's encoders without a lock: a direct-mapped array
/// of atomic words, each the hash's upper 40 bits and the second's lower 24. A collision or a
/// race only means a response is recorded again (or, with a 2^-40 chance per lookup, once less).
/// Unchecked Sendable: the table is touched only through its atomics, and freed in deinit.
public final class RecentResponses: @unchecked Sendable {
    public static let defaultSlots = 65_536  // 512 KiB
    /// A response repeated within this many seconds of its recorded copy is not recorded again.
    public static let defaultWindowSeconds = 5
    private let slots: UnsafeMutablePointer<Atomic<UInt64>>
    private let mask: Int
    private let window: UInt64

    /// - Parameters:
    ///   - slots: rounded up to a power of two.
    ///   - windowSeconds: how long a recorded response keeps its repeats out (at least 1: the
    ///     same second).
    public init(slots: Int = RecentResponses.defaultSlots, windowSeconds: Int = RecentResponses.defaultWindowSeconds) {
        var count = 1
        while count < max(slots, 2) { count <<= 1 }
        self.slots = .allocate(capacity: count)
        for index in 0..<count { (self.slots + index).initialize(to: Atomic(0)) }
        mask = count - 1
        window = UInt64(max(1, min(windowSeconds, 3600)))
    }

    deinit {
        slots.deinitialize(count: mask + 1)
        slots.deallocate()
    }

    /// A response's place in the table, found before it is needed: `probe` hashes the parsed
    /// response and prefetches its slot, so that `seenBefore(_:second:)`, called after the
    /// response's event has been written, does not wait for memory (the table is larger than the
    /// nearest caches). It points into this table: use it at once, while the table is alive (the
    /// encoder checks it a few hundred nanoseconds later, in the same call).
    public struct Probe {
        fileprivate let slot: UnsafeMutablePointer<Atomic<UInt64>>
        fileprivate let hash: UInt64
    }

    /// Hashes `response` (see the type's note) and starts fetching its slot; nil for a response
    /// whose answer section did not parse.
    func probe(_ response: DNSWireMessage) -> Probe? {
        guard response.answerSectionEnd > 12 else { return nil }
        let hash = Self.hashWithoutTTLs(response)
        let slot = slots + Int(truncatingIfNeeded: hash) & mask
        dtf_prefetch_for_write(slot)
        return Probe(slot: slot, hash: hash)
    }

    /// True if the probed response was recorded within the window before `second` (a clock's
    /// seconds); otherwise notes it as recorded in `second` and returns false.
    public func seenBefore(_ probe: Probe, second: Int64) -> Bool {
        let stamp = UInt64(truncatingIfNeeded: second) & 0xFF_FFFF
        let word = (probe.hash & ~0xFF_FFFF) | stamp | 1 << 24  // never 0 (empty)
        let stored = probe.slot.pointee.load(ordering: .relaxed)
        // The same response, recorded `age` seconds before (modulo 2^24: one recorded "later", by
        // another sender's clock, reads as old and is recorded again).
        if stored & ~0xFF_FFFF == word & ~0xFF_FFFF, (stamp &- stored) & 0xFF_FFFF < window { return true }
        probe.slot.pointee.store(word, ordering: .relaxed)
        return false
    }

    /// `hash` of the message from its flags to the end of its answer section, each answer's TTL
    /// read as zero.
    static func hashWithoutTTLs(_ response: DNSWireMessage) -> UInt64 {
        let end = response.answerSectionEnd
        // The closure takes only what it reads, not a copy of the message.
        let bytes = response.bytes
        let answers = response.answers
        return withUnsafeTemporaryAllocation(byteCount: end - 2, alignment: 8) { copy in
            copy.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[2..<end]))
            for answer in answers {
                copy.storeBytes(of: 0, toByteOffset: answer.ttlOffset - 2, as: UInt32.self)
            }
            return hash(UnsafeRawBufferPointer(copy))
        }
    }

    /// A fast non-cryptographic 64-bit hash (multiply–xorshift over 8-byte words, the length mixed
    /// in). A collision costs at most one record skipped.
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        let multiplier: UInt64 = 0x9E37_79B9_7F4A_7C15
        let count = bytes.count
        var state = UInt64(truncatingIfNeeded: count) &* multiplier
        guard let base = bytes.baseAddress else { return state }
        var offset = 0
        while offset + 8 <= count {
            state = (state ^ base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* multiplier
            state ^= state >> 29
            offset += 8
        }
        var tail: UInt64 = 0
        if offset < count {
            if count >= 8 {
                // The last eight bytes (overlapping what was hashed; the length is mixed in already).
                tail = base.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
            } else {
                for index in 0..<count { tail |= UInt64(base.load(fromByteOffset: index, as: UInt8.self)) << (8 * UInt64(index)) }
            }
        }
        state = (state ^ tail) &* multiplier
        state ^= state >> 32
        return (state &* multiplier) ^ (state >> 29)
    }
}
