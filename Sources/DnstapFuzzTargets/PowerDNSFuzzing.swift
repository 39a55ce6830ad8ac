import DnstapForwarder
import DnstapForwarderTesting
import NIOCore
import SwiftProtobuf

/// Arbitrary bytes as one PowerDNS protobuf logging message (`-pdns-listen`): it decodes or is
/// refused, a refused one gives no event, a decoded one gives exactly one valid JSON object, and
/// the address facts taken from it keep the resolution map's rules.
///
/// Differential too, as for dnstap: where swift-protobuf (the test doubles' decoder) also reads
/// the bytes with nothing unknown, the event must be the same as for its canonical re-encoding.
/// Not where a bytes or string field of `question` or `response` is present but empty (libprotobuf-c
/// 1.4.1 loses it when it merges a repeated embedded message; see the dnstap target).
enum PowerDNSFuzzing {
    static func run(_ input: UnsafeRawBufferPointer) {
        guard let event = encode(ByteBuffer(bytes: input)) else { return }
        guard let message = try? PowerDNS_PBDNSMessage(serializedBytes: Array(input), partial: true),
              message.unknownFields.data.isEmpty, message.question.unknownFields.data.isEmpty,
              message.response.unknownFields.data.isEmpty, message.response.rrs.allSatisfy({ $0.unknownFields.data.isEmpty }),
              !hasEmptyFields(message)
        else { return }
        let bytes: [UInt8]
        do {
            bytes = try message.serializedBytes(partial: true)
        } catch {
            fatalError("fuzz check failed: a decoded PowerDNS message does not serialize: \(error)")
        }
        let canonical = encode(ByteBuffer(bytes: bytes))
        check(canonical == event, "libprotobuf-c and swift-protobuf read the bytes differently:\n\(String(buffer: event))\n\(canonical.map { String(buffer: $0) } ?? "(no event)")")
    }

    private static func hasEmptyFields(_ message: PowerDNS_PBDNSMessage) -> Bool {
        let question = message.question
        let response = message.response
        return (question.hasQName && question.qName.isEmpty) || (response.hasAppliedPolicy && response.appliedPolicy.isEmpty)
            || (response.hasAppliedPolicyTrigger && response.appliedPolicyTrigger.isEmpty)
            || (response.hasAppliedPolicyHit && response.appliedPolicyHit.isEmpty)
    }

    /// The message's event (checked), or nil when it was refused.
    private static func encode(_ message: ByteBuffer) -> ByteBuffer? {
        DnstapFuzzing.encodeChecked { try $0.append(powerDNS: message, receivedAtMicros: DnstapFuzzing.receivedAt) }
    }
}
