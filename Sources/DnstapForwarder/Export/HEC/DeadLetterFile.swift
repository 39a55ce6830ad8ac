import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Where events HEC rejects for good go instead of vanishing: one JSON line each,
/// `{"dropped_at":…,"reason":…,"reply":…,"event":{…}}`, appended.
final class DeadLetterFile: Sendable {
    let path: String
    private let descriptor: Locked<CInt>

    init(path: String) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw ConfigurationError.invalidValue(.hecDLQPath, path, "cannot open it for appending: \(String(cString: strerror(errno)))")
        }
        self.path = path
        self.descriptor = Locked(fd)
    }

    deinit { descriptor.withLock { _ = close($0) } }

    func append(_ events: ArraySlice<ForwardedEvent>, reason: DropReason, reply: String, logger: Logger) {
        let writer = JSONObjectWriter(capacity: 1024)
        for event in events {
            writer.beginObject()
            writer.field("dropped_at", timestampMicros: WallClock.nowMicros())
            writer.field("reason", reason.rawValue)
            writer.field("reply", reply)
            writer.field("event_time", timestampMicros: event.timeMicros)
            writer.rawField("event", json: event.json)
            writer.endObject()
            writer.newline()
        }
        do {
            try descriptor.withLock { fd in try writeAll(fd, writer.bytes) }
        } catch {
            logger.error("cannot write to the dead-letter file; the events are only counted", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }
}
