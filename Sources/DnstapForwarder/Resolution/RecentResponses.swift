import CDnstapProtobufC
import Synchronization

/// Remembers which DNS responses were handed to the resolution map in the current second, so that
/// the same answer repeated (a popular name, resolved many times a second, by one connection or
/// several) is extracted and recorded once a second instead of every time.
///
/// A response is identified by a 64-bit hash of its bytes without the DNS ID; cached answers carry
/// decreasing TTLs, so the same answer a second later hashes differently and is recorded again.
/// Skipping a repeat within its second changes an entry's expiry and recency by under a second.
///
/// One table per map, shared by every connection's encoders without a lock: a direct-mapped array
/// of atomic words, each the hash's upper 40 bits and the second's lower 24. A collision or a
/// race only means a response is recorded again (or, with a 2^-40 chance per lookup, once less).
/// Unchecked Sendable: the table is touched only through its atomics, and freed in deinit.
public final class RecentResponses: @unchecked Sendable {
    public static let defaultSlots = 65_536  // 512 KiB
    private let slots: UnsafeMutablePointer<Atomic<UInt64>>
    private let mask: Int

    /// - Parameter slots: rounded up to a power of two.
    public init(slots: Int = RecentResponses.defaultSlots) {
        var count = 1
        while count < max(slots, 2) { count <<= 1 }
        self.slots = .allocate(capacity: count)
        for index in 0..<count { (self.slots + index).initialize(to: Atomic(0)) }
        mask = count - 1
    }

    deinit {
        slots.deinitialize(count: mask + 1)
        slots.deallocate()
    }

    /// A response's place in the table, found before it is needed: `probe` hashes the response and
    /// prefetches its slot, so that `seenBefore(_:second:)`, called after the response has been
    /// parsed and written, does not wait for memory (the table is larger than the nearest caches).
    /// It points into this table: use it at once, while the table is alive (the encoder checks it
    /// a few hundred nanoseconds later, in the same call).
    public struct Probe {
        fileprivate let slot: UnsafeMutablePointer<Atomic<UInt64>>
        fileprivate let hash: UInt64
    }

    /// Hashes `response` (without its DNS ID) and starts fetching its slot; nil for a response too
    /// short to carry anything.
    public func probe(_ response: UnsafeRawBufferPointer) -> Probe? {
        guard response.count > 2 else { return nil }
        let hash = Self.hash(UnsafeRawBufferPointer(rebasing: response[2...]))
        let slot = slots + Int(truncatingIfNeeded: hash) & mask
        dtf_prefetch_for_write(slot)
        return Probe(slot: slot, hash: hash)
    }

    /// True if the probed response was already seen in `second`; otherwise notes it and returns false.
    public func seenBefore(_ probe: Probe, second: Int64) -> Bool {
        let word = (probe.hash & ~0xFF_FFFF) | UInt64(truncatingIfNeeded: second) & 0xFF_FFFF | 1 << 24  // never 0 (empty)
        if probe.slot.pointee.load(ordering: .relaxed) == word { return true }
        probe.slot.pointee.store(word, ordering: .relaxed)
        return false
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
