import NIOCore

/// What a connection's channel has read and its task has not yet taken, the end of its input, and
/// whether the socket is being read: the bookkeeping of `ConnectionReads`, with no I/O.
///
/// Up to `highWatermark` reads wait for the task; the pipeline's next read is then held until the
/// task has taken all but `lowWatermark` of them, so a connection whose events wait for room in the
/// buffer stops reading (its sender sees a full socket) instead of queueing more.
struct ConnectionReadQueue {
    static let highWatermark = 8
    static let lowWatermark = 2

    enum Ending {
        /// The channel closed, or its input did: the reads before it are still taken.
        case closed
        /// The channel failed: taken after the reads before it.
        case failed(any Error)
        /// The task was cancelled: the reads not yet taken are dropped.
        case cancelled
    }

    /// What the task takes next.
    enum Taken {
        case read(ByteBuffer)
        /// The input is over (closed or cancelled).
        case end
        case failure(any Error)
        /// Nothing yet: wait.
        case nothing
    }

    private(set) var reads = CircularBuffer<ByteBuffer>(initialCapacity: 4)
    private(set) var ending: Ending?
    /// A read the pipeline asked for and that was held back (the queue was full).
    private(set) var holdingRead = false

    /// The pipeline asks for the next read: true to pass it on, false to hold it (too many reads wait).
    mutating func readRequested() -> Bool {
        guard reads.count < Self.highWatermark else {
            holdingRead = true
            return false
        }
        return true
    }

    /// A read arrived (dropped once the input has ended).
    mutating func received(_ bytes: ByteBuffer) {
        guard ending == nil else { return }
        reads.append(bytes)
    }

    /// The input ended; the first ending counts, except that a cancellation drops what waits.
    mutating func finish(_ ending: Ending) {
        if case .cancelled = ending {
            reads.removeAll()
            self.ending = .cancelled
            return
        }
        if self.ending == nil { self.ending = ending }
    }

    /// The next read, or the end once the reads before it are taken; `resumeReading`: pass on the
    /// read that was held, now.
    mutating func take() -> (taken: Taken, resumeReading: Bool) {
        if let bytes = reads.popFirst() {
            var resume = false
            if holdingRead && reads.count <= Self.lowWatermark && ending == nil {
                holdingRead = false
                resume = true
            }
            return (.read(bytes), resume)
        }
        switch ending {
        case nil: return (.nothing, false)
        case .closed, .cancelled: return (.end, false)
        case .failed(let error): return (.failure(error), false)
        }
    }
}

/// Hands a connection's reads from its channel to its task, the last handler of its pipeline.
///
/// It does what `NIOAsyncChannel`'s inbound stream did for connections, for one element type and
/// one reader: the task takes a read that is already there without suspending (it runs on the
/// channel's event loop, `EventLoopTaskExecutor`), and is resumed by the read that it waits for.
/// `NIOAsyncChannel`'s stream is generic code that the compiler does not specialise across the
/// module: at a resolver's live rate, where a read brings a few messages, its hand-off of each read
/// (runtime generic metadata lookups, a `Deque`, a lock) was about a tenth of the forwarder's CPU
/// (README, "Performance").
///
/// Its state is touched only on the channel's event loop; `next()` checks where it runs and, off
/// the loop, waits through it. Unchecked Sendable for that reason.
final class ConnectionReads: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = Any

    private let eventLoop: any EventLoop
    private var queue = ConnectionReadQueue()
    private var waiter: CheckedContinuation<ByteBuffer?, any Error>?
    private var context: ChannelHandlerContext?

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// The next read; nil once the input is over or the task is cancelled; throws the channel's
    /// error after the reads before it. One caller at a time.
    func next() async throws -> ByteBuffer? {
        if eventLoop.inEventLoop {
            if Task.isCancelled { queue.finish(.cancelled) }
            if let taken = takeNow() { return try taken.get() }
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if eventLoop.inEventLoop {
                    wait(continuation)
                } else {
                    eventLoop.execute { self.wait(continuation) }
                }
            }
        } onCancel: {
            eventLoop.execute { self.finish(.cancelled) }
        }
    }

    /// What there is to take now (a read, nil for the end, or the error), passing on a held read
    /// when the queue has room again; nil if nothing yet.
    private func takeNow() -> Result<ByteBuffer?, any Error>? {
        let (taken, resume) = queue.take()
        if resume { context?.read() }
        switch taken {
        case .read(let bytes): return .success(bytes)
        case .end: return .success(nil)
        case .failure(let error): return .failure(error)
        case .nothing: return nil
        }
    }

    private func wait(_ continuation: CheckedContinuation<ByteBuffer?, any Error>) {
        precondition(waiter == nil, "ConnectionReads.next() called by two tasks at once")
        waiter = continuation
        resumeWaiter()
    }

    private func finish(_ ending: ConnectionReadQueue.Ending) {
        queue.finish(ending)
        resumeWaiter()
    }

    /// Gives the waiting task what there is to take, if anything.
    private func resumeWaiter() {
        guard let waiter, let taken = takeNow() else { return }
        self.waiter = nil
        waiter.resume(with: taken)
    }

    // MARK: - The pipeline's side

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish(.closed)
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        queue.received(unwrapInboundIn(data))
        resumeWaiter()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.closed)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event { finish(.closed) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(.failed(error))
        context.fireErrorCaught(error)
    }

    func read(context: ChannelHandlerContext) {
        if queue.readRequested() { context.read() }
    }
}
