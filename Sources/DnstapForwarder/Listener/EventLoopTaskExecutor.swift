import NIOCore

/// A Swift concurrency task executor that runs its jobs on one SwiftNIO event loop (SE-0417).
///
/// A connection's task prefers its channel's loop: each read is handed from the channel to the
/// task, decoded, encoded and queued on the thread that read it, with no thread woken in between.
/// Run in the task pool instead, every read woke a pool thread and put one to sleep again: on the
/// benchmark's unix replay that was about 1.4 context switches a read, and the same work on the
/// loop costs about 13 % less CPU a message (README, "Performance"). While the task waits (for
/// room in the buffer, or the next read), the loop serves its other channels.
///
/// Nothing on a connection's task may block its thread (the loop has other channels to serve):
/// its waits are all `await`s, and its locks are short.
final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    let loop: any EventLoop

    init(_ loop: any EventLoop) {
        self.loop = loop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { [self] in job.runSynchronously(on: asUnownedTaskExecutor()) }
    }
}

/// One `EventLoopTaskExecutor` for each loop of a group, made once.
struct EventLoopTaskExecutors: Sendable {
    private let executors: [ObjectIdentifier: EventLoopTaskExecutor]

    init(group: any EventLoopGroup) {
        var executors: [ObjectIdentifier: EventLoopTaskExecutor] = [:]
        for loop in group.makeIterator() { executors[ObjectIdentifier(loop)] = EventLoopTaskExecutor(loop) }
        self.executors = executors
    }

    /// The executor of `loop` (a new one for a loop of another group).
    func executor(for loop: any EventLoop) -> EventLoopTaskExecutor {
        executors[ObjectIdentifier(loop)] ?? EventLoopTaskExecutor(loop)
    }
}
