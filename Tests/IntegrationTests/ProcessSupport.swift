import Foundation
import DnstapForwarder

/// A long-running child process whose output is watched for lines, so a test can wait for an
/// event ("start of service") instead of sleeping.
final class WatchedProcess: Sendable {
    let process: Process
    private let box = OutputBox()

    private final class OutputBox: Sendable {
        let state = Locked(OutputState())
    }

    private struct OutputState {
        var text = ""
        var waiters: [(needle: String, continuation: CheckedContinuation<Bool, Never>)] = []
        var ended = false
    }

    /// Standard output's line count, when it is kept apart from standard error.
    let standardOutput: LineCounter?

    /// - Parameter standardOutput: where standard output goes instead (a pipe nobody reads, to
    ///   stall the process's output); otherwise it is watched with standard error, or counted.
    init(
        _ executable: String, _ arguments: [String], separateStandardOutput: Bool = false, standardOutput: Pipe? = nil,
        currentDirectory: String? = nil
    ) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        let pipe = Pipe()
        process.standardError = pipe
        if let standardOutput {
            process.standardOutput = standardOutput
            self.standardOutput = nil
        } else if separateStandardOutput {
            let counter = LineCounter()
            process.standardOutput = counter.pipe
            self.standardOutput = counter
        } else {
            process.standardOutput = pipe
            self.standardOutput = nil
        }
        self.process = process
        readUntilEnd(pipe) { [box] data in
            let ready = box.state.withLock { state -> [(CheckedContinuation<Bool, Never>, Bool)] in
                if data.isEmpty {
                    state.ended = true
                } else {
                    state.text += String(decoding: data, as: UTF8.self)
                }
                let text = state.text
                let done = state.waiters.filter { text.contains($0.needle) || state.ended }
                state.waiters.removeAll { text.contains($0.needle) || state.ended }
                return done.map { ($0.continuation, text.contains($0.needle)) }
            }
            for (waiter, found) in ready { waiter.resume(returning: found) }
        }
        try process.run()
    }

    var text: String { box.state.withLock { $0.text } }

    /// Waits until the output contains `needle`; false if the output ended first.
    func waitFor(_ needle: String) async -> Bool {
        await withCheckedContinuation { continuation in
            let now = box.state.withLock { state -> Bool? in
                if state.text.contains(needle) { return true }
                if state.ended { return false }
                state.waiters.append((needle, continuation))
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// Waits for the process to exit; returns its status.
    func waitForExit() async -> Int32 {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                self.process.waitUntilExit()
                continuation.resume(returning: self.process.terminationStatus)
            }
        }
    }
}

/// Counts the lines a process writes to a pipe; a test can wait for a count.
final class LineCounter: Sendable {
    let pipe = Pipe()
    private let state = Locked<(lines: Int, ended: Bool, waiters: [(Int, CheckedContinuation<Void, Never>)])>((0, false, []))

    init() {
        readUntilEnd(pipe) { [self] data in
            let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                if data.isEmpty { state.ended = true }
                state.lines += data.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
                let lines = state.lines, ended = state.ended
                let ready = state.waiters.filter { lines >= $0.0 || ended }.map(\.1)
                state.waiters.removeAll { lines >= $0.0 || ended }
                return ready
            }
            for waiter in ready { waiter.resume() }
        }
    }

    var lines: Int { state.withLock { $0.lines } }

    /// Waits until `count` lines were written or the pipe closed.
    func waitFor(lines count: Int) async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.lines >= count || state.ended { return true }
                state.waiters.append((count, continuation))
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Waits until the writer closed the pipe (so `lines` is final).
    func waitForEnd() async { await waitFor(lines: .max) }
}

/// Reads `pipe` on a thread of its own until end of file, handing each chunk to `chunk` and an
/// empty one at the end. (FileHandle's readabilityHandler can miss the end of file when it comes
/// with the last data: a writer that exits right after writing left a waiter hanging.)
func readUntilEnd(_ pipe: Pipe, _ chunk: @escaping @Sendable (Data) -> Void) {
    let fd = pipe.fileHandleForReading.fileDescriptor
    let thread = Thread {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            chunk(Data(buffer[0..<count]))
        }
        chunk(Data())
    }
    thread.start()
}

/// A loopback port for a server that another process binds (a resolver, Prometheus, stunnel),
/// chosen at random and free for both TCP and UDP at the moment of asking.
///
/// It is taken from below the kernel's ephemeral range (`ip_local_port_range`): a port from that
/// range, closed and handed to a resolver, could become the source port of any connection the
/// tests open in the meantime, and the resolver then failed with "Address already in use". No
/// port is handed out twice in one run, so suites running side by side do not collide either.
func freePort() throws -> Int {
    if let range = portsBelowEphemeral {
        for _ in 0..<200 {
            let port = Int.random(in: range)
            guard handedOutPorts.withLock({ $0.insert(port).inserted }) else { continue }
            if bindable(port, SOCK_STREAM) && bindable(port, SOCK_DGRAM) { return port }
        }
    }
    // A machine whose ephemeral range starts low: the kernel's choice.
    let (fd, port) = try boundUDPSocket()
    close(fd)
    return port
}

/// Up to 12,000 ports below the kernel's ephemeral range, read once (nil: too few of them).
private let portsBelowEphemeral: Range<Int>? = {
    let start = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
        .flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } } ?? 32768
    let range = max(1024, start - 12000)..<start
    return range.count >= 256 ? range : nil
}()

private let handedOutPorts = Locked(Set<Int>())

/// Whether a socket of this type can bind 127.0.0.1:port now (without SO_REUSEADDR).
private func bindable(_ port: Int, _ type: __socket_type) -> Bool {
    let fd = socket(AF_INET, Int32(type.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return (try? bindLoopback(fd, port: port)) != nil
}

/// Binds fd to 127.0.0.1:port (0: the kernel's choice) and returns the port it got.
@discardableResult
private func bindLoopback(_ fd: Int32, port: Int) throws -> Int {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
            guard bind(fd, pointer, length) == 0 else { return -1 }
            return getsockname(fd, pointer, &length)
        }
    }
    guard bound == 0 else { throw POSIXError(.EADDRINUSE) }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A UDP socket bound to 127.0.0.1 on an ephemeral port, and the port.
func boundUDPSocket() throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    do {
        return (fd, try bindLoopback(fd, port: 0))
    } catch {
        close(fd)
        throw error
    }
}
