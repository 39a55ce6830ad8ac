import NIOCore

/// Lets a repeated log line through at most `burst` times per interval, counting what it held back
/// so the next line that gets through can say how many were suppressed.
struct RateLimitedLog {
    let interval: TimeAmount
    let burst: Int
    private var windowStart: NIODeadline?
    private var loggedInWindow = 0
    private var suppressed = 0

    init(interval: TimeAmount, burst: Int = 1) {
        self.interval = interval
        self.burst = max(1, burst)
    }

    /// nil: stay quiet. Otherwise log now; the value is how many were suppressed since the last line.
    mutating func shouldLog(now: NIODeadline = .now()) -> Int? {
        if let windowStart, now < windowStart + interval {
            guard loggedInWindow < burst else {
                suppressed += 1
                return nil
            }
        } else {
            windowStart = now
            loggedInWindow = 0
        }
        loggedInWindow += 1
        defer { suppressed = 0 }
        return suppressed
    }
}
