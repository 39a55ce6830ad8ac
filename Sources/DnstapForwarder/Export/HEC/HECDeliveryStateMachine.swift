import NIOCore

/// The delivery policy of one HEC request body, with no I/O and no clock of its own: what to do
/// after each answer (PROTOCOLS.md §3.6). A failed attempt goes to the next endpoint in turn
/// (`HECEndpointPool`); once every endpoint taking requests has failed it, it backs off
/// exponentially with jitter (at least the server's Retry-After); when every endpoint's circuit is
/// open it waits for one to close. With indexer acknowledgement a delivered request is polled for
/// its ack at the endpoint that took it, and sent again (anywhere) if none comes in time. Only a
/// final answer ends it: the shutdown bound ends the waiting by cancelling the task.
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
        /// Send (or send again) the request to this endpoint now.
        case post(endpoint: Int)
        /// Every endpoint that takes requests failed this one: wait, then `next`.
        case retry(after: Duration)
        /// Every endpoint's circuit is open: wait until one closes (its prober sees it healthy), then `next`.
        case awaitEndpoint
        /// Wait, then ask the endpoint that took the request whether `ackID` is indexed.
        case pollAck(endpoint: Int, ackID: Int, after: Duration)
        /// No acknowledgement within the ack timeout: say so, then `next` (any endpoint).
        case resendUnacknowledged(endpoint: Int, ackID: Int)
        /// A final answer: delivered, or (part of) the body refused for good.
        case finished(HECVerdict)
    }

    private enum State: Equatable {
        case choosing
        case sending(endpoint: Int)
        case awaitingAck(endpoint: Int, ackID: Int, deadline: NIODeadline)
        case finished
    }

    let policy: Policy
    /// Failed attempts so far (transient failures, refused tokens, missing acknowledgements).
    private(set) var failures = 0
    /// The endpoint of the last post (the one that delivered, once finished).
    private(set) var endpoint: Int?
    private var state = State.choosing
    /// Endpoints that failed this request since it last waited: the next attempt goes elsewhere.
    private var tried: Set<Int> = []
    /// Waits so far (each after every endpoint taking requests failed once): the backoff's exponent.
    private var rounds = 0
    /// The largest Retry-After of this round.
    private var retryAfter: Int?

    init(policy: Policy) { self.policy = policy }

    /// Where the request goes: the next endpoint in turn it has not failed on since it last
    /// waited; a wait with backoff when it failed on all of them; or a wait for a circuit to
    /// close when every one is open. The first call, and the call after each wait.
    mutating func next(_ pool: inout HECEndpointPool, jitter: Double) -> Action {
        precondition(state == .choosing, "next while not choosing")
        if let chosen = pool.nextClosed(excluding: tried) {
            tried.insert(chosen)
            endpoint = chosen
            state = .sending(endpoint: chosen)
            return .post(endpoint: chosen)
        }
        tried.removeAll()
        if pool.allOpen { return .awaitEndpoint }
        rounds += 1
        defer { retryAfter = nil }
        return .retry(after: backoff(rounds, retryAfter: retryAfter, jitter: jitter))
    }

    /// The endpoint answered a post (a network error or timeout comes as `.retry`). `jitter` is a
    /// random factor in 0.5...1 that scales the backoff.
    mutating func posted(_ verdict: HECVerdict, pool: inout HECEndpointPool, now: NIODeadline, jitter: Double) -> Action {
        guard case .sending(let endpoint) = state else { preconditionFailure("posted while not sending") }
        switch verdict {
        case .retry(_, let after):
            failures += 1
            pool.failed(endpoint)
            if let after { retryAfter = max(retryAfter ?? 0, after) }
            state = .choosing
            return next(&pool, jitter: jitter)
        case .authenticationFailed:
            // The events stay and the token is tried again; the circuit is for an unhealthy HEC.
            failures += 1
            pool.answered(endpoint)
            state = .choosing
            return next(&pool, jitter: jitter)
        case .delivered(let ackID?) where policy.acknowledgements:
            pool.answered(endpoint)
            state = .awaitingAck(endpoint: endpoint, ackID: ackID, deadline: now + TimeAmount(policy.ackTimeout))
            return .pollAck(endpoint: endpoint, ackID: ackID, after: policy.ackPollInterval)
        case .delivered, .invalidEvent, .tooLarge, .rejected:
            pool.answered(endpoint)
            state = .finished
            return .finished(verdict)
        }
    }

    /// An acknowledgement query answered (`acknowledged`: HEC reports the request indexed).
    mutating func polled(acknowledged: Bool, now: NIODeadline) -> Action {
        guard case .awaitingAck(let endpoint, let ackID, let deadline) = state else {
            preconditionFailure("polled while not awaiting an ack")
        }
        if acknowledged {
            state = .finished
            return .finished(.delivered(ackID: ackID))
        }
        guard now + TimeAmount(policy.ackPollInterval) <= deadline else {
            failures += 1
            tried.removeAll()
            state = .choosing
            return .resendUnacknowledged(endpoint: endpoint, ackID: ackID)
        }
        return .pollAck(endpoint: endpoint, ackID: ackID, after: policy.ackPollInterval)
    }

    func backoff(_ failures: Int, retryAfter: Int?, jitter: Double) -> Duration {
        policy.backoff(failures, retryAfter: retryAfter, jitter: jitter)
    }
}

extension HECDeliveryStateMachine.Policy {
    /// Exponential backoff with full jitter, capped, and at least the server's Retry-After (≤ 300 s).
    func backoff(_ failures: Int, retryAfter: Int?, jitter: Double) -> Duration {
        let exponential = retryInitialDelay * (1 << min(max(failures, 1) - 1, 20))
        let jittered = min(retryMaxDelay, exponential) * jitter
        guard let retryAfter else { return jittered }
        return max(jittered, .seconds(min(retryAfter, 300)))
    }
}
