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
        } else {
            try waitAfterFailedWrite(fd)
        }
    }
}

/// After a `write(2)` or `writev(2)` that returned -1: returns when trying again makes sense
/// (interrupted; or a descriptor someone else made non-blocking, once it takes more), throws
/// otherwise.
private func waitAfterFailedWrite(_ fd: CInt) throws {
    switch errno {
    case EINTR:
        return
    case EAGAIN:
        var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        _ = poll(&poller, 1, 1000)
    default:
        throw SinkError.writeFailed(errno: errno)
    }
}

/// Writes all the bytes of `vectors` to `fd`, however many `writev(2)` calls that takes (at most
/// `IOV_MAX`, 1,024, vectors a call); the vectors are advanced past what was written.
func writevAll(_ fd: CInt, _ vectors: inout [iovec]) throws {
    let maxVectors = 1024
    var index = 0
    while true {
        while index < vectors.count, vectors[index].iov_len == 0 { index += 1 }
        guard index < vectors.count else { return }
        let count = min(vectors.count - index, maxVectors)
        let written = vectors.withUnsafeBufferPointer { writev(fd, $0.baseAddress! + index, CInt(count)) }
        if written < 0 {
            try waitAfterFailedWrite(fd)
            continue
        }
        var left = written
        while left > 0 {
            let length = vectors[index].iov_len
            if left >= length {
                left -= length
                index += 1
            } else {
                vectors[index].iov_base += left
                vectors[index].iov_len = length - left
                left = 0
            }
        }
    }
}
