#if canImport(Glibc)
import Glibc
#endif
import Logging

/// The process's open-file limit: raised to the hard limit at start (as Go programs do), and
/// compared with what the connection cap can need.
public enum DescriptorLimit {
    /// Descriptors the service needs besides its dnstap connections: listeners, event loops,
    /// output files and HEC connections, admin connections.
    static let overhead = 64 + 64

    /// Raises the soft limit to the hard one; returns the soft limit in force afterwards.
    @discardableResult
    public static func raiseToHardLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return Int.max }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur == rlim_t.max ? Int.max : Int(clamping: limit.rlim_cur)
    }

    /// Logs a warning when the cap cannot fit under the limit.
    static func warnIfTooLow(maxConnections: Int, logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return }
        let soft = Int(clamping: limit.rlim_cur)
        guard maxConnections + overhead > soft else { return }
        logger.warning(
            "the open-file limit is too low for -max-connections: past about \(max(0, soft - overhead)) connections, new ones are refused; raise ulimit -n",
            metadata: ["open_file_limit": "\(soft)", "max_connections": "\(maxConnections)"])
    }
}
