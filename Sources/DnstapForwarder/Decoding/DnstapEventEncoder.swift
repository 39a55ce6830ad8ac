import CDnstapProtobufC
import NIOCore

/// Turns dnstap frames into JSON events, appending them to one scratch buffer per read so that the
/// events of a read share one allocation. Each event is followed there by a newline (not part of
/// its `json`): a run of a read's events is then its JSON lines as they are, which the stdout sink
/// writes without copying them (`JSONLinesSink.writeLines`).
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
    private var scratch = DNSParseScratch()
    /// The connection's `sender` (README, "Securing the TCP listener"), written in every event;
    /// nil: none (an encoder outside a connection).
    public var sender: String?
    /// The filter (README, "Filters and sampling") with the names in use for this read; nil: keep all.
    var filter: (settings: FilterSettings, drop: NameSuffixSet?, keep: NameSuffixSet?)?
    /// Events the filter left out since the last `takeFiltered()`, by reason.
    private var filtered: [FilterReason: Int] = [:]
    /// The pending queries of `-transactions` (README, "Transactions"), shared by every
    /// connection; nil: each message is its own event.
    public var transactions: TransactionTable?
    /// How the join went since the last `takeTransactionOutcomes()`.
    private var outcomes: [TransactionOutcome: Int] = [:]
    private var keyScratch: [UInt8] = []

    /// A message's part in the join.
    private enum JoinRole {
        case none
        /// A query to hold until its response.
        case query(TransactionKey)
        /// A response, with its query taken out of the table (nil: none was held).
        case answered(HeldQuery?)
    }

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
        var role = JoinRole.none
        if let transactions, let message = dnstap.pointee.message?.pointee {
            let type = MessageTypeInfo(message)
            if type.isQuery == true {
                // One that does not parse or has no key is not held: it goes out now.
                if holdWithoutRendering(dnstap, message, type, frame: frame, receivedAtMicros: receivedAtMicros) { return }
            } else if type.isQuery == false, let key = TransactionKey(dnstap: dnstap, isQuery: false, scratch: &keyScratch) {
                // Taken before it is written: joined, it leaves out its `response_timestamp`, which
                // is its `timestamp` again.
                role = .answered(transactions.take(key))
            }
        }
        let start = writer.count
        writer.beginObject()
        var facts = EventFacts()
        var joined = false
        if case .answered(.some) = role { joined = true }
        let time = DnstapEventFields.write(
            dnstap, receivedAtMicros: receivedAtMicros, sender: sender, into: writer, scratch: &scratch, resolutions: &resolutions,
            recent: recentResponses, joined: joined, forFilter: filter != nil, facts: &facts)
        finish(start: start, time: time, facts: facts, role: role)
    }

    /// A query of `-transactions` held as its frame (`HeldQuery`), or left out by a filter, without
    /// rendering its event; false when it is not one to hold (no DNS message, one that does not
    /// parse, no question): the caller writes it. The filter judges it on the same facts as a
    /// rendered one's.
    private mutating func holdWithoutRendering(
        _ dnstap: UnsafePointer<Dnstap__Dnstap>, _ message: Dnstap__Message, _ type: MessageTypeInfo, frame: ByteBuffer,
        receivedAtMicros: Int64
    ) -> Bool {
        guard message.has_query_message != 0, let key = TransactionKey(dnstap: dnstap, isQuery: true, scratch: &keyScratch) else {
            return false
        }
        var facts = EventFacts()
        facts.typeName = type.name
        facts.isQuery = true
        let dns = DNSWireMessage(parsing: message.query_message.bytes, scratch: &scratch)
        facts.note(dns, withName: filter != nil, names: &scratch.names)
        dns.recycle(into: &scratch)
        guard facts.dnsParsed else { return false }
        let time = DnstapEventFields.queryEventTime(message, receivedAtMicros: receivedAtMicros)
        let verdict = filter.map { EventFilter.verdict(facts, settings: $0.settings, drop: $0.drop, keep: $0.keep) } ?? .keep
        // Held whatever sampling says (its response decides); left out by another filter, not held.
        if case .drop(let reason) = verdict, reason != .sample {
            filtered[reason, default: 0] += 1
            return true
        }
        let held = HeldQuery(
            content: .dnstap(frame: frame.withUnsafeReadableBytes { Array($0) }, receivedAtMicros: receivedAtMicros, sender: sender),
            timeMicros: time, sampleRate: filter?.settings.sampleRate ?? 1)
        for (released, why) in transactions!.hold(key.compacted(), held) { writeReleased(released, why) }
        return true
    }

    /// Appends a held query's own event, marked `"unanswered": true`.
    mutating func appendUnanswered(_ query: HeldQuery) {
        let start = writer.count
        switch query.content {
        case .json(let json):
            json.withUnsafeBytes { writer.resumeObject($0) }
        case .dnstap(let frame, let receivedAtMicros, let sender):
            defer { decoder.reset() }
            // It decoded when it came; the same bytes decode the same.
            guard let dnstap = frame.withUnsafeBytes({ decoder.decode($0) }) else { return }
            writer.beginObject()
            var facts = EventFacts()
            _ = DnstapEventFields.write(
                dnstap, receivedAtMicros: receivedAtMicros, sender: sender, into: writer, scratch: &scratch,
                resolutions: &resolutions, recent: nil, facts: &facts)
        }
        writer.field("unanswered", true)
        if query.sampleRate > 1 { writer.field("sample_rate", query.sampleRate) }
        writer.endObject()
        pending.append((start, writer.count, query.timeMicros))
        writer.newline()
    }

    /// Ends the event begun at `start`: written, held (a query waiting for its response), joined
    /// with its held query (a response), or taken back if the filter leaves it out.
    private mutating func finish(start: Int, time: Int64, facts: EventFacts, role: JoinRole = .none) {
        let verdict = filter.map { EventFilter.verdict(facts, settings: $0.settings, drop: $0.drop, keep: $0.keep) } ?? .keep
        switch role {
        case .none:
            break
        case .query(let key):
            // Held whatever sampling says (its response decides); left out by another filter, not held.
            if case .drop(let reason) = verdict, reason != .sample { break }
            let held = HeldQuery(
                content: .json(Array(UnsafeRawBufferPointer(rebasing: writer.bytes[start...]))), timeMicros: time,
                sampleRate: filter?.settings.sampleRate ?? 1)
            writer.truncate(to: start)
            for (released, why) in transactions!.hold(key.compacted(), held) { writeReleased(released, why) }
            return
        case .answered(let query):
            join(query, verdict: verdict, facts: facts, time: time)
        }
        switch verdict {
        case .keep:
            break
        case .keepSampled(let rate):
            writer.field("sample_rate", rate)
        case .drop(let reason):
            writer.truncate(to: start)
            filtered[reason, default: 0] += 1
            return
        }
        writer.endObject()
        pending.append((start, writer.count, time))
        writer.newline()
    }

    /// A response's join counted, and its query's time added to its event if that is kept.
    private mutating func join(_ query: HeldQuery?, verdict: FilterVerdict, facts: EventFacts, time: Int64) {
        guard let query else {
            // Left out by a filter of names or types, its query was left out by the same filter and
            // never held: it is counted as filtered, not as a response whose query went missing.
            if case .drop(let reason) = verdict, reason != .sample { return }
            outcomes[.unmatchedResponse, default: 0] += 1
            return
        }
        outcomes[.joined, default: 0] += 1
        if case .drop = verdict { return }
        if !facts.wroteQueryTime { writer.field("query_timestamp", timestampMicros: query.timeMicros) }
        if !facts.wroteDuration { writer.field("duration", micros: time - query.timeMicros) }
    }

    /// A held query that left the table without its response, written unanswered.
    private mutating func writeReleased(
        _ query: HeldQuery, _ why: TransactionTableStateMachine<TransactionKey, HeldQuery>.Release
    ) {
        appendUnanswered(query)
        switch why {
        case .evicted: outcomes[.evicted, default: 0] += 1
        case .superseded: outcomes[.superseded, default: 0] += 1
        case .timedOut, .drained: outcomes[.unanswered, default: 0] += 1
        }
    }

    /// How the join went since the last call, by outcome.
    mutating func takeTransactionOutcomes() -> [TransactionOutcome: Int] {
        guard !outcomes.isEmpty else { return [:] }
        defer { outcomes.removeAll(keepingCapacity: true) }
        return outcomes
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
        var role = JoinRole.none
        if transactions != nil, let isQuery = facts.isQuery,
           let key = TransactionKey(powerDNS: message, isQuery: isQuery, scratch: &keyScratch)
        {
            role = isQuery ? .query(key) : .answered(transactions!.take(key))
        }
        finish(start: start, time: time, facts: facts, role: role)
    }

    /// The events appended since the last call, as slices of one right-sized buffer, each followed
    /// in it by a newline.
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
