import NIOCore
import Testing

@testable import DnstapForwarder

@Suite("Frame Streams state machine")
struct FrameStreamsStateMachineTests {
    let dnstap = FrameStreams.dnstapContentType
    var ready: FrameStreamsFrame { .control(ControlFrame(type: .ready, contentTypes: [dnstap])) }
    var start: FrameStreamsFrame { .control(ControlFrame(type: .start, contentTypes: [dnstap])) }
    let stop = FrameStreamsFrame.control(ControlFrame(type: .stop))
    let data = FrameStreamsFrame.data(ByteBuffer(bytes: [1, 2, 3]))

    @Test("bidirectional: READY → ACCEPT, START, data, STOP → FINISH")
    func bidirectional() {
        var machine = FrameStreamsStateMachine()
        #expect(machine.receive(ready) == .sendAccept)
        #expect(!machine.isHandshakeComplete)
        #expect(machine.receive(start) == .none)
        #expect(machine.phase == .bidirectional)
        #expect(machine.receive(data) == .deliver(ByteBuffer(bytes: [1, 2, 3])))
        #expect(machine.receive(stop) == .sendFinishAndClose)
        #expect(machine.receive(data) == .none, "data after STOP is ignored")
    }

    @Test("unidirectional: START first, STOP closes without FINISH")
    func unidirectional() {
        var machine = FrameStreamsStateMachine()
        #expect(machine.receive(start) == .none)
        #expect(machine.phase == .unidirectional)
        #expect(machine.receive(data) == .deliver(ByteBuffer(bytes: [1, 2, 3])))
        #expect(machine.receive(stop) == .close(.stop))
    }

    @Test("READY and START with no content type are accepted (libfstrm's matching rule)")
    func emptyContentTypes() {
        var machine = FrameStreamsStateMachine()
        #expect(machine.receive(.control(ControlFrame(type: .ready))) == .sendAccept)
        #expect(machine.receive(.control(ControlFrame(type: .start))) == .none)
        #expect(machine.isHandshakeComplete)
    }

    @Test("READY listing several types including dnstap is accepted")
    func severalTypes() {
        var machine = FrameStreamsStateMachine()
        #expect(machine.receive(.control(ControlFrame(type: .ready, contentTypes: [Array("x".utf8), dnstap]))) == .sendAccept)
    }

    @Test(
        "protocol violations close the connection",
        arguments: [
            [FrameStreamsFrame.control(ControlFrame(type: .ready, contentTypes: [Array("protobuf:other".utf8)]))],
            [.control(ControlFrame(type: .start, contentTypes: [Array("protobuf:other".utf8)]))],
            [.control(ControlFrame(type: .start, contentTypes: [FrameStreams.dnstapContentType, FrameStreams.dnstapContentType]))],
            [.data(ByteBuffer(bytes: [1]))],
            [.oversizedData(length: 5_000_000)],
            [.control(ControlFrame(type: .stop))],
            [.control(ControlFrame(type: .unknown(42)))],
            [.control(ControlFrame(type: .accept))],
            [.control(ControlFrame(type: .ready)), .data(ByteBuffer(bytes: [1]))],
            [.control(ControlFrame(type: .ready)), .control(ControlFrame(type: .ready))],
            [.control(ControlFrame(type: .start)), .control(ControlFrame(type: .start))],
            [.control(ControlFrame(type: .start)), .control(ControlFrame(type: .stop, contentTypes: [[1]]))],
        ])
    func violations(frames: [FrameStreamsFrame]) {
        var machine = FrameStreamsStateMachine()
        var last = FrameStreamsStateMachine.Action.none
        for frame in frames { last = machine.receive(frame) }
        guard case .protocolViolation = last else {
            Issue.record("expected a protocol violation, got \(last)")
            return
        }
        #expect(machine.phase == .finished)
    }

    @Test("an unknown control frame in the data phase is skipped; oversized data is counted")
    func skippable() {
        var machine = FrameStreamsStateMachine()
        _ = machine.receive(start)
        #expect(machine.receive(.control(ControlFrame(type: .unknown(99)))) == .skippedUnknownControl(99))
        #expect(machine.receive(.oversizedData(length: 2_000_000)) == .skippedOversized(length: 2_000_000))
        #expect(machine.receive(data) == .deliver(ByteBuffer(bytes: [1, 2, 3])))
    }

    @Test("EOF is a normal end, with or without STOP")
    func endOfInput() {
        var machine = FrameStreamsStateMachine()
        _ = machine.receive(start)
        #expect(machine.endOfInput() == .peerClosed)
        #expect(machine.phase == .finished)
    }
}
