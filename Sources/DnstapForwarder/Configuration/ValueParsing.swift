/// A value a setting cannot take: what was expected instead (the resolver names the setting).
struct InvalidValue: Error {
    let expected: String
    init(_ expected: String) { self.expected = expected }
}

/// Parsers for the value syntaxes the settings use. Each throws `InvalidValue` with a message a
/// user can act on.
enum ValueParsing {
    /// "30" (seconds), "1.5s", "500ms", "10m", "1h".
    static func duration(_ text: String) throws -> Duration {
        let trimmed = text.trimmingSpaces()
        let units: [(suffix: String, scale: Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        var number = Substring(trimmed)
        var scale = 1.0
        for unit in units where trimmed.hasSuffix(unit.suffix) {
            number = trimmed.dropLast(unit.suffix.count)
            scale = unit.scale
            break
        }
        guard let value = Double(number), value.isFinite, value >= 0, value * scale <= 31_536_000 else {
            throw InvalidValue("expected a duration such as 30, 500ms, 10s or 10m")
        }
        return .milliseconds(Int64((value * scale * 1000).rounded()))
    }

    /// "1048576", "512K", "256KiB", "1M", "1MiB" (K and M are binary, as in the Frame Streams docs).
    static func byteSize(_ text: String) throws -> Int {
        let trimmed = text.trimmingSpaces()
        let units: [(suffix: String, scale: Int)] = [
            ("KiB", 1024), ("MiB", 1 << 20), ("GiB", 1 << 30), ("K", 1024), ("M", 1 << 20), ("G", 1 << 30), ("B", 1),
        ]
        var number = Substring(trimmed)
        var scale = 1
        for unit in units where trimmed.hasSuffix(unit.suffix) {
            number = trimmed.dropLast(unit.suffix.count)
            scale = unit.scale
            break
        }
        guard let value = Int(number), value > 0, value <= (1 << 40) / scale else {
            throw InvalidValue("expected a size in bytes such as 1048576, 256KiB or 1MiB")
        }
        return value * scale
    }

    static func integer(_ text: String, range: ClosedRange<Int>) throws -> Int {
        guard let value = Int(text.trimmingSpaces()), range.contains(value) else {
            throw InvalidValue("expected a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    static func boolean(_ text: String) throws -> Bool {
        guard let value = booleanWord(text) else { throw InvalidValue("expected true or false") }
        return value
    }

    /// true, yes, 1, on / false, no, 0, off; nil for anything else.
    static func booleanWord(_ text: String) -> Bool? {
        switch text.trimmingSpaces().lowercased() {
        case "true", "yes", "1", "on": return true
        case "false", "no", "0", "off": return false
        default: return nil
        }
    }

    static func fileMode(_ text: String) throws -> UInt16 {
        guard let value = UInt16(text.trimmingSpaces(), radix: 8), value <= 0o7777 else {
            throw InvalidValue("expected an octal mode such as 0660")
        }
        return value
    }

    /// "127.0.0.1:6000", "[::1]:6000", "localhost:6000", ":6000" (all addresses).
    static func hostPort(_ text: String) throws -> HostPort {
        let trimmed = text.trimmingSpaces()
        let host: String
        let portText: Substring
        if trimmed.hasPrefix("[") {
            guard let close = trimmed.firstIndex(of: "]"), trimmed[trimmed.index(after: close)...].hasPrefix(":") else {
                throw InvalidValue("expected [IPV6]:PORT")
            }
            host = String(trimmed[trimmed.index(after: trimmed.startIndex)..<close])
            portText = trimmed[trimmed.index(close, offsetBy: 2)...]
        } else {
            guard let colon = trimmed.lastIndex(of: ":"), !trimmed[..<colon].contains(":") else {
                throw InvalidValue("expected HOST:PORT, e.g. 127.0.0.1:6000 or [::1]:6000")
            }
            let name = String(trimmed[..<colon])
            host = name.isEmpty ? "0.0.0.0" : name
            portText = trimmed[trimmed.index(after: colon)...]
        }
        guard let port = Int(portText), (0...65535).contains(port), !host.isEmpty else {
            throw InvalidValue("expected HOST:PORT with a port from 0 to 65535")
        }
        return HostPort(host: host, port: port)
    }
}

extension String {
    func trimmingSpaces() -> String {
        var view = Substring(self)
        while view.first?.isWhitespace == true { view = view.dropFirst() }
        while view.last?.isWhitespace == true { view = view.dropLast() }
        return String(view)
    }
}
