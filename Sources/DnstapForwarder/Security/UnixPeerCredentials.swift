#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// Who is at the other end of a unix socket connection: the kernel's `SO_PEERCRED`, which the
/// peer cannot choose (the events' `sender` on the unix socket).
struct UnixPeerCredentials: Sendable {
    // Linux's `struct ucred` (which Glibc's module hides behind _GNU_SOURCE): pid, uid, gid.
    var pid: Int32
    var uid: UInt32
    var gid: UInt32

    /// `uid=N`, or `uid=?` when the socket cannot tell.
    static func sender(of channel: any Channel) async -> String {
        guard let provider = channel as? any SocketOptionProvider else { return "uid=?" }
        let credentials: UnixPeerCredentials? = try? await provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED)).get()
        return credentials.map { "uid=\($0.uid)" } ?? "uid=?"
    }
}
