import NIOCore

/// Appends flat JSON objects to a `ByteBuffer` it owns, with no intermediate strings.
///
/// Strings are escaped per RFC 8259; byte strings that are not valid UTF-8 have each invalid byte
/// written as the text `\xHH`, so any input bytes give valid JSON.
struct JSONObjectWriter {
    var buffer: ByteBuffer
    private var needsComma = false

    init(buffer: ByteBuffer) {
        self.buffer = buffer
    }

    mutating func beginObject() {
        needsComma = false
        buffer.writeInteger(UInt8(ascii: "{"))
    }

    mutating func endObject() {
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    private mutating func key(_ name: StaticString) {
        if needsComma { buffer.writeInteger(UInt8(ascii: ",")) }
        needsComma = true
        buffer.writeInteger(UInt8(ascii: "\""))
        buffer.writeStaticString(name)
        buffer.writeInteger(UInt8(ascii: "\""))
        buffer.writeInteger(UInt8(ascii: ":"))
    }

    mutating func field(_ name: StaticString, _ value: String) {
        key(name)
        writeString(value)
    }

    mutating func field(_ name: StaticString, static value: StaticString) {
        key(name)
        buffer.writeInteger(UInt8(ascii: "\""))
        buffer.writeStaticString(value)
        buffer.writeInteger(UInt8(ascii: "\""))
    }

    mutating func field<Bytes: Collection<UInt8>>(_ name: StaticString, bytes value: Bytes) {
        key(name)
        writeByteString(value)
    }

    mutating func field<Integer: BinaryInteger>(_ name: StaticString, _ value: Integer) {
        key(name)
        writeInteger(value)
    }

    mutating func field(_ name: StaticString, _ value: Bool) {
        key(name)
        if value { buffer.writeStaticString("true") } else { buffer.writeStaticString("false") }
    }

    /// A non-negative decimal with exactly six fraction digits, from a count of microseconds.
    mutating func field(_ name: StaticString, micros value: Int64) {
        key(name)
        if value < 0 { buffer.writeInteger(UInt8(ascii: "-")) }
        let magnitude = value.magnitude
        writeInteger(magnitude / 1_000_000)
        buffer.writeInteger(UInt8(ascii: "."))
        writePadded(magnitude % 1_000_000, digits: 6)
    }

    /// An RFC 3339 UTC timestamp with microseconds, e.g. "2026-11-21T23:40:35.123456Z".
    mutating func field(_ name: StaticString, timestampMicros value: Int64) {
        key(name)
        buffer.writeInteger(UInt8(ascii: "\""))
        let seconds = value >= 0 ? value / 1_000_000 : (value - 999_999) / 1_000_000
        let micros = value - seconds * 1_000_000
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let (year, month, day) = CivilDate.from(daysSinceEpoch: days)
        writePadded(UInt64(clamping: year), digits: 4)
        buffer.writeInteger(UInt8(ascii: "-"))
        writePadded(UInt64(month), digits: 2)
        buffer.writeInteger(UInt8(ascii: "-"))
        writePadded(UInt64(day), digits: 2)
        buffer.writeInteger(UInt8(ascii: "T"))
        writePadded(UInt64(secondOfDay / 3600), digits: 2)
        buffer.writeInteger(UInt8(ascii: ":"))
        writePadded(UInt64(secondOfDay / 60 % 60), digits: 2)
        buffer.writeInteger(UInt8(ascii: ":"))
        writePadded(UInt64(secondOfDay % 60), digits: 2)
        buffer.writeInteger(UInt8(ascii: "."))
        writePadded(UInt64(micros), digits: 6)
        buffer.writeStaticString("Z\"")
    }

    /// An array of strings.
    mutating func field(_ name: StaticString, strings values: [String]) {
        key(name)
        buffer.writeInteger(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
            writeString(value)
        }
        buffer.writeInteger(UInt8(ascii: "]"))
    }

    /// An array of integers.
    mutating func field<Integer: BinaryInteger>(_ name: StaticString, integers values: [Integer]) {
        key(name)
        buffer.writeInteger(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
            writeInteger(value)
        }
        buffer.writeInteger(UInt8(ascii: "]"))
    }

    // MARK: - Scalars

    private mutating func writeInteger<Integer: BinaryInteger>(_ value: Integer) {
        if value < 0 {
            buffer.writeInteger(UInt8(ascii: "-"))
            writeDecimal(UInt64(value.magnitude))
        } else {
            writeDecimal(UInt64(value))
        }
    }

    private mutating func writeDecimal(_ value: UInt64) {
        var count = 1
        var scratch = value / 10
        while scratch > 0 { count += 1; scratch /= 10 }
        writePadded(value, digits: count)
    }

    private mutating func writePadded(_ value: UInt64, digits: Int) {
        var value = value
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: digits) { pointer in
            var index = digits - 1
            while index >= 0 {
                pointer[index] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
                index -= 1
            }
            return digits
        }
    }

    private mutating func writeString(_ value: String) {
        var value = value
        value.withUTF8 { writeByteString($0) }
    }

    /// Writes bytes as a JSON string. Valid UTF-8 passes through (escaped); each byte that is not
    /// part of a valid UTF-8 sequence becomes the six characters `\\xHH` (JSON for `\xHH`).
    private mutating func writeByteString<Bytes: Collection<UInt8>>(_ bytes: Bytes) {
        buffer.writeInteger(UInt8(ascii: "\""))
        var index = bytes.startIndex
        while index != bytes.endIndex {
            let byte = bytes[index]
            if byte < 0x80 {
                writeASCII(byte)
                index = bytes.index(after: index)
                continue
            }
            let length = UTF8Validation.sequenceLength(bytes, at: index)
            if length == 0 {
                buffer.writeStaticString("\\\\x")
                buffer.writeInteger(hexDigit(byte >> 4))
                buffer.writeInteger(hexDigit(byte & 0xF))
                index = bytes.index(after: index)
            } else {
                let end = bytes.index(index, offsetBy: length)
                buffer.writeBytes(bytes[index..<end])
                index = end
            }
        }
        buffer.writeInteger(UInt8(ascii: "\""))
    }

    private mutating func writeASCII(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\""): buffer.writeStaticString("\\\"")
        case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
        case 0x0A: buffer.writeStaticString("\\n")
        case 0x0D: buffer.writeStaticString("\\r")
        case 0x09: buffer.writeStaticString("\\t")
        case 0x00..<0x20, 0x7F:
            buffer.writeStaticString("\\u00")
            buffer.writeInteger(hexDigit(byte >> 4))
            buffer.writeInteger(hexDigit(byte & 0xF))
        default: buffer.writeInteger(byte)
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

/// Proleptic Gregorian calendar from days since 1970-01-01 (H. Hinnant's `civil_from_days`).
enum CivilDate {
    static func from(daysSinceEpoch days: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * monthIndex + 2) / 5 + 1)
        let month = Int(monthIndex < 10 ? monthIndex + 3 : monthIndex - 9)
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
