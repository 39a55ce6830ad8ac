import NIOCore
import NIOPosix
import Testing

@testable import DnstapForwarder

@Suite("a connection's task on its event loop")
struct EventLoopTaskExecutorTests {
    @Test("a task preferring a loop's executor runs on that loop, before and after it waits; its child sent to the pool does not")
    func runsOnItsLoop() async {
        let group = MultiThreadedEventLoopGroup.singleton
        let executors = EventLoopTaskExecutors(group: group)
        let loop = group.next()
        let task = Task(executorPreference: executors.executor(for: loop)) {
            let before = loop.inEventLoop
            try? await Task.sleep(for: .milliseconds(5))
            let after = loop.inEventLoop
            let child = await withTaskGroup(of: Bool.self) { group in
                group.addTask(executorPreference: globalConcurrentExecutor) { loop.inEventLoop }
                return await group.next()!
            }
            return (before, after, child, loop.inEventLoop)
        }
        let (before, after, child, afterChild) = await task.value
        #expect(before && after && afterChild)
        #expect(!child, "the child ran in the task pool")
        #expect(!loop.inEventLoop, "the test itself is not on the loop")
    }

    @Test("one executor a loop of the group, made once; a loop of another group gets its own")
    func oneForEachLoop() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        defer { try? group.syncShutdownGracefully() }
        let executors = EventLoopTaskExecutors(group: group)
        let loops = Array(group.makeIterator())
        #expect(Set(loops.map { ObjectIdentifier(executors.executor(for: $0)) }).count == 3)
        for loop in loops {
            #expect(executors.executor(for: loop) === executors.executor(for: loop))
            #expect(executors.executor(for: loop).loop === loop)
        }
        let other = MultiThreadedEventLoopGroup.singleton.next()
        #expect(executors.executor(for: other).loop === other)
    }
}
