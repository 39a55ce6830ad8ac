import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Why an event was filtered out (a fixed set: it labels `dnstap_events_filtered_total`).
public enum FilterReason: String, CaseIterable, Sendable {
    /// Its type is not in `-message-types`.
    case messageType = "message_type"
    /// Its question is in `-drop-names-file` (or under a name there).
    case dropNames = "drop_names"
    /// Its question is not in `-keep-names-file` (nor under a name there).
    case keepNames = "keep_names"
    /// Left out by `-sample-rate`.
    case sample
}

/// The filter settings: which events are written at all (README, "Filters and sampling").
public struct FilterSettings: Equatable, Sendable {
    /// `-message-types`: the types kept (nil: every type).
    public var messageTypes: Set<String>?
    public var dropNamesFile: String?
    public var keepNamesFile: String?
    /// `-sample-rate`: one name in N is kept (1: every name).
    public var sampleRate: Int = 1

    public init() {}

    public var description: String {
        var parts: [String] = []
        if let messageTypes { parts.append("message types \(messageTypes.sorted().joined(separator: ","))") }
        if let dropNamesFile { parts.append("drop names in \(dropNamesFile)") }
        if let keepNamesFile { parts.append("keep only names in \(keepNamesFile)") }
        if sampleRate > 1 { parts.append("one name in \(sampleRate)") }
        return parts.joined(separator: "; ")
    }

    public var isActive: Bool { messageTypes != nil || dropNamesFile != nil || keepNamesFile != nil || sampleRate > 1 }

    /// Every type name an event can carry, for checking `-message-types`.
    public static let knownTypes: Set<String> = [
        "AUTH_QUERY", "AUTH_RESPONSE", "RESOLVER_QUERY", "RESOLVER_RESPONSE", "CLIENT_QUERY", "CLIENT_RESPONSE",
        "FORWARDER_QUERY", "FORWARDER_RESPONSE", "STUB_QUERY", "STUB_RESPONSE", "TOOL_QUERY", "TOOL_RESPONSE",
        "UPDATE_QUERY", "UPDATE_RESPONSE", "PDNS_INTERNAL", "NO_MESSAGE",
    ]
}

/// What the filter needs to know of one event.
struct EventFacts {
    var typeName: String?
    /// The question's name, presentation form without the trailing dot.
    var questionName: String?
    /// The response's RCODE (nil for queries and messages without a DNS response).
    var rcode: UInt32?
    /// For the join of `-transactions`: a query (true), a response (false), neither (nil).
    var isQuery: Bool?
    /// The DNS message parsed without an error (a query that did not is never held).
    var dnsParsed = false
    /// The event has `query_timestamp` / `duration` of its own (a response that carries its
    /// query's time).
    var wroteQueryTime = false
    var wroteDuration = false

    /// What the filter and the join learn from the event's DNS message; the question's name is made
    /// a String only `withName` (for a filter).
    mutating func note(_ dns: DNSWireMessage, withName: Bool, names: inout DNSNames.NameBuilder) {
        if withName, let question = dns.question { questionName = dns.name(at: question.name, using: &names) }
        dnsParsed = dns.parseError == nil
        if dns.isResponse, dns.parseError.map({ if case .tooShort = $0 { return false } else { return true } }) ?? true {
            rcode = UInt32(dns.rcode)
        }
    }
}

/// The filter's decision for one event.
enum FilterVerdict: Equatable {
    case keep
    /// Kept by sampling: the event carries `sample_rate`.
    case keepSampled(rate: Int)
    case drop(FilterReason)
}

/// Decides, per event, whether it is written; shared by every connection. The names files are read
/// at start (a file that cannot be read stops the start) and again on SIGHUP (a file that cannot be
/// read then is logged, and the names in use are kept).
public final class EventFilter: Sendable {
    public let settings: FilterSettings
    private struct Names: Sendable {
        var drop: NameSuffixSet?
        var keep: NameSuffixSet?
    }
    private let names: Locked<Names>

    public init(settings: FilterSettings) throws {
        self.settings = settings
        names = Locked(Names(
            drop: try settings.dropNamesFile.map(Self.read), keep: try settings.keepNamesFile.map(Self.read)))
    }

    public var hasFiles: Bool { settings.dropNamesFile != nil || settings.keepNamesFile != nil }

    /// The names of the files as now loaded (for logs and tests).
    public var loadedCounts: (drop: Int?, keep: Int?) {
        names.withLock { ($0.drop?.count, $0.keep?.count) }
    }

    /// Reads the names files again; on a failure the names in use stay.
    public func reload(logger: Logger) {
        do {
            let drop = try settings.dropNamesFile.map(Self.read)
            let keep = try settings.keepNamesFile.map(Self.read)
            names.withLock { $0 = Names(drop: drop, keep: keep) }
            logger.info(
                "names files reloaded",
                metadata: ["drop_names": "\(drop.map { "\($0.count)" } ?? "-")", "keep_names": "\(keep.map { "\($0.count)" } ?? "-")"])
        } catch {
            logger.error("names files not reloaded: the names in use stay", metadata: ["error": "\(error)"])
        }
    }

    /// The names of the files, taken once per read by each connection (one lock a read, not a message).
    func snapshot() -> (drop: NameSuffixSet?, keep: NameSuffixSet?) {
        names.withLock { ($0.drop, $0.keep) }
    }

    static func verdict(
        _ facts: EventFacts, settings: FilterSettings, drop: NameSuffixSet?, keep: NameSuffixSet?
    ) -> FilterVerdict {
        if let types = settings.messageTypes, !types.contains(facts.typeName ?? "") { return .drop(.messageType) }
        if let drop, let name = facts.questionName, drop.containsNameOrParent(of: name) { return .drop(.dropNames) }
        if let keep, !(facts.questionName.map(keep.containsNameOrParent) ?? false) { return .drop(.keepNames) }
        guard settings.sampleRate > 1 else { return .keep }
        // An answer that is not NOERROR is always kept (the errors are what users look for).
        if let rcode = facts.rcode, rcode != 0 { return .keepSampled(rate: settings.sampleRate) }
        let hash = sampleHash(facts.questionName ?? "")
        return hash % UInt64(settings.sampleRate) == 0 ? .keepSampled(rate: settings.sampleRate) : .drop(.sample)
    }

    /// A name's hash (ASCII case-insensitive), so a name's traffic is kept or left out together.
    static func sampleHash(_ name: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name.utf8 {
            hash = (hash ^ UInt64(byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte)) &* 0x0000_0100_0000_01B3
        }
        // FNV's low bits mix poorly: fold the high ones in before the modulo.
        return hash ^ (hash >> 29)
    }

    /// One name per line; `#` starts a comment; blank lines are skipped.
    static func read(_ path: String) throws -> NameSuffixSet {
        guard let file = fopen(path, "r") else {
            throw NamesFileError(path: path, reason: String(cString: strerror(errno)))
        }
        defer { fclose(file) }
        var set = NameSuffixSet()
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) >= 0, let line {
            var text = String(cString: line)
            if let hash = text.firstIndex(of: "#") { text = String(text[..<hash]) }
            let name = text.trimmingSpaces()
            if !name.isEmpty { set.insert(name) }
        }
        return set
    }
}

/// A names file that cannot be read: at start it ends the run (exit status 1); on SIGHUP it is
/// logged and the names in use stay.
public struct NamesFileError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String

    public var description: String { "cannot read the names file \(path): \(reason)" }
}
