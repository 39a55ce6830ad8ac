import DnstapForwarderTesting
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import DnstapForwarder

/// The frame splitting of a connection's reads (`StreamSplitter`), and the encoders its reads
/// borrow (`EncoderPool`): what a connection keeps between reads.
@Suite("Stream splitter and encoder pool")
struct StreamSplitterTests {
    /// Data frames of 1 to 3,000 bytes (each payload's bytes say which frame it is).
    static func payloads(_ count: Int) -> [[UInt8]] {
        (0..<count).map { index in
            [UInt8](repeating: UInt8(index % 251), count: 1 + (index * 7919) % 3_000)
        }
    }

    static func split(_ stream: [UInt8], at cuts: [Int]) -> [ByteBuffer] {
        var reads: [ByteBuffer] = []
        var start = 0
        for cut in cuts.sorted() + [stream.count] where cut > start {
            reads.append(ByteBuffer(bytes: stream[start..<cut]))
            start = cut
        }
        return reads
    }

    @Test("every way of cutting a stream into reads gives the same frames, in order")
    func anySplitSameFrames() throws {
        let payloads = Self.payloads(200)
        let stream = payloads.flatMap(FrameStreamsFile.dataFrame)
        var random = SystemRandomNumberGenerator()
        for round in 0..<50 {
            // From one-byte reads (round 0: every 3rd byte) to a few large ones.
            let cuts = round == 0
                ? Array(stride(from: 3, to: stream.count, by: 3))
                : (0..<Int.random(in: 1...400, using: &random)).map { _ in Int.random(in: 1..<stream.count, using: &random) }
            let splitter = StreamSplitter(FrameStreamsDecoder(maxFrameLength: 1 << 20))
            var got: [[UInt8]] = []
            for read in Self.split(stream, at: cuts) {
                try splitter.process(buffer: read) { frame in
                    if case .data(let payload) = frame { got.append(Array(payload.readableBytesView)) }
                }
            }
            try splitter.finishProcessing(seenEOF: true) { _ in Issue.record("a frame after the last") }
            #expect(got == payloads, "round \(round): \(cuts.count) cuts")
            #expect(splitter.carried == nil)
        }
    }

    @Test("a frame cut by the end of a read is kept as a copy of its bytes, not as the read")
    func cutFrameIsCopied() throws {
        let payloads = Self.payloads(3)
        let stream = payloads.flatMap(FrameStreamsFile.dataFrame)
        let firstTwo = FrameStreamsFile.dataFrame(payloads[0]).count + FrameStreamsFile.dataFrame(payloads[1]).count
        // Two whole frames and the first 10 bytes of the third.
        let read = ByteBuffer(bytes: stream[..<(firstTwo + 10)])
        let splitter = StreamSplitter(FrameStreamsDecoder(maxFrameLength: 1 << 20))
        var frames = 0
        try splitter.process(buffer: read) { _ in frames += 1 }
        #expect(frames == 2)
        #expect(splitter.carried?.readableBytes == 10)
        let readRange = read.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!)..<UInt(bitPattern: $0.baseAddress! + $0.count) }
        let carried = try #require(splitter.carried)
        let carriedStart = carried.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) }
        #expect(!readRange.contains(carriedStart), "the carried bytes are the read's own memory")
        #expect(carried.capacity < 64, "a right-sized copy, not a read-sized one: \(carried.capacity)")
        // The rest of the frame completes it.
        var third: [[UInt8]] = []
        try splitter.process(buffer: ByteBuffer(bytes: stream[(firstTwo + 10)...])) { frame in
            if case .data(let payload) = frame { third.append(Array(payload.readableBytesView)) }
        }
        #expect(third == [payloads[2]])
        #expect(splitter.carried == nil, "nothing is kept once a read ends on a frame's end")
    }

    @Test("a stream that ends inside a frame is an error at the end, after the whole frames")
    func truncatedAtTheEnd() throws {
        let payloads = Self.payloads(2)
        let stream = payloads.flatMap(FrameStreamsFile.dataFrame)
        let splitter = StreamSplitter(FrameStreamsDecoder(maxFrameLength: 1 << 20))
        var frames = 0
        try splitter.process(buffer: ByteBuffer(bytes: stream.dropLast(5))) { _ in frames += 1 }
        #expect(frames == 1)
        #expect(throws: FrameStreamsError.self) { try splitter.finishProcessing(seenEOF: true) { _ in } }
    }

    @Test("connections borrow encoders for a read: the pool keeps at most its bound, and one connection's sender never shows in another's events")
    func encodersAreLent() async throws {
        let pool = EncoderPool(resolutionMap: nil, maxIdle: 2)
        let frame = ByteBuffer(bytes: DnstapBuilder.pair(name: "a.test", id: 1)[1])
        let splitCount = EventEncodingLanes.splitBytes / frame.readableBytes + 1
        #expect(EventEncodingLanes.splitsRead(Array(repeating: frame, count: splitCount)))
        var senders: [String?] = []
        let connections = 20
        for index in 0..<connections {
            let record = ConnectionRecord(id: UInt64(index), peer: "test", transport: .unix, channel: EmbeddedChannel())
            if index % 2 == 0 { record.setSender("resolver\(index).test") }
            let lanes = EventEncodingLanes(
                record: record, statistics: ForwarderStatistics(), resolutionMap: nil, pool: pool, logger: Logger(label: "test"))
            // A split read (both lanes) and a small one.
            for count in [splitCount, 3] {
                let events = await lanes.encode(Array(repeating: frame, count: count))
                #expect(events.count == count)
                for event in events {
                    let object = try #require(try JSONSerialization.jsonObject(with: Data(event.json.readableBytesView)) as? [String: Any])
                    senders.append(object["sender"] as? String)
                    #expect(object["sender"] as? String == (index % 2 == 0 ? "resolver\(index).test" : nil))
                }
            }
        }
        #expect(senders.count == connections * (splitCount + 3))
        #expect(pool.idleCount >= 1 && pool.idleCount <= 2, "kept: \(pool.idleCount)")
    }

    @Test("a read is split across two lanes only when it nearly fills the largest receive buffer (the connection is behind)")
    func splitOnlyWhenBehind() {
        let frame = ByteBuffer(repeating: 0, count: 100)
        let atThreshold = (EventEncodingLanes.splitBytes + 99) / 100
        #expect(EventEncodingLanes.splitsRead(Array(repeating: frame, count: atThreshold)))
        #expect(!EventEncodingLanes.splitsRead(Array(repeating: frame, count: atThreshold - 1)))
        #expect(!EventEncodingLanes.splitsRead(Array(repeating: frame, count: 128)), "128 small frames: keeping up")
        #expect(!EventEncodingLanes.splitsRead([ByteBuffer(repeating: 0, count: EventEncodingLanes.splitBytes)]), "one frame has no halves")
        #expect(EventEncodingLanes.splitBytes <= DnstapListener.largestRead)
    }
}
