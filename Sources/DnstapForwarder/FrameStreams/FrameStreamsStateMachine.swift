import NIOCore

/// Why a Frame Streams connection ended (a fixed set: it labels counters).
public enum CloseReason: String, CaseIterable, Sendable {
    /// The sender sent STOP (and, bidirectional, was sent FINISH).
    case stop
    /// The sender closed without STOP: a normal end for dnsdist, PowerDNS and a killed resolver.
    case peerClosed = "peer_closed"
    /// The sender broke the protocol (garbage, bad handshake, data before START, ...).
    case protocolError = "protocol_error"
    /// READY/ACCEPT/START did not complete within the handshake timeout.
    case handshakeTimeout = "handshake_timeout"
    /// Nothing was received within the idle timeout.
    case idleTimeout = "idle_timeout"
    /// The service was shutting down.
    case shutdown
    /// A socket error (reset, broken pipe, ...).
    case ioError = "io_error"
    /// The TLS handshake failed (the refusal's reason is counted in `dnstap_connections_rejected_total`).
    case tlsRefused = "tls_refused"
}

/// The Frame Streams receiver protocol as a pure state machine (PROTOCOLS.md §1.2–1.5).
///
/// The first control frame tells the stream kind apart: READY starts a bidirectional handshake
/// (answered with ACCEPT carrying exactly `protobuf:dnstap.Dnstap`), START a unidirectional stream.
public struct FrameStreamsStateMachine: Sendable {
    public enum Phase: String, Sendable {
        /// Nothing received yet.
        case awaitingHandshake = "awaiting_handshake"
        /// READY answered with ACCEPT; waiting for START.
        case awaitingStart = "awaiting_start"
        /// Data phase of a bidirectional stream.
        case bidirectional
        /// Data phase of a unidirectional stream.
        case unidirectional
        /// STOP seen or the connection failed; nothing more is processed.
        case finished
    }

    public enum Action: Equatable, Sendable {
        /// Write ACCEPT.
        case sendAccept
        /// Forward this data frame.
        case deliver(ByteBuffer)
        /// An oversized data frame was skipped; count it.
        case skippedOversized(length: Int)
        /// An unknown control frame in the data phase was skipped (control.h: must be ignored).
        case skippedUnknownControl(UInt32)
        /// Write FINISH, then close: a clean bidirectional end.
        case sendFinishAndClose
        /// Close; `reason` says whether it was normal.
        case close(CloseReason)
        /// Close for a protocol violation, with a line for the log.
        case protocolViolation(String)
        /// Nothing to do (frames after the stream ended are ignored).
        case none
    }

    public private(set) var phase: Phase = .awaitingHandshake

    public init() {}

    public var isHandshakeComplete: Bool { phase == .bidirectional || phase == .unidirectional }

    public mutating func receive(_ frame: FrameStreamsFrame) -> Action {
        switch (phase, frame) {
        case (.finished, _):
            return .none

        case (.awaitingHandshake, .control(let control)):
            switch control.type {
            case .ready:
                guard control.allowsDnstap else {
                    return fail("READY offers only other content types (\(control.describedContentTypes))")
                }
                phase = .awaitingStart
                return .sendAccept
            case .start:
                if let problem = startProblem(control) { return fail(problem) }
                phase = .unidirectional
                return .none
            default:
                return fail("\(control.type) before the handshake (expected READY or START)")
            }

        case (.awaitingStart, .control(let control)):
            guard control.type == .start else { return fail("\(control.type) where START was expected after ACCEPT") }
            if let problem = startProblem(control) { return fail(problem) }
            phase = .bidirectional
            return .none

        case (.awaitingHandshake, .data), (.awaitingHandshake, .oversizedData),
            (.awaitingStart, .data), (.awaitingStart, .oversizedData):
            return fail("data frame before START")

        case (.bidirectional, .data(let payload)), (.unidirectional, .data(let payload)):
            return .deliver(payload)

        case (.bidirectional, .oversizedData(let length)), (.unidirectional, .oversizedData(let length)):
            return .skippedOversized(length: length)

        case (.bidirectional, .control(let control)), (.unidirectional, .control(let control)):
            switch control.type {
            case .stop:
                guard control.contentTypes.isEmpty else { return fail("STOP carrying fields") }
                let bidirectional = phase == .bidirectional
                phase = .finished
                return bidirectional ? .sendFinishAndClose : .close(.stop)
            case .unknown(let raw):
                return .skippedUnknownControl(raw)
            default:
                return fail("\(control.type) in the data phase")
            }
        }
    }

    /// The stream ended (EOF). Before START it is a peer that gave up; after, a normal end.
    public mutating func endOfInput() -> CloseReason {
        defer { phase = .finished }
        return .peerClosed
    }

    private func startProblem(_ control: ControlFrame) -> String? {
        if control.contentTypes.count > 1 { return "START with \(control.contentTypes.count) content types" }
        if !control.allowsDnstap { return "START with content type \(control.describedContentTypes)" }
        return nil
    }

    private mutating func fail(_ message: String) -> Action {
        phase = .finished
        return .protocolViolation(message)
    }
}

extension ControlFrame {
    var describedContentTypes: String {
        contentTypes.map { "\"" + String(decoding: $0.prefix(64), as: UTF8.self) + "\"" }.joined(separator: ", ")
    }
}
