import NIOCore

/// The delivery policy of one HEC request body, with no I/O and no clock of its own: what to do
/// after each answer (PROTOCOLS.md §3.6). Transient failures back off exponentially with jitter
/// (at least the server's Retry-After); after `circuitBreakerThreshold` failures in a row the
/// circuit opens and HEC's health endpoint is probed until it answers healthy; with indexer
/// acknowledgement a delivered request is polled for its ack and sent again if none comes in time.
/// Only a final answer ends it: the shutdown bound ends the waiting by cancelling the task.
struct HECDeliveryStateMachine {
    struct Policy: Equatable, Sendable {
        var retryInitialDelay: Duration = .seconds(1)
        var retryMaxDelay: Duration = .seconds(60)
        var circuitBreakerThreshold = 5
        var acknowledgements = false
        var ackPollInterval: Duration = .seconds(10)
        var ackTimeout: Duration = .seconds(300)

        init() {}

        init(_ settings: HECSettings) {
            retryInitialDelay = settings.retryInitialDelay
            retryMaxDelay = settings.retryMaxDelay
            circuitBreakerThreshold = settings.circuitBreakerThreshold
            acknowledgements = settings.acknowledgements
            ackPollInterval = settings.ackPollInterval
            ackTimeout = settings.ackTimeout
        }
    }

    enum Action: Equatable {
        /// Send (or send again) the request now.
        case post
        /// Wait, then send again.
        case retry(after: Duration)
        /// The circuit is open (`opened`: it just opened): wait, then probe HEC's health endpoint.
        case probeHealth(after: Duration, opened: Bool)
        /// Wait, then ask whether `ackID` is indexed.
        case pollAck(ackID: Int, after: Duration)
        /// No acknowledgement within the ack timeout: send the request again.
        case resendUnacknowledged(ackID: Int)
        /// A final answer: delivered, or (part of) the body refused for good.
        case finished(HECVerdict)
    }

    private enum State: Equatable {
        case sending
        case circuitOpen(probes: Int)
        case awaitingAck(ackID: Int, deadline: NIODeadline)
        case finished
    }

    let policy: Policy
    /// Failed attempts so far (transient failures, refused tokens, missing acknowledgements).
    private(set) var failures = 0
    private var state = State.sending

    init(policy: Policy) { self.policy = policy }

    /// HEC answered a post (a network error or timeout comes as `.retry`). `jitter` is a random
    /// factor in 0.5...1 that scales the backoff.
    mutating func posted(_ verdict: HECVerdict, now: NIODeadline, jitter: Double) -> Action {
        precondition(state == .sending, "posted while not sending")
        switch verdict {
        case .retry(_, let retryAfter):
            failures += 1
            if failures >= policy.circuitBreakerThreshold {
                state = .circuitOpen(probes: 1)
                return .probeHealth(after: backoff(failures + 1, retryAfter: nil, jitter: jitter), opened: true)
            }
            return .retry(after: backoff(failures, retryAfter: retryAfter, jitter: jitter))
        case .authenticationFailed:
            // The events stay and the token is tried again; the circuit is for an unhealthy HEC.
            failures += 1
            return .retry(after: backoff(failures, retryAfter: nil, jitter: jitter))
        case .delivered(let ackID?) where policy.acknowledgements:
            state = .awaitingAck(ackID: ackID, deadline: now + TimeAmount(policy.ackTimeout))
            return .pollAck(ackID: ackID, after: policy.ackPollInterval)
        case .delivered, .invalidEvent, .tooLarge, .rejected:
            state = .finished
            return .finished(verdict)
        }
    }

    /// The health probe of an open circuit answered.
    mutating func probed(healthy: Bool, jitter: Double) -> Action {
        guard case .circuitOpen(let probes) = state else { preconditionFailure("probed while the circuit is closed") }
        if healthy {
            state = .sending
            return .post
        }
        state = .circuitOpen(probes: probes + 1)
        return .probeHealth(after: backoff(min(failures + probes + 1, 20), retryAfter: nil, jitter: jitter), opened: false)
    }

    /// An acknowledgement query answered (`acknowledged`: HEC reports the request indexed).
    mutating func polled(acknowledged: Bool, now: NIODeadline) -> Action {
        guard case .awaitingAck(let ackID, let deadline) = state else { preconditionFailure("polled while not awaiting an ack") }
        if acknowledged {
            state = .finished
            return .finished(.delivered(ackID: ackID))
        }
        guard now + TimeAmount(policy.ackPollInterval) <= deadline else {
            failures += 1
            state = .sending
            return .resendUnacknowledged(ackID: ackID)
        }
        return .pollAck(ackID: ackID, after: policy.ackPollInterval)
    }

    /// Exponential backoff with full jitter, capped, and at least the server's Retry-After (≤ 300 s).
    func backoff(_ failures: Int, retryAfter: Int?, jitter: Double) -> Duration {
        let exponential = policy.retryInitialDelay * (1 << min(max(failures, 1) - 1, 20))
        let jittered = min(policy.retryMaxDelay, exponential) * jitter
        guard let retryAfter else { return jittered }
        return max(jittered, .seconds(min(retryAfter, 300)))
    }
}
