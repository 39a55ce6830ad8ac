/// A set of DNS names that answers "is this name, or a name it is under, in the set?" with one hash
/// lookup per label of the name asked, however many names the set holds (100 k names from a
/// `-drop-names-file` cost the same per message as ten).
///
/// Each name is kept under a hash of its labels taken from the right (the root side), so the
/// hashes of "com", "example.com" and "www.example.com" come one from the other while a name is
/// read from its end: every suffix of an asked name is one lookup, with no string made for it. A
/// hash found is confirmed against the names stored under it (ASCII case-insensitively), so a
/// collision never gives a wrong answer.
public struct NameSuffixSet: Sendable {
    /// By hash, the names (lowercased, no trailing dot) stored under it.
    private var buckets: [UInt64: [[UInt8]]] = [:]
    public private(set) var count = 0

    public init() {}

    public init<Names: Sequence<String>>(_ names: Names) {
        for name in names { insert(name) }
    }

    /// Adds a name in presentation form ("example.com", "example.com." or "*.example.com"; the
    /// root "." matches every name).
    public mutating func insert(_ name: String) {
        var bytes = Array(name.utf8).map(Self.lowercased)
        if bytes.starts(with: Array("*.".utf8)) { bytes.removeFirst(2) }
        if bytes.count > 1, bytes.last == UInt8(ascii: "."), bytes[bytes.count - 2] != UInt8(ascii: "\\") { bytes.removeLast() }
        if bytes == [UInt8(ascii: ".")] { bytes = [] }
        let hash = bytes.withUnsafeBufferPointer { Self.fullHash($0) }
        guard !(buckets[hash]?.contains(bytes) ?? false) else { return }
        buckets[hash, default: []].append(bytes)
        count += 1
    }

    public var isEmpty: Bool { count == 0 }

    /// Whether `name` (presentation form, no trailing dot, as in the events' `query`) or one of the
    /// names it is under is in the set.
    public func containsNameOrParent(of name: String) -> Bool {
        guard !isEmpty else { return false }
        var name = name
        return name.withUTF8 { contains(suffixOf: $0) }
    }

    func contains(suffixOf name: UnsafeBufferPointer<UInt8>) -> Bool {
        // The root: every name is under it.
        if let root = buckets[Self.seed], root.contains([]) { return true }
        var hash = Self.seed
        var end = name.count
        // Labels from the right: a "." that is not escaped ("\.") ends the label before it.
        var index = name.count - 1
        while index >= -1 {
            let atSeparator = index == -1 || (name[index] == UInt8(ascii: ".") && !(index > 0 && name[index - 1] == UInt8(ascii: "\\")))
            if atSeparator {
                let label = UnsafeBufferPointer(rebasing: name[(index + 1)..<end])
                hash = Self.combine(hash, label)
                if let names = buckets[hash], names.contains(where: { Self.equalsLowercased(name[(index + 1)...], $0) }) {
                    return true
                }
                end = index
            }
            index -= 1
        }
        return false
    }

    // MARK: - Hashing

    private static let seed: UInt64 = 0xCBF2_9CE4_8422_2325

    /// FNV-1a over one label (lowercased), then a separator, chained onto the hash of the labels to
    /// its right.
    private static func combine(_ hash: UInt64, _ label: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var hash = hash
        for byte in label {
            hash = (hash ^ UInt64(lowercased(byte))) &* 0x0000_0100_0000_01B3
        }
        return (hash ^ 0x2E) &* 0x0000_0100_0000_01B3
    }

    private static func fullHash(_ name: UnsafeBufferPointer<UInt8>) -> UInt64 {
        guard !name.isEmpty else { return seed }
        var hash = seed
        var end = name.count
        var index = name.count - 1
        while index >= -1 {
            if index == -1 || (name[index] == UInt8(ascii: ".") && !(index > 0 && name[index - 1] == UInt8(ascii: "\\"))) {
                hash = combine(hash, UnsafeBufferPointer(rebasing: name[(index + 1)..<end]))
                end = index
            }
            index -= 1
        }
        return hash
    }

    private static func lowercased(_ byte: UInt8) -> UInt8 { byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte }

    private static func equalsLowercased(_ name: Slice<UnsafeBufferPointer<UInt8>>, _ stored: [UInt8]) -> Bool {
        guard name.count == stored.count else { return false }
        return zip(name, stored).allSatisfy { lowercased($0) == $1 }
    }
}
