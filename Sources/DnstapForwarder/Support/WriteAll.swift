#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes all of `bytes` to `fd`, however many `write(2)` calls that takes.
func writeAll(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws {
    var offset = 0
    while offset < bytes.count {
        let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
        if written >= 0 {
            offset += written
            continue
        }
        switch errno {
        case EINTR:
            continue
        case EAGAIN:
            // A descriptor someone else made non-blocking: wait until it takes more.
            var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&poller, 1, 1000)
        default:
            throw SinkError.writeFailed(errno: errno)
        }
    }
}
