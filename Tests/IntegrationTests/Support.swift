import DnstapForwarder
import DnstapForwarderTesting
import Foundation
import Logging
import NIOCore
import Testing

/// A forwarder running in this process with an in-memory sink.
struct RunningForwarder {
    let application: ForwarderApplication
    let sink: InMemorySink
    let addresses: [SocketAddress]

    var statistics: ForwarderStatistics { application.statistics }
    var unixPath: String? { addresses.compactMap(\.pathname).first }
    var tcpAddress: SocketAddress? { addresses.first { $0.pathname == nil } }
}

enum TestError: Error, CustomStringConvertible {
    case timedOut(String)
    case missingTool(String)
    case failed(String)

    var description: String {
        switch self {
        case .failed(let what): return what
        case .timedOut(let what): return "timed out: \(what)"
        case .missingTool(let tool): return "\(tool) is not installed (run .ci/run or scripts/install-test-deps.sh)"
        }
    }
}

/// Runs `body` against a forwarder started with `configure`, then shuts it down gracefully and
/// returns the run's summary with the body's result.
func withForwarder<Result: Sendable>(
    _ configure: (inout ForwarderConfiguration) -> Void = { _ in },
    sink: InMemorySink? = InMemorySink(),
    logger: Logger? = nil,
    clock: any Clock<Duration> = ContinuousClock(),
    whileStopping: (@Sendable () async -> Void)? = nil,
    _ body: (RunningForwarder) async throws -> Result
) async throws -> (Result, RunSummary) {
    let directory = try TemporaryDirectory()
    var configuration = ForwarderConfiguration()
    configuration.unixSocketPath = directory.path + "/dnstap.sock"
    configuration.flushInterval = .milliseconds(20)
    configuration.statsInterval = nil
    configuration.adminListen = HostPort(host: "127.0.0.1", port: 0)
    configure(&configuration)
    var quiet = Logger(label: "test")
    quiet.logLevel = ProcessInfo.processInfo.environment["TEST_LOG"] == nil ? .critical : .debug
    let application = try ForwarderApplication(configuration: configuration, sink: sink, signals: [], clock: clock, logger: logger ?? quiet)
    return try await withThrowingTaskGroup(of: RunSummary?.self) { group in
        group.addTask { try await application.run() }
        let addresses = try await application.listener.boundAddresses()
        let forwarder = RunningForwarder(application: application, sink: sink ?? InMemorySink(), addresses: addresses)
        let result: Result
        do {
            result = try await body(forwarder)
        } catch {
            await application.triggerGracefulShutdown()
            _ = try? await group.next()
            throw error
        }
        await application.triggerGracefulShutdown()
        await whileStopping?()
        let summary = try await group.next()!!
        return (result, summary)
    }
}

/// Fails with `TestError.timedOut` if `body` takes longer than `seconds`: a guard so a broken
/// build fails instead of hanging CI, never a way to wait for something (the body waits on events).
/// The bound holds even when `body` is stuck in something that ignores cancellation (a child
/// process that never exits): the test fails at the bound instead of waiting for it.
func within<T: Sendable>(_ seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let race = BoundedWait<T>()
    return try await withCheckedThrowingContinuation { continuation in
        race.waiting.withLock { $0 = continuation }
        race.timer.withLock {
            $0 = Task {
                guard (try? await Task.sleep(for: .seconds(seconds))) != nil else { return }  // cancelled: done in time
                race.work.withLock { $0 }?.cancel()
                race.finish(with: .failure(TestError.timedOut(what)))
            }
        }
        race.work.withLock {
            $0 = Task {
                let result: Result<T, any Error>
                do { result = .success(try await body()) } catch { result = .failure(error) }
                race.finish(with: result)
            }
        }
    }
}

/// `within`'s shared state: whichever of the body and the bound finishes first resumes the caller.
private final class BoundedWait<T: Sendable>: Sendable {
    let waiting = Locked<CheckedContinuation<T, any Error>?>(nil)
    let timer = Locked<Task<Void, Never>?>(nil)
    let work = Locked<Task<Void, Never>?>(nil)

    func finish(with result: Result<T, any Error>) {
        guard let continuation = waiting.withLock({ $0.take() }) else { return }
        timer.withLock { $0 }?.cancel()
        continuation.resume(with: result)
    }
}

/// One complete bidirectional session: READY/ACCEPT/START, the payloads, STOP, and FINISH back.
func sendSession(_ payloads: [[UInt8]], to forwarder: RunningForwarder) async throws {
    let client = try await FrameStreamsTestClient.connect(unixPath: forwarder.unixPath!)
    #expect(try await client.handshake() == .accept)
    try await client.sendData(payloads)
    #expect(try await client.stop() == .finish)
}

/// A short directory under /tmp (unix socket paths must stay under ~104 bytes), removed on deinit.
final class TemporaryDirectory: Sendable {
    let path: String

    init() throws {
        var template = Array("/tmp/dtf-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        path = String(cString: made)
        chmod(path, 0o755)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Finds a program on PATH or in the sbin directories.
func tool(_ name: String) throws -> String {
    let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        + ["/usr/sbin", "/sbin", "/usr/bin"]
    for directory in directories where FileManager.default.isExecutableFile(atPath: directory + "/" + name) {
        return directory + "/" + name
    }
    throw TestError.missingTool(name)
}

struct ProcessResult: Sendable {
    var status: Int32
    var output: String
}

/// Runs a program to completion, without blocking a concurrency thread while it runs.
func run(_ executable: String, _ arguments: [String]) async throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    let status: Int32 = try await withCheckedThrowingContinuation { continuation in
        process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
        do { try process.run() } catch { continuation.resume(throwing: error) }
    }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    return ProcessResult(status: status, output: String(decoding: data, as: UTF8.self))
}

/// The `query` of every event, in order.
func queries(_ lines: [String]) -> [String] {
    lines.compactMap { line in
        (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["query"] as? String
    }
}

/// The package's root, for the built binary and scripts.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
