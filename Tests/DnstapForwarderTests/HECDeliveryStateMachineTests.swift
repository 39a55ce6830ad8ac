import NIOCore
import Testing

@testable import DnstapForwarder

/// HEC's delivery policy: backoff, the circuit breaker, indexer acknowledgement, with no I/O.
@Suite("HEC delivery state machine")
struct HECDeliveryStateMachineTests {
    static let t0 = NIODeadline.uptimeNanoseconds(5_000_000_000)
    typealias Machine = HECDeliveryStateMachine

    static func policy(_ change: (inout Machine.Policy) -> Void = { _ in }) -> Machine.Policy {
        var policy = Machine.Policy()
        policy.retryInitialDelay = .milliseconds(100)
        policy.retryMaxDelay = .seconds(2)
        policy.circuitBreakerThreshold = 4
        change(&policy)
        return policy
    }

    static let busy = HECVerdict.retry(reason: "HTTP 503", retryAfterSeconds: nil)

    static func pool(_ count: Int = 1, _ policy: Machine.Policy = Self.policy()) -> HECEndpointPool {
        HECEndpointPool(count: count, policy: policy)
    }

    @Test("transient failures back off exponentially, capped, jitter scaling it; Retry-After is a floor")
    func backoff() {
        var pool = Self.pool(1, Self.policy { $0.circuitBreakerThreshold = 100 })
        var machine = Machine(policy: pool.policy)
        #expect(machine.next(&pool, jitter: 1) == .post(endpoint: 0))
        #expect(machine.posted(Self.busy, pool: &pool, now: Self.t0, jitter: 1) == .retry(after: .milliseconds(100)))
        #expect(machine.next(&pool, jitter: 1) == .post(endpoint: 0))
        #expect(machine.posted(Self.busy, pool: &pool, now: Self.t0, jitter: 1) == .retry(after: .milliseconds(200)))
        #expect(machine.next(&pool, jitter: 1) == .post(endpoint: 0))
        #expect(machine.posted(Self.busy, pool: &pool, now: Self.t0, jitter: 0.5) == .retry(after: .milliseconds(200)), "400 ms with half jitter")
        for _ in 0..<10 {
            _ = machine.next(&pool, jitter: 1)
            _ = machine.posted(Self.busy, pool: &pool, now: Self.t0, jitter: 1)
        }
        #expect(machine.next(&pool, jitter: 1) == .post(endpoint: 0))
        #expect(machine.posted(Self.busy, pool: &pool, now: Self.t0, jitter: 1) == .retry(after: .seconds(2)), "capped at the max delay")
        #expect(machine.next(&pool, jitter: 1) == .post(endpoint: 0))
        let slowDown = HECVerdict.retry(reason: "HTTP 429", retryAfterSeconds: 30)
        #expect(machine.posted(slowDown, pool: &pool, now: Self.t0, jitter: 1) == .retry(after: .seconds(30)))
        #expect(machine.failures == 15)
        #expect(pool.members[0].failures == 15)
        #expect(!pool.isOpen(0))
    }

    @Test("the circuit opens after the threshold; the request waits for it; unhealthy probes back off; a healthy one closes it")
    func circuitBreaker() {
        var pool = Self.pool()
        var machine = Machine(policy: pool.policy)
        for _ in 0..<3 {
            _ = machine.next(&pool, jitter: 1)
            guard case .retry = machine.posted(Self.busy, pool: &pool, now: Self.t0, jitter: 1) else {
                Issue.record("below the threshold: back off")
                return
            }
        }
        #expect(pool.takeChanges().isEmpty)
        _ = machine.next(&pool, jitter: 1)
        #expect(machine.posted(Self.busy, pool: &pool, now: Self.t0, jitter: 1) == .awaitEndpoint, "the fourth failure opens the circuit")
        #expect(pool.takeChanges() == [.opened(endpoint: 0, failures: 4)])
        #expect(pool.allOpen)
        #expect(pool.probeDelay(0, jitter: 1) == .milliseconds(100), "the first probe after the first retry delay")
        #expect(pool.probeDelay(0, jitter: 0.5) == .milliseconds(50))
        pool.probed(0, healthy: false)
        #expect(pool.probeDelay(0, jitter: 1) == .milliseconds(200), "doubling with each unhealthy probe")
        for _ in 0..<10 { pool.probed(0, healthy: false) }
        #expect(pool.probeDelay(0, jitter: 1) == .seconds(2), "capped at the max delay")
        #expect(machine.next(&pool, jitter: 1) == .awaitEndpoint, "still open: wait on")
        pool.probed(0, healthy: true)
        #expect(pool.takeChanges() == [.closed(endpoint: 0)])
        #expect(pool.probeDelay(0, jitter: 1) == nil, "closed: its prober parks")
        #expect(machine.next(&pool, jitter: 1) == .post(endpoint: 0))
        #expect(machine.posted(.delivered(ackID: nil), pool: &pool, now: Self.t0, jitter: 1) == .finished(.delivered(ackID: nil)))
        #expect(pool.members[0] == .init(), "failures forgotten once it answers")
    }

