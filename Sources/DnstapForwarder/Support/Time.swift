#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The wall clock, in microseconds since the epoch (event and log timestamps; durations use a
/// monotonic clock instead).
public enum WallClock {
    public static func nowMicros() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec) / 1000
    }
}

/// RFC 3339 UTC timestamps with microseconds, as the events carry them (same calendar as the
/// events' `JSONObjectWriter` timestamps).
enum RFC3339 {
    static func string(micros value: Int64) -> String {
        let time = UTCTime(micros: value)
        func pad(_ value: Int64, _ digits: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, digits - text.count)) + text
        }
        let date = pad(time.year, 4) + "-" + pad(Int64(time.month), 2) + "-" + pad(Int64(time.day), 2)
        let clock = pad(time.hour, 2) + ":" + pad(time.minute, 2) + ":" + pad(time.second, 2)
        return date + "T" + clock + "." + pad(time.microsecond, 6) + "Z"
    }
}
