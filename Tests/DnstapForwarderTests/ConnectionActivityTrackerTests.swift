import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import DnstapForwarder

@Suite("/v1/connections: per-client deltas")
struct ConnectionActivityTrackerTests {
    final class MonotonicClock: Sendable {
        let nanos = Atomic<UInt64>(1_000_000_000)
        func advance(seconds: UInt64) { nanos.add(seconds * 1_000_000_000, ordering: .relaxed) }
    }

    struct Fixture {
        let clock = MonotonicClock()
        let tracker: ConnectionActivityTracker
        let registry: ConnectionRegistry

        init(maxClosedPerClient: Int = 1000) {
            var settings = ConnectionActivityTracker.Settings()
            settings.clientTTL = .seconds(120)
            settings.maxClosedPerClient = maxClosedPerClient
            let clock = clock
            tracker = ConnectionActivityTracker(settings: settings, monotonicNanos: { clock.nanos.load(ordering: .relaxed) })
            registry = ConnectionRegistry(maxConnections: 100, activity: tracker)
        }

        func open() -> ConnectionRecord {
            #expect(registry.tryReserve())
            return registry.open(peer: "test", transport: .unix, channel: EmbeddedChannel())
        }

        func fetch(_ client: String) -> ConnectionActivityReport {
            tracker.fetch(clientID: client) { registry.snapshot().map { ConnectionSnapshot($0) } }
        }
    }

    func receive(_ record: ConnectionRecord, frames: Int) {
        record.frames.add(frames, ordering: .relaxed)
        record.noteReceived(bytes: frames * 100)
        record.noteActivity()
    }

    @Test("two clients polling at different rates each get complete, non-overlapping deltas")
    func twoClients() {
        let fixture = Fixture()
        let first = fixture.open()
        _ = fixture.fetch("fast")
        _ = fixture.fetch("slow")
        var fastTotal = 0
        var slowTotal = 0
        receive(first, frames: 10)
        fastTotal += fixture.fetch("fast").active.map(\.delta.frames).reduce(0, +)
        let second = fixture.open()
        receive(first, frames: 5)
        receive(second, frames: 7)
        fastTotal += fixture.fetch("fast").active.map(\.delta.frames).reduce(0, +)
        receive(second, frames: 3)
        fixture.registry.close(second, reason: .stop)
        let fastReport = fixture.fetch("fast")
        #expect(fastReport.active.map(\.connection.id) == [first.id])
        #expect(fastReport.closed.map(\.connection.id) == [second.id])
        #expect(fastReport.closed.first?.delta.frames == 3)
        #expect(fastReport.closed.first?.connection.closeReason == .stop)
        fastTotal += (fastReport.active + fastReport.closed).map(\.delta.frames).reduce(0, +)
        // The slow client fetches once for the same span and sees the same total.
        let slowReport = fixture.fetch("slow")
        slowTotal += (slowReport.active + slowReport.closed).map(\.delta.frames).reduce(0, +)
        #expect(fastTotal == 25)
        #expect(slowTotal == 25)
        #expect(slowReport.closed.first?.delta.frames == 10)
        // A closed connection is reported once per client.
        #expect(fixture.fetch("fast").closed.isEmpty)
        #expect(fixture.fetch("slow").closed.isEmpty)
        #expect(fixture.fetch("fast").active.first?.delta.frames == 0)
    }

    @Test("a new client's first fetch gives counts since each connection opened")
    func firstFetch() throws {
        let fixture = Fixture()
        let record = fixture.open()
        receive(record, frames: 4)
        let report = fixture.fetch("new")
        #expect(report.previousFetchMicros == nil)
        let entry = try #require(report.active.first)
        #expect(entry.delta == ConnectionCounts(frames: 4, bytes: 400, decodeErrors: 0))
        #expect(fixture.fetch("new").previousFetchMicros == report.fetchedAtMicros)
    }

    @Test("clients that stop fetching are forgotten with what was kept for them")
    func clientExpiry() {
        let fixture = Fixture()
        _ = fixture.fetch("gone")
        _ = fixture.fetch("stays")
        let record = fixture.open()
        fixture.registry.close(record, reason: .peerClosed)
        fixture.clock.advance(seconds: 100)
        _ = fixture.fetch("stays")
        #expect(fixture.tracker.clientCount == 2)
        fixture.clock.advance(seconds: 30)
        // "gone" last fetched 130 s ago (TTL 120 s): it is forgotten at the next fetch by anyone.
        _ = fixture.fetch("stays")
        #expect(fixture.tracker.clientCount == 1)
        let again = fixture.fetch("gone")
        #expect(again.previousFetchMicros == nil)
        #expect(again.closed.isEmpty)
    }

    @Test("closed connections kept per client are bounded and the overflow is counted")
    func closedBound() {
        let fixture = Fixture(maxClosedPerClient: 3)
        _ = fixture.fetch("c")
        for _ in 0..<5 {
            let record = fixture.open()
            fixture.registry.close(record, reason: .stop)
        }
        let report = fixture.fetch("c")
        #expect(report.closed.count == 3)
        #expect(report.closedNotKept == 2)
    }
}
