import DnstapForwarder
import Foundation
import NIOCore
import SwiftProtobuf

/// dnstap and DNS bytes through the event encoder; every event must be one valid JSON object.
enum DnstapFuzzing {
    static let receivedAt: Int64 = 1_700_000_000_000_000

    /// Arbitrary bytes as a dnstap protobuf. Differential too: the service decodes with
    /// libprotobuf-c; where swift-protobuf (the schema's other implementation) also reads the
    /// bytes, the event must be the same as for swift-protobuf's canonical re-encoding of them
    /// (field order, repeated and merged fields resolved the same way). Not where swift-protobuf
    /// kept unknown fields: its proto2 enums are closed, so an enum value newer than the schema
    /// goes there, and re-encoding moves it after the known fields, changing which value is last.
    /// Nor where a bytes field of Message or Policy is present but empty: libprotobuf-c (1.4.1)
    /// tells presence by a non-NULL pointer when it merges a repeated embedded message, so an
    /// empty field from an earlier copy of `message` is lost (no producer repeats `message`).
    static func runProtobuf(_ input: UnsafeRawBufferPointer) {
        let event = encode(ByteBuffer(bytes: input))
        guard let event, let message = try? Dnstap_Dnstap(serializedBytes: Array(input), partial: true),
              message.unknownFields.data.isEmpty, message.message.unknownFields.data.isEmpty,
              message.message.policy.unknownFields.data.isEmpty, !hasEmptyBytes(message.message)
        else { return }
        let canonical = encode(serialize(message))
        check(canonical == event, "libprotobuf-c and swift-protobuf read the bytes differently:\n\(String(buffer: event))\n\(canonical.map { String(buffer: $0) } ?? "(no event)")")
    }

    /// Arbitrary bytes as a DNS message: parsed alone, then carried in a query and a response.
    /// Differential too: the event's names (written from the wire, `DNSWireMessage`) are the
    /// presentation Strings `DNSMessage` makes of the same bytes.
    static func runDNS(_ input: UnsafeRawBufferPointer) {
        let message = DNSMessage(parsing: input)
        check(message.answers.count <= Int(message.answerCount), "more answers than the header counts")
        if message.parseError == nil, input.count >= 12 {
            check(message.question != nil || message.questionCount == 0, "a question counted but not parsed")
        }
        for type in [Dnstap_Message.TypeEnum.clientQuery, .resolverResponse] {
            var dnsMessage = Dnstap_Message()
            dnsMessage.type = type
            if type == .clientQuery { dnsMessage.queryMessage = Data(input) } else { dnsMessage.responseMessage = Data(input) }
            var dnstap = Dnstap_Dnstap()
            dnstap.type = .message
            dnstap.message = dnsMessage
            guard let event = encode(serialize(dnstap)) else { continue }
            checkNames(event, message)
        }
    }

    private static func checkNames(_ event: ByteBuffer, _ message: DNSMessage) {
        guard let fields = (try? JSONSerialization.jsonObject(with: Data(event.readableBytesView))) as? [String: Any] else {
            return check(false, "an event that does not read back: \(String(buffer: event))")
        }
        check(fields["query"] as? String == message.question?.name, "query \(fields["query"] ?? "none") is not \(message.question?.name ?? "none")")
        let names = message.answers.map(\.name), data = message.answers.map(\.data.presentation)
        check((fields["answer_name"] as? [String] ?? []) == names, "answer_name \(fields["answer_name"] ?? "none") is not \(names)")
        check((fields["answer"] as? [String] ?? []) == data, "answer \(fields["answer"] ?? "none") is not \(data)")
    }

