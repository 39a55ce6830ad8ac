import NIOCore

/// Appends flat JSON objects to memory it owns, with no intermediate strings.
///
/// The hot path of the service writes every event byte by byte, so the storage is raw memory with
/// unchecked exclusivity: one connection's encoder owns one writer and uses it from one task at a
/// time, so no access can overlap.
final class JSONObjectWriter {
    @exclusivity(unchecked) private var base: UnsafeMutablePointer<UInt8>
    @exclusivity(unchecked) private var capacity: Int
    @exclusivity(unchecked) private(set) var count = 0
    @exclusivity(unchecked) private var needsComma = false
    /// The second of the last timestamp written, and its text up to the fraction.
    @exclusivity(unchecked) private var cachedSecond = Int64.min
    private let cachedSecondPrefix = UnsafeMutablePointer<UInt8>.allocate(capacity: JSONObjectWriter.secondPrefixLength)

    init(capacity: Int) {
        self.capacity = max(capacity, 64)
        self.base = .allocate(capacity: self.capacity)
    }

    deinit {
        base.deallocate()
        cachedSecondPrefix.deallocate()
    }

    /// The bytes written since the last `removeAll`.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    func removeAll() { count = 0 }

    /// Drops what was written after `offset` (an event the filter left out).
    func truncate(to offset: Int) { count = min(count, max(0, offset)) }

    func beginObject() {
        needsComma = false
        append(UInt8(ascii: "{"))
    }

    /// Continues an object whose first fields were written before (`bytes`: from its `{` to just
    /// before its `}`); the next field gets a comma.
    func resumeObject(_ bytes: UnsafeRawBufferPointer) {
        append(bytes)
        needsComma = bytes.count > 1
    }

    func endObject() {
        append(UInt8(ascii: "}"))
    }

    func newline() { append(UInt8(ascii: "\n")) }

    /// Fields this writer wrote before (`bytes`: `"name":value` pairs joined by commas, as
    /// `fields(since:)` took them), after a comma when a field came before.
    func appendFields(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        if needsComma { append(UInt8(ascii: ",")) }
        append(bytes)
        needsComma = true
    }

    /// The fields written since `offset` (a `count` taken before them), without the comma that
    /// led them: a field starts with its key's quote, or with a comma when one came before.
    func fields(since offset: Int) -> UnsafeRawBufferPointer {
        let start = offset < count && base[offset] == UInt8(ascii: ",") ? offset + 1 : offset
        return UnsafeRawBufferPointer(start: base + start, count: count - start)
    }

    /// A field whose value is already JSON (an event object).
    func rawField(_ name: StaticString, json: ByteBuffer) {
        key(name)
        json.withUnsafeReadableBytes { append($0) }
    }

    // MARK: - Storage

    @inline(__always)
    private func reserve(_ extra: Int) {
        if count + extra > capacity { grow(extra) }
    }

