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

    @Test("transient failures back off exponentially, capped, jitter scaling it; Retry-After is a floor")
    func backoff() {
        var machine = Machine(policy: Self.policy { $0.circuitBreakerThreshold = 100 })
        #expect(machine.posted(Self.busy, now: Self.t0, jitter: 1) == .retry(after: .milliseconds(100)))
        #expect(machine.posted(Self.busy, now: Self.t0, jitter: 1) == .retry(after: .milliseconds(200)))
        #expect(machine.posted(Self.busy, now: Self.t0, jitter: 0.5) == .retry(after: .milliseconds(200)), "400 ms with half jitter")
        for _ in 0..<10 { _ = machine.posted(Self.busy, now: Self.t0, jitter: 1) }
        #expect(machine.posted(Self.busy, now: Self.t0, jitter: 1) == .retry(after: .seconds(2)), "capped at the max delay")
        let slowDown = HECVerdict.retry(reason: "HTTP 429", retryAfterSeconds: 30)
        #expect(machine.posted(slowDown, now: Self.t0, jitter: 1) == .retry(after: .seconds(30)))
        #expect(machine.failures == 15)
    }

    @Test("the circuit opens after the threshold; unhealthy probes back off; a healthy one closes it and sends")
    func circuitBreaker() {
        var machine = Machine(policy: Self.policy())
        for _ in 0..<3 { _ = machine.posted(Self.busy, now: Self.t0, jitter: 1) }
        guard case .probeHealth(_, opened: true) = machine.posted(Self.busy, now: Self.t0, jitter: 1) else {
            Issue.record("the fourth failure opens the circuit")
            return
        }
        guard case .probeHealth(let delay, opened: false) = machine.probed(healthy: false, jitter: 1) else {
            Issue.record("unhealthy: probe again")
            return
        }
        #expect(delay == .seconds(2), "probes back off too, capped")
        #expect(machine.probed(healthy: true, jitter: 1) == .post)
        #expect(machine.posted(.delivered(ackID: nil), now: Self.t0, jitter: 1) == .finished(.delivered(ackID: nil)))
    }

    @Test("a refused token keeps retrying without opening the circuit; final answers end it")
    func tokenAndFinalAnswers() {
        var machine = Machine(policy: Self.policy())
        for attempt in 1...10 {
            guard case .retry = machine.posted(.authenticationFailed("HTTP 403"), now: Self.t0, jitter: 1) else {
                Issue.record("attempt \(attempt): a 403 is retried")
                return
            }
        }
        for verdict in [HECVerdict.rejected("HTTP 400"), .tooLarge, .invalidEvent(index: 2, reason: "x")] {
            var fresh = Machine(policy: Self.policy())
            #expect(fresh.posted(verdict, now: Self.t0, jitter: 1) == .finished(verdict))
        }
    }

    @Test("with acknowledgement: delivered means polled until acked; no ack by the timeout sends again")
    func acknowledgement() {
        var machine = Machine(policy: Self.policy {
            $0.acknowledgements = true
            $0.ackPollInterval = .seconds(1)
            $0.ackTimeout = .seconds(3)
        })
        #expect(machine.posted(.delivered(ackID: 7), now: Self.t0, jitter: 1) == .pollAck(ackID: 7, after: .seconds(1)))
        #expect(machine.polled(acknowledged: false, now: Self.t0 + .seconds(1)) == .pollAck(ackID: 7, after: .seconds(1)))
        #expect(machine.polled(acknowledged: false, now: Self.t0 + .seconds(2)) == .pollAck(ackID: 7, after: .seconds(1)))
        #expect(machine.polled(acknowledged: false, now: Self.t0 + .seconds(3)) == .resendUnacknowledged(ackID: 7))
        #expect(machine.failures == 1)
        #expect(machine.posted(.delivered(ackID: 8), now: Self.t0 + .seconds(4), jitter: 1) == .pollAck(ackID: 8, after: .seconds(1)))
        #expect(machine.polled(acknowledged: true, now: Self.t0 + .seconds(5)) == .finished(.delivered(ackID: 8)))
        var noID = Machine(policy: machine.policy)
        #expect(noID.posted(.delivered(ackID: nil), now: Self.t0, jitter: 1) == .finished(.delivered(ackID: nil)), "no ackId: taken as delivered")
    }
}