    @Test("a refused token keeps retrying without opening the circuit; final answers end it")
    func tokenAndFinalAnswers() {
        var pool = Self.pool()
        var machine = Machine(policy: pool.policy)
        for attempt in 1...10 {
            _ = machine.next(&pool, jitter: 1)
            guard case .retry = machine.posted(.authenticationFailed("HTTP 403"), pool: &pool, now: Self.t0, jitter: 1) else {
                Issue.record("attempt \(attempt): a 403 is retried")
                return
            }
        }
        #expect(!pool.isOpen(0))
        for verdict in [HECVerdict.rejected("HTTP 400"), .tooLarge, .invalidEvent(index: 2, reason: "x")] {
            var fresh = Machine(policy: pool.policy)
            _ = fresh.next(&pool, jitter: 1)
            #expect(fresh.posted(verdict, pool: &pool, now: Self.t0, jitter: 1) == .finished(verdict))
        }
    }

    @Test("with acknowledgement: polled at the endpoint that took it until acked; no ack by the timeout sends again, anywhere")
    func acknowledgement() {
        var pool = Self.pool(2, Self.policy {
            $0.acknowledgements = true
            $0.ackPollInterval = .seconds(1)
            $0.ackTimeout = .seconds(3)
        })
        var machine = Machine(policy: pool.policy)
        #expect(machine.next(&pool, jitter: 1) == .post(endpoint: 0))
        #expect(machine.posted(.delivered(ackID: 7), pool: &pool, now: Self.t0, jitter: 1) == .pollAck(endpoint: 0, ackID: 7, after: .seconds(1)))
        #expect(machine.polled(acknowledged: false, now: Self.t0 + .seconds(1)) == .pollAck(endpoint: 0, ackID: 7, after: .seconds(1)))
        #expect(machine.polled(acknowledged: false, now: Self.t0 + .seconds(2)) == .pollAck(endpoint: 0, ackID: 7, after: .seconds(1)))
        #expect(machine.polled(acknowledged: false, now: Self.t0 + .seconds(3)) == .resendUnacknowledged(endpoint: 0, ackID: 7))
        #expect(machine.failures == 1)
        #expect(machine.next(&pool, jitter: 1) == .post(endpoint: 1), "resent to the next endpoint in turn")
        #expect(machine.posted(.delivered(ackID: 8), pool: &pool, now: Self.t0 + .seconds(4), jitter: 1) == .pollAck(endpoint: 1, ackID: 8, after: .seconds(1)))
        #expect(machine.polled(acknowledged: true, now: Self.t0 + .seconds(5)) == .finished(.delivered(ackID: 8)))
        #expect(machine.endpoint == 1)
        var noID = Machine(policy: machine.policy)
        _ = noID.next(&pool, jitter: 1)
        #expect(noID.posted(.delivered(ackID: nil), pool: &pool, now: Self.t0, jitter: 1) == .finished(.delivered(ackID: nil)), "no ackId: taken as delivered")
    }