    private func grow(_ extra: Int) {
        let newCapacity = max(capacity * 2, count + extra)
        let newBase = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        newBase.update(from: base, count: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    @inline(__always)
    private func append(_ byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }

    @inline(__always)
    private func append(_ raw: UnsafeRawBufferPointer) {
        guard raw.count > 0 else { return }
        reserve(raw.count)
        Self.copy(raw.baseAddress!, to: base + count, count: raw.count)
        count += raw.count
    }

    /// Copies `count` bytes. Most copies here are a key, a static value or a label of a few to a few
    /// dozen bytes, for which a call to `memmove` costs more than the copy: those are moved as two
    /// overlapping words (or pairs of words) inline; longer ones go to `memmove`.
    @inline(__always)
    static func copy(_ source: UnsafeRawPointer, to destination: UnsafeMutablePointer<UInt8>, count: Int) {
        let target = UnsafeMutableRawPointer(destination)
        switch count {
        case 8...16:
            let head = source.loadUnaligned(as: UInt64.self)
            let tail = source.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
            target.storeBytes(of: head, as: UInt64.self)
            target.storeBytes(of: tail, toByteOffset: count - 8, as: UInt64.self)
        case 17...32:
            let first = source.loadUnaligned(as: (UInt64, UInt64).self)
            let last = source.loadUnaligned(fromByteOffset: count - 16, as: (UInt64, UInt64).self)
            target.storeBytes(of: first.0, as: UInt64.self)
            target.storeBytes(of: first.1, toByteOffset: 8, as: UInt64.self)
            target.storeBytes(of: last.0, toByteOffset: count - 16, as: UInt64.self)
            target.storeBytes(of: last.1, toByteOffset: count - 8, as: UInt64.self)
        case 4..<8:
            let head = source.loadUnaligned(as: UInt32.self)
            let tail = source.loadUnaligned(fromByteOffset: count - 4, as: UInt32.self)
            target.storeBytes(of: head, as: UInt32.self)
            target.storeBytes(of: tail, toByteOffset: count - 4, as: UInt32.self)
        case 0..<4:
            for index in 0..<count { destination[index] = source.load(fromByteOffset: index, as: UInt8.self) }
        default:
            target.copyMemory(from: source, byteCount: count)
        }
    }

    @inline(__always)
    private func append(static string: StaticString) {
        append(UnsafeRawBufferPointer(start: string.utf8Start, count: string.utf8CodeUnitCount))
    }

    /// `,"name":` with one capacity check.
    @inline(__always)
    private func key(_ name: StaticString) {
        let length = name.utf8CodeUnitCount
        reserve(length + 4)
        var cursor = base + count
        if needsComma {
            cursor.pointee = UInt8(ascii: ",")
            cursor += 1
        }
        cursor.pointee = UInt8(ascii: "\"")
        Self.copy(name.utf8Start, to: cursor + 1, count: length)
        cursor += 1 + length
        cursor[0] = UInt8(ascii: "\"")
        cursor[1] = UInt8(ascii: ":")
        count = cursor + 2 - base
        needsComma = true
    }

    func field(_ name: StaticString, _ value: String) {
        key(name)
        writeString(value)
    }

    func field(_ name: StaticString, static value: StaticString) {
        key(name)
        writeQuoted(value)
    }

    func field(_ name: StaticString, bytes value: UnsafeRawBufferPointer) {
        key(name)
        writeByteString(value)
    }

    func field(_ name: StaticString, bytes value: [UInt8]) {
        value.withUnsafeBytes { field(name, bytes: $0) }
    }

    func field<Integer: BinaryInteger>(_ name: StaticString, _ value: Integer) {
        key(name)
        writeInteger(value)
    }

    func field(_ name: StaticString, _ value: Bool) {
        key(name)
        if value { append(static: "true") } else { append(static: "false") }
    }

    /// A non-negative decimal with exactly six fraction digits, from a count of microseconds.
    func field(_ name: StaticString, micros value: Int64) {
        key(name)
        if value < 0 { append(UInt8(ascii: "-")) }
        let magnitude = value.magnitude
        writeInteger(magnitude / 1_000_000)
        append(UInt8(ascii: "."))
        writePadded(magnitude % 1_000_000, digits: 6)
    }

    /// An RFC 3339 UTC timestamp with microseconds, e.g. "2026-11-21T23:40:35.123456Z".
    func field(_ name: StaticString, timestampMicros value: Int64) {
        key(name)
        append(UInt8(ascii: "\""))
        // An event's timestamps, and the events of a read, mostly fall in the same second: its
        // "YYYY-MM-DDTHH:MM:SS." is kept and copied instead of recomputed.
        let second = value >= 0 ? value / 1_000_000 : (value - 999_999) / 1_000_000
        reserve(Self.secondPrefixLength)
        if second != cachedSecond {
            let start = count
            let time = UTCTime(micros: value)
            writePadded(UInt64(clamping: time.year), digits: 4)
            append(UInt8(ascii: "-"))
            writePadded(UInt64(time.month), digits: 2)
            append(UInt8(ascii: "-"))
            writePadded(UInt64(time.day), digits: 2)
            append(UInt8(ascii: "T"))
            writePadded(UInt64(time.hour), digits: 2)
            append(UInt8(ascii: ":"))
            writePadded(UInt64(time.minute), digits: 2)
            append(UInt8(ascii: ":"))
            writePadded(UInt64(time.second), digits: 2)
            append(UInt8(ascii: "."))
            cachedSecondPrefix.update(from: base + start, count: Self.secondPrefixLength)
            cachedSecond = second
        } else {
            Self.copy(cachedSecondPrefix, to: base + count, count: Self.secondPrefixLength)
            count += Self.secondPrefixLength
        }
        writePadded(UInt64(value - second * 1_000_000), digits: 6)
        append(static: "Z\"")
    }

    /// "YYYY-MM-DDTHH:MM:SS." (the year is always written with four digits).
    private static let secondPrefixLength = 20

    /// An array of strings.
    func field(_ name: StaticString, strings values: [String]) {
        key(name)
        append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { append(UInt8(ascii: ",")) }
            writeString(value)
        }
        append(UInt8(ascii: "]"))
    }

    // MARK: - Scalars

    private func writeInteger<Integer: BinaryInteger>(_ value: Integer) {
        if value < 0 {
            append(UInt8(ascii: "-"))
            writeDecimal(UInt64(value.magnitude))
        } else {
            writeDecimal(UInt64(value))
        }
    }

    private func writeDecimal(_ value: UInt64) {
        var count = 1
        var scratch = value / 10
        while scratch > 0 { count += 1; scratch /= 10 }
        writePadded(value, digits: count)
    }

    /// `value`'s last `digits` decimal digits, two at a time.
    private func writePadded(_ value: UInt64, digits: Int) {
        var value = value
        reserve(digits)
        let pairs = Self.digitPairs.utf8Start
        var index = count + digits
        while index - count >= 2 {
            let pair = Int(value % 100) * 2
            value /= 100
            index -= 2
            base[index] = pairs[pair]
            base[index + 1] = pairs[pair + 1]
        }
        if index > count { base[count] = UInt8(ascii: "0") + UInt8(value % 10) }
        count += digits
    }

    private static let digitPairs: StaticString =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"

    /// A dotted quad (`value`'s high byte first) with one capacity check.
    private func writeIPv4(_ value: UInt32) {
        reserve(15)
        var cursor = base + count
        var shift: UInt32 = 24
        while true {
            cursor = Self.writeOctet(UInt8(truncatingIfNeeded: value >> shift), at: cursor)
            guard shift > 0 else { break }
            cursor.pointee = UInt8(ascii: ".")
            cursor += 1
            shift -= 8
        }
        count = cursor - base
    }

    /// An address byte in decimal at `cursor` (room checked by the caller); returns the end.
    @inline(__always)
    private static func writeOctet(_ value: UInt8, at cursor: UnsafeMutablePointer<UInt8>) -> UnsafeMutablePointer<UInt8> {
        var cursor = cursor
        if value >= 100 {
            cursor.pointee = UInt8(ascii: "0") + value / 100
            cursor += 1
        }
        if value >= 10 {
            cursor.pointee = UInt8(ascii: "0") + value / 10 % 10
            cursor += 1
        }
        cursor.pointee = UInt8(ascii: "0") + value % 10
        return cursor + 1
    }

    /// An IPv4 or IPv6 address (or hex for any other length) as a JSON string.
    func field(_ name: StaticString, address bytes: UnsafeRawBufferPointer) {
        key(name)
        append(UInt8(ascii: "\""))
        if bytes.count == 4 {
            writeIPv4(UInt32(bigEndian: bytes.loadUnaligned(as: UInt32.self)))
        } else if bytes.count == 16 {
            writeIPv6(IPv6Bytes(bytes))
        } else {
            var text = DNSRecordRenderer.hex(bytes)
            text.withUTF8 { append(UnsafeRawBufferPointer($0)) }
        }
        append(UInt8(ascii: "\""))
    }

    /// An address in RFC 5952 text straight into the buffer.
    private func writeIPv6(_ address: IPv6Bytes) {
        reserve(IPAddressFormatter.maxIPv6Length)
        count += IPAddressFormatter.format(address, into: base + count)
    }

    /// A domain name of `message` starting at `offset` (walked without an error when the message
    /// was parsed) as a JSON string of its presentation form, `DNSNames.NameBuilder`'s, written
    /// straight from the labels.
    func field(_ name: StaticString, name offset: Int, in message: UnsafeRawBufferPointer) {
        key(name)
        writeName(offset, in: message)
    }

    func arrayElement(name offset: Int, in message: UnsafeRawBufferPointer) {
        if needsComma { append(UInt8(ascii: ",")) }
        needsComma = true
        writeName(offset, in: message)
    }

    private func writeName(_ offset: Int, in message: UnsafeRawBufferPointer) {
        append(UInt8(ascii: "\""))
        var labels = JSONNameLabels(writer: self)
        _ = try? DNSWireReader.walkName(message, from: offset, into: &labels)
        if labels.first { append(UInt8(ascii: ".")) }  // the root
        append(UInt8(ascii: "\""))
    }

    /// One label, after a dot unless `first`: the presentation form's escapes (`\.`, `\\`,
    /// `\DDD` for bytes outside printable ASCII) with JSON's on top (`\` and `"`).
    fileprivate func appendLabel(_ label: UnsafeRawBufferPointer, first: Bool) {
        // At most five bytes a label byte (`\\DDD`), and the dot.
        reserve(1 + 5 * label.count)
        if !first {
            base[count] = UInt8(ascii: ".")
            count += 1
        }
        // The usual label (letters, digits, hyphens) needs no escape: one copy.
        if label.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ".") && $0 != UInt8(ascii: "\\") && $0 != UInt8(ascii: "\"") }) {
            if let start = label.baseAddress { Self.copy(start, to: base + count, count: label.count) }
            count += label.count
            return
        }
        for byte in label {
            switch byte {
            case UInt8(ascii: "."):
                append(static: "\\\\.")
            case UInt8(ascii: "\\"):
                append(static: "\\\\\\\\")
            case UInt8(ascii: "\""):
                append(static: "\\\"")
            case 0x21...0x7E:
                append(byte)
            default:
                append(static: "\\\\")
                append(UInt8(ascii: "0") + byte / 100)
                append(UInt8(ascii: "0") + (byte / 10) % 10)
                append(UInt8(ascii: "0") + byte % 10)
            }
        }
    }

    /// Starts an array field; follow with `arrayElement` calls and `endArray`.
    func beginArray(_ name: StaticString) {
        key(name)
        append(UInt8(ascii: "["))
        needsComma = false
    }

    func arrayElement(_ value: String) {
        if needsComma { append(UInt8(ascii: ",")) }
        needsComma = true
        writeString(value)
    }

    func arrayElement<Integer: BinaryInteger>(_ value: Integer) {
        if needsComma { append(UInt8(ascii: ",")) }
        needsComma = true
        writeInteger(value)
    }

    /// A dotted-quad string straight from the address value.
    func arrayElement(_ address: IPv4Bytes) {
        if needsComma { append(UInt8(ascii: ",")) }
        needsComma = true
        append(UInt8(ascii: "\""))
        writeIPv4(address.value)
        append(UInt8(ascii: "\""))
    }

    /// An IPv6 address in RFC 5952 text, straight from the address value.
    func arrayElement(_ address: IPv6Bytes) {
        if needsComma { append(UInt8(ascii: ",")) }
        needsComma = true
        append(UInt8(ascii: "\""))
        writeIPv6(address)
        append(UInt8(ascii: "\""))
    }

    func arrayElement(static value: StaticString) {
        if needsComma { append(UInt8(ascii: ",")) }
        needsComma = true
        writeQuoted(value)
    }

    /// `"value"` with one capacity check (a static value needs no escape).
    @inline(__always)
    private func writeQuoted(_ value: StaticString) {
        let length = value.utf8CodeUnitCount
        reserve(length + 2)
        let cursor = base + count
        cursor.pointee = UInt8(ascii: "\"")
        Self.copy(value.utf8Start, to: cursor + 1, count: length)
        cursor[length + 1] = UInt8(ascii: "\"")
        count += length + 2
    }

    func endArray() {
        append(UInt8(ascii: "]"))
        needsComma = true
    }

    private func writeString(_ value: String) {
        var value = value
        value.withUTF8 { writeByteString(UnsafeRawBufferPointer($0)) }
    }

    /// Writes bytes as a JSON string. Valid UTF-8 passes through (escaped); each byte that is not
    /// part of a valid UTF-8 sequence becomes the six characters `\\xHH` (JSON for `\xHH`).
    private func writeByteString(_ bytes: UnsafeRawBufferPointer) {
        append(UInt8(ascii: "\""))
        var index = 0
        var runStart = 0
        while index < bytes.count {
            // Eight plain printable ASCII bytes at a time (the usual name, address, identity).
            if index + 8 <= bytes.count, !Self.mayNeedEscape(bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)) {
                index += 8
                continue
            }
            let byte = bytes[index]
            if byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") {
                index += 1
                continue
            }
            append(UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
            if byte < 0x80 {
                writeASCII(byte)
                index += 1
            } else {
                let length = UTF8Validation.sequenceLength(bytes, at: index)
                if length == 0 {
                    append(static: "\\\\x")
                    append(hexDigit(byte >> 4))
                    append(hexDigit(byte & 0xF))
                    index += 1
                } else {
                    append(UnsafeRawBufferPointer(rebasing: bytes[index..<(index + length)]))
                    index += length
                }
            }
            runStart = index
        }
        append(UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
        append(UInt8(ascii: "\""))
    }

    /// Whether any of the eight bytes in `word` is a control byte (< 0x20), `"`, `\\`, DEL or not
    /// ASCII: those take the byte-by-byte path. Exact for "none" (SWAR, Bit Twiddling Hacks'
    /// haszero/hasless); a false "maybe" only takes the slow path.
    @inline(__always)
    static func mayNeedEscape(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        @inline(__always) func hasZeroByte(_ value: UInt64) -> Bool { (value &- ones) & ~value & highs != 0 }
        let below0x20 = (word &- ones &* 0x20) & ~word & highs != 0
        return below0x20 || word & highs != 0 || hasZeroByte(word ^ (ones &* 0x22)) || hasZeroByte(word ^ (ones &* 0x5C))
            || hasZeroByte(word ^ (ones &* 0x7F))
    }

    private func writeASCII(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\""): append(static: "\\\"")
        case UInt8(ascii: "\\"): append(static: "\\\\")
        case 0x0A: append(static: "\\n")
        case 0x0D: append(static: "\\r")
        case 0x09: append(static: "\\t")
        case 0x00..<0x20, 0x7F:
            append(static: "\\u00")
            append(hexDigit(byte >> 4))
            append(hexDigit(byte & 0xF))
        default: append(byte)
        }
    }

    private func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }
}

