import CDnstapProtobufC
import NIOCore

/// Turns dnstap frames into JSON events, appending them to one scratch buffer per read so that the
/// events of a read share one allocation.
///
/// Per connection, touched by one task at a time. The field names are documented in the README
/// ("Output schema") and are stable.
public struct DnstapEventEncoder {
    private var writer: JSONObjectWriter
    private var pending: [(start: Int, end: Int, time: Int64)] = []
    private let allocator: ByteBufferAllocator
    private var resolutions = ResolutionCollector()
    /// Set when collecting: the responses already taken this second (shared with the map).
    private let recentResponses: RecentResponses?
    private let decoder = DnstapProtobufDecoder()
    private var names = DNSNames.NameBuilder()
    /// The connection's `sender` (README, "Securing the TCP listener"), written in every event;
    /// nil: none (an encoder outside a connection).
    public var sender: String?
    /// The filter (README, "Filters and sampling") with the names in use for this read; nil: keep all.
    var filter: (settings: FilterSettings, drop: NameSuffixSet?, keep: NameSuffixSet?)?
    /// Events the filter left out since the last `takeFiltered()`, by reason.
    private var filtered: [FilterReason: Int] = [:]

    /// - Parameters:
    ///   - collectResolutions: also gather the address facts of responses (for the resolution
    ///     map), taken with `takeResolutions()`.
    ///   - recentResponses: the map's record of responses already taken this second, shared by
    ///     every encoder (a private one when nil).
    public init(
        allocator: ByteBufferAllocator = ByteBufferAllocator(), collectResolutions: Bool = false,
        recentResponses: RecentResponses? = nil
    ) {
        self.allocator = allocator
        self.recentResponses = collectResolutions ? recentResponses ?? RecentResponses(slots: 1024) : nil
        self.writer = JSONObjectWriter(capacity: 4096)
        pending.reserveCapacity(256)
    }

    /// Decodes one dnstap frame and appends its event. A DNS message that does not parse still
    /// gives an event (with `dns_parse_error`); a protobuf that does not decode gives none.
    public mutating func append(frame: ByteBuffer, receivedAtMicros: Int64) throws(DnstapDecodeError) {
        // The decoded message lives in the decoder's arena; released as soon as the event is written
        // (or the decode failed), so a large frame's copy is not held while the connection idles.
        defer { decoder.reset() }
        guard let dnstap = frame.withUnsafeReadableBytes({ decoder.decode($0) }) else {
            throw .malformedProtobuf("not a valid dnstap protobuf")
        }
        let start = writer.count
        writer.beginObject()
        var facts = EventFacts()
        let time = DnstapEventFields.write(
            dnstap, receivedAtMicros: receivedAtMicros, sender: sender, into: writer, names: &names, resolutions: &resolutions,
            recent: recentResponses, facts: &facts)
        finish(start: start, time: time, facts: facts)
    }

    /// Ends the event begun at `start`, or takes it back if the filter leaves it out.
    private mutating func finish(start: Int, time: Int64, facts: EventFacts) {
        if let filter {
            switch EventFilter.verdict(facts, settings: filter.settings, drop: filter.drop, keep: filter.keep) {
            case .keep:
                break
            case .keepSampled(let rate):
                writer.field("sample_rate", rate)
            case .drop(let reason):
                writer.truncate(to: start)
                filtered[reason, default: 0] += 1
                return
            }
        }
        writer.endObject()
        pending.append((start, writer.count, time))
    }

    /// The events the filter left out since the last call, by reason.
    mutating func takeFiltered() -> [FilterReason: Int] {
        guard !filtered.isEmpty else { return [:] }
        defer { filtered.removeAll(keepingCapacity: true) }
        return filtered
    }

    /// Decodes one PowerDNS protobuf logging message (`-pdns-listen`) and appends its event, in
    /// the same schema (README, "PowerDNS protobuf logging").
    public mutating func append(powerDNS frame: ByteBuffer, receivedAtMicros: Int64) throws(DnstapDecodeError) {
        defer { decoder.reset() }
        guard let message = frame.withUnsafeReadableBytes({ decoder.decodePowerDNS($0) }) else {
            throw .malformedProtobuf("not a valid PowerDNS protobuf message")
        }
        // An empty message, or one that is not PowerDNS's (no type, no question, no time), is refused:
        // with no handshake, that is how a wrong sender shows.
        let fields = message.pointee
        guard fields.has_type != 0 else { throw .malformedProtobuf("a PowerDNS protobuf message without its type") }
        let start = writer.count
        writer.beginObject()
        var facts = EventFacts()
        let time = PowerDNSEventFields.write(
            message, receivedAtMicros: receivedAtMicros, sender: sender, into: writer, collect: recentResponses != nil,
            resolutions: &resolutions, facts: &facts)
        finish(start: start, time: time, facts: facts)
    }

    /// The events appended since the last call, as slices of one right-sized buffer.
    public mutating func takeEvents() -> [ForwardedEvent] {
        guard !pending.isEmpty else { return [] }
        var chunk = allocator.buffer(capacity: writer.count)
        chunk.writeBytes(writer.bytes)
        let events = pending.map { entry in
            ForwardedEvent(json: chunk.getSlice(at: entry.start, length: entry.end - entry.start)!, timeMicros: entry.time)
        }
        pending.removeAll(keepingCapacity: true)
        writer.removeAll()
        return events
    }

    /// The address facts gathered since the last call, and the count of answer addresses ignored.
    public mutating func takeResolutions() -> ResolutionCollector {
        defer { resolutions = ResolutionCollector() }
        return resolutions
    }
}

/// Address facts gathered from the responses of one read.
public struct ResolutionCollector: Sendable {
    public var observations: [ResolutionObservation] = []
    public var ignored = 0
}
