/// A strict RFC 8259 check of one event: a single JSON object, UTF-8, no duplicate top-level key,
/// and no raw newline (an event is one line of a JSON-lines stream).
public enum JSONCheck {
    static func validateEvent(_ bytes: [UInt8]) {
        if let problem = problem(inEvent: bytes) {
            check(false, "\(problem): \(String(decoding: bytes, as: UTF8.self))")
        }
    }

    /// What is wrong with `bytes` as one event line; nil when nothing is.
    public static func problem(inEvent bytes: [UInt8]) -> String? {
        if bytes.contains(0x0A) { return "a newline inside an event" }
        if String(validating: bytes, as: UTF8.self) == nil { return "an event that is not UTF-8" }
        var parser = Parser(bytes: bytes)
        guard parser.object(topLevel: true), parser.atEnd else { return "not valid JSON at byte \(parser.position)" }
        if let key = parser.duplicateKey { return "duplicate key \(key)" }
        return nil
    }

    struct Parser {
        let bytes: [UInt8]
        var position = 0
        var depth = 0
        var duplicateKey: String?

        init(bytes: [UInt8]) { self.bytes = bytes }

        var atEnd: Bool { skipSpaceIndex() == bytes.count }

        private var peek: UInt8? { position < bytes.count ? bytes[position] : nil }

        private func skipSpaceIndex() -> Int {
            var index = position
            while index < bytes.count, [0x20, 0x09, 0x0D].contains(bytes[index]) { index += 1 }
            return index
        }

        mutating func skipSpace() { position = skipSpaceIndex() }

        private mutating func consume(_ byte: UInt8) -> Bool {
            skipSpace()
            guard peek == byte else { return false }
            position += 1
            return true
        }

        mutating func object(topLevel: Bool = false) -> Bool {
            guard consume(UInt8(ascii: "{")) else { return false }
            depth += 1
            defer { depth -= 1 }
            guard depth < 64 else { return false }
            var keys = Set<[UInt8]>()
            if consume(UInt8(ascii: "}")) { return true }
            repeat {
                skipSpace()
                let start = position
                guard string() else { return false }
                let key = Array(bytes[start..<position])
                if topLevel, !keys.insert(key).inserted { duplicateKey = String(decoding: key, as: UTF8.self) }
                guard consume(UInt8(ascii: ":")), value() else { return false }
            } while consume(UInt8(ascii: ","))
            return consume(UInt8(ascii: "}"))
        }

        private mutating func array() -> Bool {
            guard consume(UInt8(ascii: "[")) else { return false }
            depth += 1
            defer { depth -= 1 }
            guard depth < 64 else { return false }
            if consume(UInt8(ascii: "]")) { return true }
            repeat {
                guard value() else { return false }
            } while consume(UInt8(ascii: ","))
            return consume(UInt8(ascii: "]"))
        }

        private mutating func value() -> Bool {
            skipSpace()
            switch peek {
            case UInt8(ascii: "{"): return object()
            case UInt8(ascii: "["): return array()
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "t"): return literal("true")
            case UInt8(ascii: "f"): return literal("false")
            case UInt8(ascii: "n"): return literal("null")
            default: return number()
            }
        }

        private mutating func literal(_ word: StaticString) -> Bool {
            let text = Array(UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount))
            guard bytes.count - position >= text.count, Array(bytes[position..<(position + text.count)]) == text else { return false }
            position += text.count
            return true
        }

        private mutating func string() -> Bool {
            guard peek == UInt8(ascii: "\"") else { return false }
            position += 1
            while let byte = peek {
                position += 1
                switch byte {
                case UInt8(ascii: "\""): return true
                case UInt8(ascii: "\\"):
                    guard let escaped = peek else { return false }
                    position += 1
                    switch escaped {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                        UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        continue
                    case UInt8(ascii: "u"):
                        for _ in 0..<4 {
                            guard let hex = peek, hex.isHexDigit else { return false }
                            position += 1
                        }
                    default: return false
                    }
                case 0x00..<0x20: return false
                default: continue
                }
            }
            return false
        }

        private mutating func number() -> Bool {
            let start = position
            if peek == UInt8(ascii: "-") { position += 1 }
            guard let first = peek, first.isDigit else { return false }
            position += 1
            if first != UInt8(ascii: "0") { while peek?.isDigit == true { position += 1 } }
            if peek == UInt8(ascii: ".") {
                position += 1
                guard peek?.isDigit == true else { return false }
                while peek?.isDigit == true { position += 1 }
            }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                position += 1
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { position += 1 }
                guard peek?.isDigit == true else { return false }
                while peek?.isDigit == true { position += 1 }
            }
            return position > start
        }
    }
}

extension UInt8 {
    var isDigit: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }
    var isHexDigit: Bool {
        isDigit || (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "f")) || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "F"))
    }
}
