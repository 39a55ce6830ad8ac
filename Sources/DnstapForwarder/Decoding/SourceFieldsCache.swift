#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The `identity`, `sender`, `version` and `extra` fields of the last event written: a
/// connection's resolver names itself the same way in every message, so these fields are copied as
/// they were written the first time instead of being escaped again for every event.
///
/// One per encoder (per connection); what it keeps is bounded by `maxBytes`.
struct SourceFieldsCache {
    private var identity: [UInt8]?
    private var version: [UInt8]?
    private var extra: [UInt8]?
    private var sender: String?
    private var json: [UInt8] = []
    private var valid = false

    /// Sources longer than this together are written without being kept.
    static let maxBytes = 512

    /// Writes the fields (each only when present) into `writer`.
    mutating func write(
        identity: UnsafeRawBufferPointer?, sender: String?, version: UnsafeRawBufferPointer?, extra: UnsafeRawBufferPointer?,
        into writer: JSONObjectWriter
    ) {
        if valid, sender == self.sender, Self.same(self.identity, identity), Self.same(self.version, version),
            Self.same(self.extra, extra)
        {
            json.withUnsafeBytes { writer.appendFields($0) }
            return
        }
        let start = writer.count
        if let identity { writer.field("identity", bytes: identity) }
        if let sender { writer.field("sender", sender) }
        if let version { writer.field("version", bytes: version) }
        if let extra { writer.field("extra", bytes: extra) }
        let written = writer.fields(since: start)
        guard written.count <= Self.maxBytes else {
            valid = false
            return
        }
        self.identity = identity.map { Array($0) }
        self.version = version.map { Array($0) }
        self.extra = extra.map { Array($0) }
        self.sender = sender
        json.removeAll(keepingCapacity: true)
        json.append(contentsOf: written)
        valid = true
    }

    private static func same(_ kept: [UInt8]?, _ bytes: UnsafeRawBufferPointer?) -> Bool {
        guard let kept, let bytes else { return kept == nil && bytes == nil }
        guard kept.count == bytes.count else { return false }
        guard let start = bytes.baseAddress, !kept.isEmpty else { return true }
        return kept.withUnsafeBytes { memcmp($0.baseAddress!, start, bytes.count) == 0 }
    }
}
