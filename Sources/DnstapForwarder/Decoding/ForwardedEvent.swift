import NIOCore

/// One event on its way to the output: a JSON object (no newline) and the event's own time.
///
/// `json` is usually a slice of a buffer shared by the events decoded from the same read, so an
/// event costs no allocation of its own.
public struct ForwardedEvent: Sendable {
    public var json: ByteBuffer
    /// Microseconds since the UNIX epoch (the dnstap time, or the receipt time without one).
    public var timeMicros: Int64

    public init(json: ByteBuffer, timeMicros: Int64) {
        self.json = json
        self.timeMicros = timeMicros
    }
}

/// Why a dnstap frame gave no event.
public enum DnstapDecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    case malformedProtobuf(String)

    public var description: String {
        switch self {
        case .malformedProtobuf(let why): return "protobuf does not decode: \(why)"
        }
    }
}
