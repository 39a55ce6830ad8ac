import Foundation
import NIOCore
import NIOPosix
import DnstapForwarderTesting
import Testing

@testable import DnstapForwarder

@Suite("event buffer")
struct EventBufferTests {
    func events(_ count: Int, from start: Int = 0) -> [ForwardedEvent] {
        (start..<(start + count)).map { ForwardedEvent(json: ByteBuffer(string: "\($0)"), timeMicros: Int64($0)) }
    }

    func texts(_ batch: [ForwardedEvent]?) -> [String] { (batch ?? []).map { String(buffer: $0.json) } }

    @Test("a full batch is handed over at once, in order")
    func fullBatch() async {
        let buffer = EventBuffer(capacity: 100, timerLoop: MultiThreadedEventLoopGroup.singleton.next())
        #expect(await buffer.append(events(25)) == 0)
        let batch = await buffer.nextBatch(maxCount: 10, flushInterval: .hours(1))
        #expect(texts(batch) == (0..<10).map(String.init))
        #expect(buffer.fill == 25, "the batch being written still counts")
        buffer.complete(10)
        #expect(buffer.fill == 15)
    }

    @Test("a backlog is taken in one go up to the backlog count; a batch still waits for the batch size")
    func backlog() async {
        let buffer = EventBuffer(capacity: 100, timerLoop: MultiThreadedEventLoopGroup.singleton.next())
        #expect(await buffer.append(events(45)) == 0)
        #expect(texts(await buffer.nextBatch(maxCount: 10, backlogCount: 40, flushInterval: .hours(1))) == (0..<40).map(String.init))
        buffer.complete(40)
        // 5 left: fewer than the batch size, and the flush interval has not passed.
        async let next = buffer.nextBatch(maxCount: 10, backlogCount: 40, flushInterval: .hours(1))
        _ = await buffer.append(events(5, from: 45))
        #expect(texts(await next) == (40..<50).map(String.init))
    }

    @Test("a partial batch is handed over once the flush interval passes")
    func flushInterval() async {
        let buffer = EventBuffer(capacity: 100, timerLoop: MultiThreadedEventLoopGroup.singleton.next())
        async let batch = buffer.nextBatch(maxCount: 10, flushInterval: .milliseconds(20))
        _ = await buffer.append(events(3))
        #expect(texts(await batch) == ["0", "1", "2"])
    }

    @Test(
        "a consumer parked on an empty queue gets a partial batch by the flush timer its first element's producer armed, on its own event loop or the timer loop",
        .timeLimit(.minutes(1)), arguments: [true, false])
    func flushTimerArmedByProducer(onEventLoop: Bool) async {
        let buffer = EventBuffer(capacity: 100, timerLoop: MultiThreadedEventLoopGroup.singleton.next())
        let interval = TimeAmount.milliseconds(30)
        async let batch = buffer.nextBatch(maxCount: 10, flushInterval: interval)
        while !buffer.consumerIsWaiting { await Task.yield() }
        let start = NIODeadline.now()
        let events = events(3)
        if onEventLoop {
            // As a connection's task does it: on its channel's event loop.
            let executor = EventLoopTaskExecutor(MultiThreadedEventLoopGroup.singleton.next())
            await Task(executorPreference: executor) {
                #expect(MultiThreadedEventLoopGroup.currentEventLoop != nil)
                return await buffer.append(events)
            }.value
        } else {
            _ = await buffer.append(events)
        }
        #expect(texts(await batch) == ["0", "1", "2"])
        #expect(NIODeadline.now() - start >= interval, "handed over by the flush timer, not before")
    }

