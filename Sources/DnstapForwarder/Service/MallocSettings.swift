import CDnstapProtobufC

/// glibc's malloc, set at start to keep freed memory that the pipeline will ask for again.
///
/// A read's events are one block of JSON (about 180 KB for a full 64 KiB read), freed by the
/// output's thread once written, a batch of them at a time. By default glibc gives the top of an
/// arena back to the kernel once more than twice the largest block it recently unmapped is free
/// there, so after many batches it returns that memory (`madvise`) and the next reads fault the
/// pages in again, zeroed: 3,000–43,000 page faults a replay of 512,068 messages (`perf stat`), the
/// most with many connections, whose reads are encoded on both event loops at once. Keeping up to
/// 4 MiB free at each arena's top (and serving blocks up to that size from the arenas, not `mmap`)
/// takes them to about 2,000; with 16 senders the system CPU a message falls by about 8 % (README,
/// "Performance"). The cost is at most that much memory per arena kept while idle.
public enum MallocSettings {
    /// Freed memory kept per arena, and the largest block served from an arena.
    public static let keptBytes: Int32 = 4 << 20

    /// glibc's own settings for these, which win: `MALLOC_TRIM_THRESHOLD_`, `MALLOC_MMAP_THRESHOLD_`,
    /// or `glibc.malloc.trim_threshold` / `glibc.malloc.mmap_threshold` in `GLIBC_TUNABLES`.
    static func environmentSetsThresholds(_ environment: [String: String]) -> Bool {
        if environment["MALLOC_TRIM_THRESHOLD_"] != nil || environment["MALLOC_MMAP_THRESHOLD_"] != nil { return true }
        guard let tunables = environment["GLIBC_TUNABLES"] else { return false }
        return tunables.split(separator: ":").contains { tunable in
            let name = tunable.split(separator: "=", maxSplits: 1).first ?? ""
            return name == "glibc.malloc.trim_threshold" || name == "glibc.malloc.mmap_threshold"
        }
    }

    public enum Outcome: Equatable, Sendable {
        /// glibc took the settings.
        case applied
        /// The environment sets glibc's thresholds: left as it says.
        case leftToEnvironment
        /// Not glibc, or it refused them.
        case unavailable
    }

    /// Applies the settings unless the environment sets glibc's thresholds itself. Call it once, at
    /// start, before the pipeline allocates.
    @discardableResult
    public static func apply(environment: [String: String]) -> Outcome {
        if environmentSetsThresholds(environment) { return .leftToEnvironment }
        #if canImport(Glibc)
        return dtf_malloc_keep_freed(keptBytes) == 1 ? .applied : .unavailable
        #else
        return .unavailable
        #endif
    }
}
