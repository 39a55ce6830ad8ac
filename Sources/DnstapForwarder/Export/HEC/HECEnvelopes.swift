import NIOCore

/// Builds HEC request bodies: one envelope per event, concatenated (not a JSON array), each
/// `{"time":…,"host":…,"source":…,"sourcetype":…,"index":…,"event":{…}}` on its own line.
struct HECEnvelopes: Sendable {
    private let prefix: [UInt8]
    private let middle: [UInt8]

    init(settings: HECSettings, host: String) {
        // The metadata part is the same for every event: encode it once.
        let metadata = JSONObjectWriter(capacity: 256)
        metadata.beginObject()
        metadata.field("host", host)
        metadata.field("source", settings.source)
        metadata.field("sourcetype", settings.sourcetype)
        if let index = settings.index { metadata.field("index", index) }
        metadata.endObject()
        let object = Array(metadata.bytes)  // {"host":…,…}
        prefix = Array(#"{"time":"#.utf8)
        middle = [UInt8(ascii: ",")] + object.dropFirst().dropLast() + Array(#","event":"#.utf8)
    }

    /// The size of one event's envelope.
    func size(of event: ForwardedEvent) -> Int {
        prefix.count + 20 + middle.count + event.json.readableBytes + 2
    }

    /// Splits events into bodies of at most `maxBytes` (one event over it gets a body of its own).
    func bodies(_ events: ArraySlice<ForwardedEvent>, maxBytes: Int) -> [ArraySlice<ForwardedEvent>] {
        var parts: [ArraySlice<ForwardedEvent>] = []
        var start = events.startIndex
        var bytes = 0
        for index in events.indices {
            let size = size(of: events[index])
            if bytes + size > maxBytes && index > start {
                parts.append(events[start..<index])
                start = index
                bytes = 0
            }
            bytes += size
        }
        if start < events.endIndex { parts.append(events[start...]) }
        return parts
    }

    func encode(_ events: ArraySlice<ForwardedEvent>, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var body = allocator.buffer(capacity: 0)
        encode(events, into: &body)
        return body
    }

    /// Appends the envelopes of `events` to `body`.
    func encode(_ events: ArraySlice<ForwardedEvent>, into body: inout ByteBuffer) {
        body.reserveCapacity(minimumWritableBytes: events.reduce(0) { $0 + size(of: $1) })
        for event in events {
            body.writeBytes(prefix)
            let seconds = event.timeMicros / 1_000_000
            let micros = event.timeMicros % 1_000_000
            body.writeString(String(seconds))
            body.writeInteger(UInt8(ascii: "."))
            let fraction = String(micros)
            body.writeRepeatingByte(UInt8(ascii: "0"), count: 6 - fraction.utf8.count)
            body.writeString(fraction)
            body.writeBytes(middle)
            body.writeImmutableBuffer(event.json)
            body.writeStaticString("}\n")
        }
    }
}
