/// The HEC endpoints (`-hec-url a,b,c`) and the health of each, shared by every request in flight,
/// with no I/O and no clock of its own. Requests go round-robin to the endpoints whose circuit is
/// closed; `circuitBreakerThreshold` failed requests in a row to one endpoint open its circuit,
/// and it gets no requests until its health endpoint, probed with growing delays, answers healthy.
struct HECEndpointPool: Sendable {
    struct Member: Equatable, Sendable {
        /// Transient failures in a row (any answer resets it).
        var failures = 0
        /// nil: the circuit is closed. Otherwise the unhealthy probes since it opened.
        var unhealthyProbes: Int?

        var isOpen: Bool { unhealthyProbes != nil }
    }

    /// A circuit that opened or closed, for the log and the gauges.
    enum Change: Equatable, Sendable {
        case opened(endpoint: Int, failures: Int)
        case closed(endpoint: Int)
    }

    let policy: HECDeliveryStateMachine.Policy
    private(set) var members: [Member]
    /// Where the round-robin goes on from.
    private var cursor = 0
    private var changes: [Change] = []

    init(count: Int, policy: HECDeliveryStateMachine.Policy) {
        precondition(count > 0, "HEC needs an endpoint")
        self.policy = policy
        members = Array(repeating: Member(), count: count)
    }

    var count: Int { members.count }

    /// No endpoint takes requests: every circuit is open.
    var allOpen: Bool { members.allSatisfy(\.isOpen) }

    func isOpen(_ endpoint: Int) -> Bool { members[endpoint].isOpen }

    /// The next endpoint in turn whose circuit is closed, other than those in `tried`.
    mutating func nextClosed(excluding tried: Set<Int>) -> Int? {
        for step in 0..<members.count {
            let endpoint = (cursor + step) % members.count
            if !members[endpoint].isOpen && !tried.contains(endpoint) {
                cursor = (endpoint + 1) % members.count
                return endpoint
            }
        }
        return nil
    }

    /// The endpoint answered (whatever the answer: it is up).
    mutating func answered(_ endpoint: Int) {
        members[endpoint].failures = 0
    }

    /// A request to the endpoint failed (an error, a timeout, 5xx, 429): enough in a row open its circuit.
    mutating func failed(_ endpoint: Int) {
        members[endpoint].failures += 1
        if !members[endpoint].isOpen && members[endpoint].failures >= policy.circuitBreakerThreshold {
            members[endpoint].unhealthyProbes = 0
            changes.append(.opened(endpoint: endpoint, failures: members[endpoint].failures))
        }
    }

    /// How long the prober of an open circuit waits before its next probe (nil: the circuit is
    /// closed): the retry backoff's first step, doubling with each unhealthy probe up to its cap,
    /// scaled by `jitter` (0.5...1). A probe is one small GET, so an endpoint that recovers is back
    /// in the round within a retry delay or so.
    func probeDelay(_ endpoint: Int, jitter: Double) -> Duration? {
        guard let probes = members[endpoint].unhealthyProbes else { return nil }
        return policy.backoff(min(probes + 1, 20), retryAfter: nil, jitter: jitter)
    }

    /// The health endpoint answered: healthy closes the circuit.
    mutating func probed(_ endpoint: Int, healthy: Bool) {
        guard let probes = members[endpoint].unhealthyProbes else { return }
        if healthy {
            members[endpoint] = Member()
            changes.append(.closed(endpoint: endpoint))
        } else {
            members[endpoint].unhealthyProbes = probes + 1
        }
    }

    /// The circuits that opened or closed since the last call.
    mutating func takeChanges() -> [Change] {
        defer { changes.removeAll() }
        return changes
    }
}
