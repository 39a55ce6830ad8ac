import DnstapForwarder
import Synchronization

/// The input is a DNS response; its address facts go into a map of 16 addresses (one a shard), so
/// every fuzz input also drives eviction, renewal and expiry.
enum ResolutionMapFuzzing {
    final class TestClock: Sendable {
        let micros = Atomic<Int64>(1_700_000_000_000_000)
        func advance(seconds: Int64) { micros.add(seconds * 1_000_000, ordering: .relaxed) }
    }

    static func run(_ input: UnsafeRawBufferPointer) {
        let message = DNSMessage(parsing: input)
        let clock = TestClock()
        var observations: [ResolutionObservation] = []
        let now = clock.micros.load(ordering: .relaxed)
        let ignored = ResolutionExtractor.extract(from: message, seenAtMicros: now, into: &observations)
        check(ignored >= 0 && ignored <= message.answers.count, "ignored \(ignored) of \(message.answers.count) answers")
        check(observations.count + ignored <= message.answers.count, "more facts than answer records")

        var settings = ResolutionMapSettings()
        settings.capacity = 16
        settings.namesPerAddress = 2
        let map = ResolutionMap(settings: settings, clock: { clock.micros.load(ordering: .relaxed) })
        for observation in observations {
            check(observation.name == observation.name.lowercased(), "a name not lowercased")
            check(observation.targets.count <= ResolutionExtractor.maxChainHops, "a chain past the cut")
            map.record([observation])
            // Just recorded, within the TTL floor: it must be found, with this name.
            let names = map.lookup(observation.address) ?? []
            check(names.contains { $0.name == observation.name }, "a fact just recorded is not found")
            check(names.count <= settings.namesPerAddress, "more names than an address keeps")
            check(map.statistics.entries <= settings.capacity, "the map grew past its bound")
        }
        // Everything expires by the TTL ceiling: the sweep must empty the map.
        clock.advance(seconds: Int64(settings.ttlCeiling.components.seconds) + 1)
        map.sweep()
        check(map.statistics.entries == 0, "entries left after every TTL ran out")
    }
}