enum UTF8Validation {
    /// The length of the valid UTF-8 sequence starting at `index` (a byte ≥ 0x80), or 0.
    static func sequenceLength<Bytes: Collection<UInt8>>(_ bytes: Bytes, at index: Bytes.Index) -> Int {
        let lead = bytes[index]
        let length: Int
        var lower: UInt8 = 0x80
        var upper: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; upper = 0x9F
        case 0xF0: length = 4; lower = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; upper = 0x8F
        default: return 0
        }
        var position = bytes.index(after: index)
        for continuation in 1..<length {
            guard position != bytes.endIndex else { return 0 }
            let byte = bytes[position]
            let (low, high) = continuation == 1 ? (lower, upper) : (UInt8(0x80), UInt8(0xBF))
            guard byte >= low && byte <= high else { return 0 }
            position = bytes.index(after: position)
        }
        return length
    }
}

/// A name's labels going into a JSON string (`JSONObjectWriter.field(_:name:in:)`).
/// Holds the writer unretained (the writer is writing the name, so it is alive): no reference
/// counting a label.
private struct JSONNameLabels: DNSLabelSink {
    let writer: Unmanaged<JSONObjectWriter>
    var first = true

    init(writer: JSONObjectWriter) { self.writer = .passUnretained(writer) }

    mutating func appendLabel(_ label: UnsafeRawBufferPointer) {
        let first = first
        writer._withUnsafeGuaranteedRef { $0.appendLabel(label, first: first) }
        self.first = false
    }
}
