#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// One file descriptor held in reserve, for when the process runs out (EMFILE).
///
/// A listening socket with connections waiting is readable for as long as they wait; when every
/// accept fails with EMFILE, an event loop is woken again at once and spins. (SwiftNIO's
/// `AcceptBackoffHandler` cannot help there: its pause starts only after an accept succeeds.) So on
/// EMFILE the listener releases this descriptor; the next accept succeeds, that connection is
/// refused at once (counted and logged), the descriptor is taken back, and NIO's one-second pause
/// holds until the next try. The waiting connections are refused one a second instead of costing a
/// core, and the connections already open are not touched.
public final class DescriptorReserve: Sendable {
    private let descriptor = Locked<Int32>(-1)

    public init() {
        restore()
    }

    /// Whether the reserve was given up and not yet taken back: the process is short of descriptors.
    public var isReleased: Bool { descriptor.withLock { $0 < 0 } }

    /// Gives the descriptor up so that one accept can succeed.
    func release() {
        descriptor.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }

    /// Takes a descriptor again (fails quietly while the process is still out of them).
    func restore() {
        descriptor.withLock { fd in
            if fd < 0 { fd = open("/dev/null", O_RDONLY | O_CLOEXEC) }
        }
    }

    /// A connection accepted on the released reserve: takes the reserve back once it is closed.
    /// The caller closes it (refused).
    func restore(whenClosed channel: any Channel) {
        channel.closeFuture.whenComplete { _ in self.restore() }
    }

    deinit {
        descriptor.withLock { fd in
            if fd >= 0 { close(fd) }
        }
    }
}
