import NIOCore

/// Lets a repeated log line through at most once per interval, counting what it held back.
struct RateLimitedLog {
    let interval: TimeAmount
    private var last: NIODeadline?
    private var suppressed = 0

    init(interval: TimeAmount) { self.interval = interval }

    /// nil: stay quiet. Otherwise log now; the value is how many were suppressed since the last line.
    mutating func shouldLog(now: NIODeadline = .now()) -> Int? {
        if let last, now < last + interval {
            suppressed += 1
            return nil
        }
        last = now
        defer { suppressed = 0 }
        return suppressed
    }
}