    @Test("when full, append waits until the consumer frees room: nothing is dropped")
    func backpressure() async {
        let buffer = EventBuffer(capacity: 10, timerLoop: MultiThreadedEventLoopGroup.singleton.next())
        #expect(await buffer.append(events(10)) == 0)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { #expect(await buffer.append(self.events(5, from: 10)) == 0) }
            // The producer is parked: the buffer still holds exactly its capacity.
            var received: [String] = []
            while received.count < 15 {
                let batch = await buffer.nextBatch(maxCount: 5, flushInterval: .milliseconds(1))
                #expect(buffer.fill <= 10)
                received += texts(batch)
                buffer.complete(batch?.count ?? 0)
            }
            #expect(received == (0..<15).map(String.init))
        }
    }

    @Test("close: the consumer drains what is left, then gets nil; later appends are refused")
    func close() async {
        let buffer = EventBuffer(capacity: 10, timerLoop: MultiThreadedEventLoopGroup.singleton.next())
        _ = await buffer.append(events(3))
        buffer.close()
        #expect(texts(await buffer.nextBatch(maxCount: 10, flushInterval: .hours(1))) == ["0", "1", "2"])
        buffer.complete(3)
        #expect(await buffer.nextBatch(maxCount: 10, flushInterval: .hours(1)) == nil)
        #expect(await buffer.append(events(2)) == 2)
    }

    @Test("a waiting consumer wakes when the buffer closes")
    func closeWakesConsumer() async {
        let buffer = EventBuffer(capacity: 10, timerLoop: MultiThreadedEventLoopGroup.singleton.next())
        async let batch = buffer.nextBatch(maxCount: 10, flushInterval: .hours(1))
        buffer.close()
        #expect(await batch == nil)
    }

    @Test("a waiting consumer and a producer waiting for room both return when their task is cancelled")
    func cancellation() async {
        let buffer = EventBuffer(capacity: 5, timerLoop: MultiThreadedEventLoopGroup.singleton.next())
        let consumer = Task { await buffer.nextBatch(maxCount: 10, flushInterval: .hours(1)) }
        consumer.cancel()
        #expect(await consumer.value == nil, "the consumer's wait ends on cancellation, the buffer still open")
        #expect(await buffer.append(events(5)) == 0)
        let producer = Task { await buffer.append(self.events(3, from: 5)) }
        // Synchronise on the producer having found the buffer full: it is parked then, or it
        // saw the cancellation first; either way it must return the 3 it could not place.
        producer.cancel()
        #expect(await producer.value == 3)
        #expect(buffer.fill == 5)
    }
}

@Suite("rate-limited log")
struct RateLimitedLogTests {
    @Test("a burst per window gets through, the rest is counted and reported by the next line")
    func burst() {
        var limiter = RateLimitedLog(interval: .seconds(1), burst: 3)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let results = (0..<5).map { _ in limiter.shouldLog(now: start) }
        #expect(results == [0, 0, 0, nil, nil])
        #expect(limiter.shouldLog(now: start + .seconds(2)) == 2)
    }
}

@Suite("stdout sink")
struct JSONLinesSinkTests {
    static func pipeSize(_ fd: CInt) -> CInt { fcntl(fd, 1032) }  // F_GETPIPE_SZ