    @Test("several endpoints: requests go round-robin; a failure moves on at once; the round's failures then back off")
    func roundRobinAndFailover() {
        var pool = Self.pool(3, Self.policy { $0.circuitBreakerThreshold = 100 })
        var chosen: [Int] = []
        for _ in 0..<6 {
            var machine = Machine(policy: pool.policy)
            guard case .post(let endpoint) = machine.next(&pool, jitter: 1) else {
                Issue.record("an endpoint")
                return
            }
            chosen.append(endpoint)
            _ = machine.posted(.delivered(ackID: nil), pool: &pool, now: Self.t0, jitter: 1)
        }
        #expect(chosen == [0, 1, 2, 0, 1, 2])
        var machine = Machine(policy: pool.policy)
        #expect(machine.next(&pool, jitter: 1) == .post(endpoint: 0))
        #expect(machine.posted(Self.busy, pool: &pool, now: Self.t0, jitter: 1) == .post(endpoint: 1), "another endpoint, no wait")
        let slowDown = HECVerdict.retry(reason: "HTTP 429", retryAfterSeconds: 3)
        #expect(machine.posted(slowDown, pool: &pool, now: Self.t0, jitter: 1) == .post(endpoint: 2))
        #expect(machine.posted(Self.busy, pool: &pool, now: Self.t0, jitter: 1) == .retry(after: .seconds(3)), "all three failed: wait, at least the round's Retry-After")
        #expect(machine.next(&pool, jitter: 1) == .post(endpoint: 0))
        #expect(machine.posted(Self.busy, pool: &pool, now: Self.t0, jitter: 1) == .post(endpoint: 1))
        #expect(machine.posted(.delivered(ackID: nil), pool: &pool, now: Self.t0, jitter: 1) == .finished(.delivered(ackID: nil)))
        #expect(machine.endpoint == 1)
        #expect(pool.members.map(\.failures) == [2, 0, 1], "each endpoint's own failures in a row; an answer resets them")
    }

    @Test("one endpoint's open circuit takes it out of the round until its probe is healthy; all open: wait for one")
    func perEndpointBreaker() {
        var pool = Self.pool(3, Self.policy { $0.circuitBreakerThreshold = 2 })
        // Endpoint 1 fails twice (two requests): its circuit opens; the others are untouched.
        for _ in 0..<2 {
            var machine = Machine(policy: pool.policy)
            var action = machine.next(&pool, jitter: 1)
            while action != .post(endpoint: 1) {
                _ = machine.posted(.delivered(ackID: nil), pool: &pool, now: Self.t0, jitter: 1)
                machine = Machine(policy: pool.policy)
                action = machine.next(&pool, jitter: 1)
            }
            #expect(machine.posted(Self.busy, pool: &pool, now: Self.t0, jitter: 1) == .post(endpoint: 2))
            _ = machine.posted(.delivered(ackID: nil), pool: &pool, now: Self.t0, jitter: 1)
        }
        #expect(pool.takeChanges() == [.opened(endpoint: 1, failures: 2)])
        #expect(!pool.isOpen(0) && pool.isOpen(1) && !pool.isOpen(2))
        var chosen: [Int] = []
        for _ in 0..<4 {
            var machine = Machine(policy: pool.policy)
            if case .post(let endpoint) = machine.next(&pool, jitter: 1) { chosen.append(endpoint) }
        }
        #expect(Set(chosen) == [0, 2], "skipped while open: \(chosen)")
        pool.probed(1, healthy: true)
        #expect(pool.takeChanges() == [.closed(endpoint: 1)])
        chosen = []
        for _ in 0..<3 {
            var machine = Machine(policy: pool.policy)
            if case .post(let endpoint) = machine.next(&pool, jitter: 1) { chosen.append(endpoint) }
        }
        #expect(Set(chosen) == [0, 1, 2], "back in the round: \(chosen)")
        // Every circuit open: a request waits for one to close, then goes there.
        for endpoint in 0..<3 { for _ in 0..<2 { pool.failed(endpoint) } }
        #expect(pool.allOpen)
        var machine = Machine(policy: pool.policy)
        #expect(machine.next(&pool, jitter: 1) == .awaitEndpoint)
        pool.probed(2, healthy: false)
        pool.probed(2, healthy: true)
        #expect(machine.next(&pool, jitter: 1) == .post(endpoint: 2))
        pool.probed(0, healthy: true)
        pool.failed(1)
        #expect(pool.takeChanges() == [.opened(endpoint: 0, failures: 2), .opened(endpoint: 1, failures: 2), .opened(endpoint: 2, failures: 2), .closed(endpoint: 2), .closed(endpoint: 0)], "an open circuit does not open again")
    }
}