    /// Arbitrary bytes in every field: the input is split at 0xFF bytes into the field values.
    static func runFields(_ input: UnsafeRawBufferPointer) {
        var parts = input.split(separator: 0xFF, omittingEmptySubsequences: false).map { Data($0) }
        func take() -> Data { parts.isEmpty ? Data() : parts.removeFirst() }
        func number(_ data: Data) -> UInt64 { data.prefix(8).reduce(0) { $0 << 8 | UInt64($1) } }

        var message = Dnstap_Message()
        // Enum values past the schema (a newer producer's) arrive as unknown fields: they are
        // appended as raw varints below, where the schema has no case for the value.
        var unknownEnums: [UInt8] = []
        let kinds = Array(take().prefix(4))
        func set<E: SwiftProtobuf.Enum>(_ index: Int, field: UInt8, _ assign: (E) -> Void) where E.RawValue == Int {
            guard index < kinds.count else { return }
            if let value = E(rawValue: Int(kinds[index])) {
                assign(value)
            } else {
                unknownEnums += varint(UInt64(field) << 3) + varint(UInt64(kinds[index]))
            }
        }
        set(0, field: 1) { message.type = $0 }
        set(1, field: 2) { message.socketFamily = $0 }
        set(2, field: 3) { message.socketProtocol = $0 }
        set(3, field: 16) { message.httpProtocol = $0 }
        message.queryAddress = take()
        message.responseAddress = take()
        message.queryPort = UInt32(truncatingIfNeeded: number(take()))
        message.responsePort = UInt32(truncatingIfNeeded: number(take()))
        message.queryTimeSec = number(take())
        message.queryTimeNsec = UInt32(truncatingIfNeeded: number(take()))
        message.responseTimeSec = number(take())
        message.responseTimeNsec = UInt32(truncatingIfNeeded: number(take()))
        message.queryZone = take()
        message.queryMessage = take()
        message.responseMessage = take()
        var policy = Dnstap_Policy()
        policy.type = String(decoding: take(), as: UTF8.self)
        policy.value = take()
        if !policy.type.isEmpty || !policy.value.isEmpty { message.policy = policy }

        if !unknownEnums.isEmpty {
            var bytes = serialize(message)
            bytes.writeBytes(unknownEnums)
            guard let reread = try? Dnstap_Message(serializedBytes: Array(bytes.readableBytesView), partial: true) else {
                fatalError("fuzz check failed: a message with unknown enum values does not decode")
            }
            message = reread
        }
        var dnstap = Dnstap_Dnstap()
        dnstap.type = .message
        dnstap.identity = take()
        dnstap.version = take()
        dnstap.extra = take()
        dnstap.message = message
        encode(serialize(dnstap))
    }

    private static func hasEmptyBytes(_ message: Dnstap_Message) -> Bool {
        let policy = message.policy
        return (message.hasQueryAddress && message.queryAddress.isEmpty) || (message.hasResponseAddress && message.responseAddress.isEmpty)
            || (message.hasQueryMessage && message.queryMessage.isEmpty) || (message.hasResponseMessage && message.responseMessage.isEmpty)
            || (message.hasQueryZone && message.queryZone.isEmpty) || (policy.hasType && policy.type.isEmpty)
            || (policy.hasRule && policy.rule.isEmpty) || (policy.hasValue && policy.value.isEmpty)
    }

    private static func varint(_ value: UInt64) -> [UInt8] {
        var value = value
        var bytes: [UInt8] = []
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        return bytes + [UInt8(value)]
    }

    private static func serialize(_ message: some SwiftProtobuf.Message) -> ByteBuffer {
        do {
            return ByteBuffer(bytes: try message.serializedBytes(partial: true) as [UInt8])
        } catch {
            fatalError("fuzz check failed: a built dnstap message does not serialize: \(error)")
        }
    }

    /// The frame's event (checked), or nil when the frame was refused.
    @discardableResult
    private static func encode(_ frame: ByteBuffer) -> ByteBuffer? {
        encodeChecked { try $0.append(frame: frame, receivedAtMicros: receivedAt) }
    }

    /// One message through a fresh encoder by `append`, checked: refused with no event, or exactly
    /// one valid JSON event whose address facts keep the map's rules. The event, or nil if refused.
    static func encodeChecked(_ append: (inout DnstapEventEncoder) throws -> Void) -> ByteBuffer? {
        var encoder = DnstapEventEncoder(collectResolutions: true)
        do {
            try append(&encoder)
        } catch {
            check(encoder.takeEvents().isEmpty, "a refused message still gave an event")
            return nil
        }
        let events = encoder.takeEvents()
        check(events.count == 1, "one message gave \(events.count) events")
        JSONCheck.validateEvent(Array(events[0].json.readableBytesView))
        for observation in encoder.takeResolutions().observations {
            check(observation.name == observation.name.lowercased(), "a name not lowercased: \(observation.name)")
            check(observation.targets.count <= ResolutionExtractor.maxChainHops, "a chain longer than the cut")
        }
        return events[0].json
    }
}