    @Test("a pipe as the output gets a 1 MiB buffer, and its lines arrive whole; a file is left as it is")
    func widensAPipe() async throws {
        var ends: [CInt] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]) }
        #expect(Self.pipeSize(ends[1]) < JSONLinesSink.pipeBufferBytes, "Linux's default is 64 KiB")
        let sink = JSONLinesSink(fileDescriptor: ends[1])
        // Required: otherwise the write below would wait for a reader that never comes.
        try #require(Self.pipeSize(ends[1]) == JSONLinesSink.pipeBufferBytes)
        // 1,000 lines of 700 bytes: more than the default buffer, less than the new one; the write
        // returns without a reader.
        let line = ByteBuffer(string: "{\"a\":\"" + String(repeating: "x", count: 692) + "\"}")
        let result = try await sink.write(Array(repeating: ForwardedEvent(json: line, timeMicros: 0), count: 1_000))
        #expect(result.delivered == 1_000)
        await sink.shutdown()
        close(ends[1])
        var read = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = Glibc.read(ends[0], &chunk, chunk.count)
            if count <= 0 { break }
            read += chunk[..<count]
        }
        #expect(read.count == 1_000 * 701)
        #expect(read.split(separator: UInt8(ascii: "\n")).allSatisfy { $0.count == 700 })

        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sink-\(UUID().uuidString)").path
        let file = open(path, O_CREAT | O_WRONLY, 0o600)
        defer { close(file); unlink(path) }
        JSONLinesSink.widenPipe(file)
        #expect(Self.pipeSize(file) == -1, "not a pipe: no pipe size")
    }

    /// Everything a pipe's read end gives until its write end is closed.
    static func drain(_ fd: CInt) -> [UInt8] {
        var read = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = Glibc.read(fd, &chunk, chunk.count)
            if count <= 0 { return read }
            read += chunk[..<count]
        }
    }

    /// The events of one read, as a connection's encoder gives them.
    static func encodedRead(_ names: [String]) throws -> [ForwardedEvent] {
        var encoder = DnstapEventEncoder()
        for name in names {
            let frame = DnstapBuilder.message(type: .clientQuery, query: DNSWireBuilder.query(name: name), responseTime: nil)
            try encoder.append(frame: ByteBuffer(bytes: frame), receivedAtMicros: 0)
        }
        return encoder.takeEvents()
    }

    @Test("the events of a read are written as one vector straight from the encoder's buffer; other events each with their newline")
    func writesReadsAsRuns() throws {
        let first = try Self.encodedRead((0..<50).map { "a\($0).test" })
        let second = try Self.encodedRead(["b0.test", "b1.test"])
        let loose = [ForwardedEvent(json: ByteBuffer(string: "{\"loose\":1}"), timeMicros: 0), ForwardedEvent(json: ByteBuffer(), timeMicros: 0)]
        // The second read's events out of order: not adjacent, so not one run.
        let events = first + loose + [second[1], second[0]] + first.prefix(3)
        var ends: [CInt] = [0, 0]
        try #require(pipe(&ends) == 0)
        defer { close(ends[0]) }
        var vectors: [iovec] = []
        try JSONLinesSink.writeLines(events[...], to: ends[1], vectors: &vectors)
        close(ends[1])
        let expected = events.map { String(buffer: $0.json) + "\n" }.joined()
        #expect(String(decoding: Self.drain(ends[0]), as: UTF8.self) == expected)
        // first: a run and its newline; loose: 2 + 1 (the empty one's newline alone); second[1],
        // second[0]: 2 each; first's first three again: one run and its newline.
        #expect(vectors.count == 2 + 3 + 4 + 2)
        #expect(first.allSatisfy { !$0.json.readableBytesView.contains(UInt8(ascii: "\n")) }, "an event's json has no newline")
    }

    @Test("a write the pipe takes in pieces (non-blocking, 4 KiB) still writes every vector's bytes, in order")
    func writesInPieces() throws {
        var ends: [CInt] = [0, 0]
        try #require(pipe(&ends) == 0)
        _ = fcntl(ends[1], 1031, 4096)  // F_SETPIPE_SZ: the smallest
        _ = fcntl(ends[1], F_SETFL, fcntl(ends[1], F_GETFL) | O_NONBLOCK)
        let lines = (0..<3_000).map { "{\"n\":\($0),\"pad\":\"" + String(repeating: "p", count: $0 % 97) + "\"}" }
        let events = lines.map { ForwardedEvent(json: ByteBuffer(string: $0), timeMicros: 0) }
        // The reader on a thread of its own (a blocking read would hold a thread of the task pool).
        let reader = ends[0]
        let read = Locked<[UInt8]>([])
        let done = DispatchSemaphore(value: 0)
        Thread {
            read.withLock { $0 = Self.drain(reader) }
            done.signal()
        }.start()
        var vectors: [iovec] = []
        try JSONLinesSink.writeLines(events[...], to: ends[1], vectors: &vectors)
        close(ends[1])
        done.wait()
        close(ends[0])
        #expect(vectors.count == 6_000, "each event and its newline: more than one writev's 1,024")
        #expect(String(decoding: read.withLock { $0 }, as: UTF8.self) == lines.map { $0 + "\n" }.joined())
    }
}
