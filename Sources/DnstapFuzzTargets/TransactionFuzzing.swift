import DnstapForwarder
import NIOCore

/// The join table of `-transactions` driven by an arbitrary sequence of queries, responses and
/// passing time: it never holds more than its bound, every query held leaves it exactly once (by
/// its response, its timeout, eviction, a retransmission or the drain at shutdown), a timeout never
/// fires early nor is missed, and its bookkeeping stays within twice the bound (plus 65).
enum TransactionFuzzing {
    static func run(_ input: UnsafeRawBufferPointer) {
        guard let first = input.first else { return }
        let capacity = 1 + Int(first % 8)
        let timeout = TimeAmount.seconds(1)
        var machine = TransactionTableStateMachine<UInt8, Int>(capacity: capacity, timeout: timeout)
        var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        // Each query ever held, by id: when it was held; removed when it leaves.
        var outstanding: [Int: NIODeadline] = [:]
        var keyOf: [Int: UInt8] = [:]
        var nextID = 0

        func leave(_ id: Int, _ how: String) {
            check(outstanding.removeValue(forKey: id) != nil, "query \(id) left twice (\(how))")
        }
        for byte in input.dropFirst() {
            let key = byte & 0x0F
            switch byte >> 6 {
            case 0, 3:  // a query
                let id = nextID
                nextID += 1
                for (released, why) in machine.hold(key, id, now: now) {
                    switch why {
                    case .superseded: check(keyOf[released] == key, "superseded by another key")
                    case .evicted: check(outstanding.count == capacity, "evicted below the bound")
                    case .timedOut, .drained: check(false, "hold released as \(why)")
                    }
                    leave(released, "\(why)")
                }
                outstanding[id] = now
                keyOf[id] = key
            case 1:  // a response
                if let id = machine.take(key) {
                    check(keyOf[id] == key, "a response took another key's query")
                    check(outstanding[id].map { $0 + timeout > now } ?? false, "a response took a query past its timeout")
                    leave(id, "taken")
                } else {
                    check(!outstanding.contains { keyOf[$0.key] == key && $0.value + timeout > now },
                          "a held query its response did not find")
                }
            default:  // time passes
                now = now + .milliseconds(Int64(byte & 0x3F) * 40)
                for id in machine.expire(now: now) {
                    check(outstanding[id].map { $0 + timeout <= now } ?? false, "query \(id) timed out early")
                    leave(id, "timed out")
                }
                check(outstanding.values.allSatisfy { $0 + timeout > now }, "a timeout missed")
            }
            check(machine.count <= capacity, "the table grew past its bound")
            check(machine.count == outstanding.count, "table holds \(machine.count), expected \(outstanding.count)")
            check(machine.queuedSlots <= 2 * capacity + 65, "bookkeeping past twice the bound")
        }
        for id in machine.drain() { leave(id, "drained") }
        check(outstanding.isEmpty, "queries lost: \(outstanding.keys.sorted())")
        check(machine.count == 0, "not empty after the drain")
    }
}
