import DnstapForwarder
import NIOCore

/// The fuzz targets: each takes arbitrary bytes and checks the properties that must hold for any
/// input. A failed check or a crash is a finding. libFuzzer runs them through `DnstapFuzzEntry`
/// (`scripts/fuzz.sh`); the unit tests run the committed corpus and every past finding through them.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// The Frame Streams decoder and handshake state machine on a byte stream cut into arbitrary
    /// chunks: the frames must be the same as when the stream arrives in one piece.
    case frameStreams = "frame-streams"
    /// A dnstap protobuf to an event: it decodes or is refused, and an event is valid JSON.
    case dnstap
    /// The DNS message parser, and the event made from a response carrying the message.
    case dnsParser = "dns-parser"
    /// The JSON event encoder with arbitrary bytes in every field a producer controls.
    case jsonEncoder = "json-encoder"
    /// Address facts from a response into a small resolution map, with eviction and expiry.
    case resolutionMap = "resolution-map"
    /// A PowerDNS protobuf logging message to an event: it decodes or is refused, and an event is
    /// valid JSON.
    case pdns
    /// The join table of `-transactions` under a sequence of queries, responses and passing time.
    case transactions

    public func run(_ input: UnsafeRawBufferPointer) {
        switch self {
        case .frameStreams: FrameStreamsFuzzing.run(input)
        case .dnstap: DnstapFuzzing.runProtobuf(input)
        case .dnsParser: DnstapFuzzing.runDNS(input)
        case .jsonEncoder: DnstapFuzzing.runFields(input)
        case .resolutionMap: ResolutionMapFuzzing.run(input)
        case .pdns: PowerDNSFuzzing.run(input)
        case .transactions: TransactionFuzzing.run(input)
        }
    }

    public func run(_ input: [UInt8]) {
        input.withUnsafeBytes { run($0) }
    }
}

/// A finding: the property `what` did not hold.
func check(_ condition: @autoclosure () -> Bool, _ what: @autoclosure () -> String) {
    if !condition() { fatalError("fuzz check failed: \(what())") }
}
