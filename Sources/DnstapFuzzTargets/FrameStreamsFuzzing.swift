import DnstapForwarder
import DnstapForwarderTesting
import NIOCore

/// The first two input bytes choose the data frame limit and the chunking; the rest is the stream.
enum FrameStreamsFuzzing {
    enum Outcome: Equatable, CustomStringConvertible {
        case frame(FrameStreamsFrame)
        case failure(String)

        var description: String {
            switch self {
            case .frame(.data(let payload)): "data(\(payload.readableBytes))"
            case .frame(.oversizedData(let length)): "oversized(\(length))"
            case .frame(.control(let control)): "control(\(control.type))"
            case .failure(let error): "error(\(error))"
            }
        }
    }

    static func run(_ input: UnsafeRawBufferPointer) {
        guard input.count >= 2 else { return }
        let seed = UInt16(input[0]) | UInt16(input[1]) << 8
        let stream = UnsafeRawBufferPointer(rebasing: input[2...])
        // A small limit, so oversized frames are skipped across chunk boundaries too.
        let maxFrameLength = 16 + Int(seed & 0x3F)

        let whole = decode(stream, maxFrameLength: maxFrameLength, chunk: { stream.count })
        var random = SplitMix64(seed: UInt64(seed))
        let largest = Int(seed >> 8) % 24 + 1
        let chunked = decode(stream, maxFrameLength: maxFrameLength, chunk: { Int(random.next() % UInt64(largest)) + 1 })
        check(whole == chunked, "chunked decode \(chunked) differs from one-shot decode \(whole)")

        var received = 0
        for outcome in whole {
            if case .frame(.data(let payload)) = outcome {
                check(payload.readableBytes <= maxFrameLength, "a delivered frame over the limit")
                received += 4 + payload.readableBytes
            }
        }
        check(received <= stream.count, "frames longer than the stream")
        drive(whole)
    }

    /// Every frame through the handshake state machine, as a connection would.
    private static func drive(_ outcomes: [Outcome]) {
        var machine = FrameStreamsStateMachine()
        var finished = false
        for outcome in outcomes {
            guard case .frame(let frame) = outcome else { break }
            let action = machine.receive(frame)
            if finished { check(action == .none, "an action after the stream ended: \(action)") }
            if case .deliver = action { check(machine.isHandshakeComplete, "data delivered before START") }
            switch action {
            case .sendFinishAndClose, .close, .protocolViolation: finished = true
            default: break
            }
        }
        if !finished { _ = machine.endOfInput() }
        check(machine.receive(.oversizedData(length: 1)) == .none, "a frame processed after the stream ended")
    }

    private static func decode(
        _ stream: UnsafeRawBufferPointer, maxFrameLength: Int, chunk: () -> Int
    ) -> [Outcome] {
        var decoder = FrameStreamsDecoder(maxFrameLength: maxFrameLength, insaneFrameLength: 1 << 16)
        var buffer = ByteBuffer()
        var outcomes: [Outcome] = []
        var offset = 0
        do {
            while offset < stream.count {
                let count = min(max(chunk(), 1), stream.count - offset)
                buffer.writeBytes(UnsafeRawBufferPointer(rebasing: stream[offset..<(offset + count)]))
                offset += count
                while let frame = try decoder.decode(buffer: &buffer) { outcomes.append(.frame(frame)) }
                buffer.discardReadBytes()
            }
            while let frame = try decoder.decodeLast(buffer: &buffer, seenEOF: true) { outcomes.append(.frame(frame)) }
        } catch {
            outcomes.append(.failure("\(error)"))
        }
        return outcomes
    }
}
