import NIOCore
import NIOEmbedded
import Testing

@testable import DnstapForwarder

/// How a connection's reads reach its task (`ConnectionReads`): its bookkeeping on its own, then
/// the handler in a pipeline.
@Suite("Connection reads")
struct ConnectionReadsTests {
    static func read(_ byte: UInt8) -> ByteBuffer { ByteBuffer(bytes: [byte]) }

    static func byte(of taken: ConnectionReadQueue.Taken) -> UInt8? {
        if case .read(let bytes) = taken { return bytes.getInteger(at: bytes.readerIndex) }
        return nil
    }

    @Test("reads come out in order, then the end; a read after the end is dropped")
    func orderThenEnd() {
        var queue = ConnectionReadQueue()
        for byte in UInt8(1)...3 { queue.received(Self.read(byte)) }
        queue.finish(.closed)
        queue.received(Self.read(4))
        #expect(Self.byte(of: queue.take().taken) == 1)
        #expect(Self.byte(of: queue.take().taken) == 2)
        #expect(Self.byte(of: queue.take().taken) == 3)
        guard case .end = queue.take().taken else {
            Issue.record("expected the end after the reads")
            return
        }
        guard case .end = queue.take().taken else {
            Issue.record("the end is taken again")
            return
        }
    }

    @Test("nothing to take before a read or an end")
    func nothingYet() {
        var queue = ConnectionReadQueue()
        guard case .nothing = queue.take().taken else {
            Issue.record("expected nothing")
            return
        }
    }

    @Test("an error comes after the reads before it; a later close does not replace it")
    func errorAfterReads() {
        struct Broken: Error {}
        var queue = ConnectionReadQueue()
        queue.received(Self.read(1))
        queue.finish(.failed(Broken()))
        queue.finish(.closed)
        #expect(Self.byte(of: queue.take().taken) == 1)
        guard case .failure(let error) = queue.take().taken else {
            Issue.record("expected the error")
            return
        }
        #expect(error is Broken)
    }

    @Test("a cancellation drops the reads not taken and ends the input")
    func cancellationDrops() {
        var queue = ConnectionReadQueue()
        queue.received(Self.read(1))
        queue.received(Self.read(2))
        queue.finish(.cancelled)
        guard case .end = queue.take().taken else {
            Issue.record("expected the end")
            return
        }
        #expect(queue.reads.isEmpty)
    }

    @Test("with the high watermark of reads waiting, the next read is held until all but the low watermark are taken")
    func backpressure() {
        var queue = ConnectionReadQueue()
        let high = ConnectionReadQueue.highWatermark, low = ConnectionReadQueue.lowWatermark
        for index in 0..<high {
            let passes = queue.readRequested()
            #expect(passes, "read \(index) of \(high) passes")
            queue.received(Self.read(UInt8(index)))
        }
        let passesWhenFull = queue.readRequested()
        #expect(!passesWhenFull)
        #expect(queue.holdingRead)
        var resumed: [Int] = []
        for index in 0..<high {
            let (taken, resume) = queue.take()
            #expect(Self.byte(of: taken) == UInt8(index))
            if resume { resumed.append(queue.reads.count) }
        }
        // Resumed once, when the reads left came down to the low watermark.
        #expect(resumed == [low])
        #expect(!queue.holdingRead)
        let passesAgain = queue.readRequested()
        #expect(passesAgain)
    }

    @Test("a held read is not resumed once the input has ended")
    func noResumeAfterEnd() {
        var queue = ConnectionReadQueue()
        for index in 0..<ConnectionReadQueue.highWatermark { queue.received(Self.read(UInt8(index))) }
        let passes = queue.readRequested()
        #expect(!passes)
        queue.finish(.closed)
        while case .read = queue.take().taken {}
        #expect(queue.holdingRead)
    }

    // MARK: - In a pipeline

    /// Counts the reads that get past `ConnectionReads` towards the socket.
    final class ReadCounter: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = Any
        let count = Locked(0)
        func read(context: ChannelHandlerContext) {
            count.withLock { $0 += 1 }
            context.read()
        }
    }

    static func pipeline() async throws -> (NIOAsyncTestingChannel, ConnectionReads, ReadCounter) {
        let channel = NIOAsyncTestingChannel()
        let counter = ReadCounter()
        let reads = ConnectionReads(eventLoop: channel.eventLoop)
        try await channel.pipeline.addHandlers([counter, reads])
        return (channel, reads, counter)
    }

    @Test("the task takes the reads in order, waits for the next one, and gets nil once the channel closes")
    func handlerOrderWaitClose() async throws {
        let (channel, reads, _) = try await Self.pipeline()
        try await channel.writeInbound(Self.read(1))
        try await channel.writeInbound(Self.read(2))
        #expect(try await reads.next()?.getInteger(at: 0, as: UInt8.self) == 1)
        #expect(try await reads.next()?.getInteger(at: 0, as: UInt8.self) == 2)
        // Waiting, then resumed by the read.
        async let third = reads.next()
        try await channel.writeInbound(Self.read(3))
        #expect(try await third?.getInteger(at: 0, as: UInt8.self) == 3)
        async let end = reads.next()
        try await channel.close()
        #expect(try await end == nil)
        #expect(try await reads.next() == nil)
    }

    @Test("an error in the pipeline is thrown after the reads before it")
    func handlerError() async throws {
        struct Broken: Error {}
        let (channel, reads, _) = try await Self.pipeline()
        try await channel.writeInbound(Self.read(1))
        channel.pipeline.fireErrorCaught(Broken())
        #expect(try await reads.next()?.getInteger(at: 0, as: UInt8.self) == 1)
        await #expect(throws: Broken.self) { try await reads.next() }
        try? await channel.close()
    }

    @Test("a task cancelled while it waits gets nil")
    func handlerCancellation() async throws {
        let (channel, reads, _) = try await Self.pipeline()
        let waiting = Task { try await reads.next() }
        waiting.cancel()
        #expect(try await waiting.value == nil)
        try await channel.close()
    }

    /// The task takes its reads on the channel's event loop (as a connection's task does, through
    /// `EventLoopTaskExecutor`), or from elsewhere.
    @Test(
        "reads stop reaching the socket while the high watermark of reads waits, and resume as the task takes them",
        arguments: [true, false])
    func handlerBackpressure(onLoop: Bool) async throws {
        let (channel, reads, counter) = try await Self.pipeline()
        let executor = EventLoopTaskExecutor(channel.eventLoop)
        for index in 0..<ConnectionReadQueue.highWatermark {
            channel.read()
            try await channel.writeInbound(Self.read(UInt8(index)))
        }
        #expect(counter.count.withLock { $0 } == ConnectionReadQueue.highWatermark)
        channel.read()
        try await channel.testingEventLoop.run()
        #expect(counter.count.withLock { $0 } == ConnectionReadQueue.highWatermark, "held")
        let taking = Task(executorPreference: onLoop ? executor : nil) {
            var onLoopEachTime = true
            for _ in 0..<(ConnectionReadQueue.highWatermark - ConnectionReadQueue.lowWatermark) {
                onLoopEachTime = onLoopEachTime && channel.eventLoop.inEventLoop
                _ = try await reads.next()
            }
            return onLoopEachTime
        }
        #expect(try await taking.value == onLoop)
        try await channel.testingEventLoop.run()
        #expect(counter.count.withLock { $0 } == ConnectionReadQueue.highWatermark + 1, "resumed")
        try await channel.close()
    }
}
