import DnstapForwarder
import NIOCore

/// Arbitrary bytes as one PowerDNS protobuf logging message (`-pdns-listen`): it decodes or is
/// refused, a refused one gives no event, a decoded one gives exactly one valid JSON object, and
/// the address facts taken from it keep the resolution map's rules.
enum PowerDNSFuzzing {
    static func run(_ input: UnsafeRawBufferPointer) {
        var encoder = DnstapEventEncoder(collectResolutions: true)
        do {
            try encoder.append(powerDNS: ByteBuffer(bytes: input), receivedAtMicros: DnstapFuzzing.receivedAt)
        } catch {
            check(encoder.takeEvents().isEmpty, "a refused message still gave an event")
            return
        }
        let events = encoder.takeEvents()
        check(events.count == 1, "one message gave \(events.count) events")
        JSONCheck.validateEvent(Array(events[0].json.readableBytesView))
        for observation in encoder.takeResolutions().observations {
            check(observation.name == observation.name.lowercased(), "a name not lowercased: \(observation.name)")
            check(observation.targets.count <= ResolutionExtractor.maxChainHops, "a chain longer than the cut")
        }
    }
}
