import AsyncHTTPClient
import CompressNIO
import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOSSL

#if canImport(Glibc)
import Glibc
#endif

/// Sends batches to Splunk's HTTP Event Collector: to one endpoint, or round-robin to several
/// (`-hec-url a,b,c`, Splunk's indexers each exposing HEC), each with its own circuit breaker and
/// health probe (`HECEndpointPool`).
///
/// A batch is delivered, or its events are counted as dropped by reason: transient failures
/// (5xx, 429, network errors, timeouts) go to the next endpoint, then back off exponentially with
/// full jitter, for as long as it takes, so the buffer fills and the connections stop reading; a
/// refused token keeps the events and keeps trying; only events HEC rejects for good are dropped.
/// Only the shutdown bound ends the waiting.
public final class HECSink: EventSink {
    private let settings: HECSettings
    private let targets: [Target]
    private let authorization: String
    private let client: HTTPClient
    private let envelopes: HECEnvelopes
    private let statistics: ForwarderStatistics
    private let logger: Logger
    private let logs = Locked(Logs())
    private let shared: Locked<Shared>
    private let deadLetters: DeadLetterFile?
    private let policy: HECDeliveryStateMachine.Policy
    private let plainBodies = Locked<[ByteBuffer]>([])
    /// The indexer-acknowledgement channel of this process (sent on every request when acks are on).
    let channel = UUID().uuidString.lowercased()

    public var maxConcurrentWrites: Int { settings.maxInFlight }

    /// Every endpoint's circuit is open: nothing can be sent until a probe finds one healthy.
    public var isCircuitOpen: Bool { shared.withLock { $0.pool.allOpen } }

    /// One `-hec-url` endpoint and its series in `/metrics`.
    private struct Target: Sendable {
        let endpoint: HECEndpoint
        let requests: Counter
        let failures: Counter
        let events: Counter
        let circuitOpen: Gauge

        init(_ endpoint: HECEndpoint, factory: any MetricsFactory) {
            self.endpoint = endpoint
            let dimensions = [("endpoint", endpoint.eventURL)]
            requests = Counter(label: "dnstap_hec_endpoint_requests_total", dimensions: dimensions, factory: factory)
            failures = Counter(label: "dnstap_hec_endpoint_failures_total", dimensions: dimensions, factory: factory)
            events = Counter(label: "dnstap_hec_endpoint_events_total", dimensions: dimensions, factory: factory)
            circuitOpen = Gauge(label: "dnstap_hec_endpoint_circuit_open", dimensions: dimensions, factory: factory)
            circuitOpen.record(0)
        }
    }

    /// The endpoints' health, shared by every request in flight and the probers.
    private struct Shared {
        var pool: HECEndpointPool
        /// What each endpoint said when it last refused the token (nil: it did not).
        var tokenRefused: [String?]
        /// Requests waiting for a circuit to close, and probers waiting for one to open: woken at
        /// every change, each looks again.
        var waiters = Waiters<Void>()
    }

    /// What `/readyz` reports: ready while some endpoint takes the token and has its circuit closed.
    public var readiness: OutputReadiness {
        let (pool, refused) = shared.withLock { ($0.pool, $0.tokenRefused) }
        let usable = (0..<pool.count).filter { !pool.isOpen($0) }
        if usable.isEmpty {
            return .notReady(pool.count == 1 ? "HEC circuit open; probing its health endpoint" : "every HEC endpoint's circuit is open; probing their health endpoints")
        }
        if let reply = refused.compactMap({ $0 }).first, usable.allSatisfy({ refused[$0] != nil }) {
            return .notReady("HEC refuses the token (\(reply))")
        }
        return .ready
    }

    private struct Logs {
        var failure = RateLimitedLog(interval: .seconds(10))
        var authentication = RateLimitedLog(interval: .seconds(60))
    }

    /// Throws only when `-hec-ca-file` cannot be read: the endpoint and token come with the output.
    public init(
        endpoints: [HECEndpoint], token: String, settings: HECSettings, eventLoopGroup: any EventLoopGroup,
        statistics: ForwarderStatistics, logger: Logger
    ) throws {
        precondition(!endpoints.isEmpty, "HEC needs an endpoint")
        self.settings = settings
        self.targets = endpoints.map { Target($0, factory: statistics.metricsFactory) }
        self.policy = HECDeliveryStateMachine.Policy(settings)
        self.shared = Locked(Shared(
            pool: HECEndpointPool(count: endpoints.count, policy: policy), tokenRefused: Array(repeating: nil, count: endpoints.count)))
        self.authorization = "Splunk " + token
        self.statistics = statistics
        self.logger = logger
        self.envelopes = HECEnvelopes(settings: settings, host: settings.host ?? Self.hostname())
        self.deadLetters = try settings.deadLetterPath.map { try DeadLetterFile(path: $0) }
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: TimeAmount(settings.connectTimeout), read: TimeAmount(settings.requestTimeout))
        configuration.connectionPool = .init(idleTimeout: .seconds(60))
        // A refused connection fails the request at once, for the delivery state machine to send
        // it to the next endpoint or back off: left on, the client retries the connection itself
        // and the request (or a health probe) waits out the whole connect timeout first.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.decompression = .disabled
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile = settings.caFile {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw ConfigurationError.invalidValue(.hecCAFile, caFile, "cannot read a PEM certificate from it: \(error)")
            }
        }
        if settings.insecureSkipVerify {
            tls.certificateVerification = .none
            logger.warning("HEC TLS certificate verification is OFF (-hec-insecure-skip-verify): use this for tests only")
        }
        configuration.tlsConfiguration = tls
        client = HTTPClient(eventLoopGroupProvider: .shared(eventLoopGroup), configuration: configuration)
    }

    static func hostname() -> String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "localhost" }
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: - EventSink

    /// Probes each endpoint once at start, so a wrong URL or token is reported before the first
    /// batch; then each endpoint's prober probes it while its circuit is open, until cancelled.
    public func run() async {
        await withDiscardingTaskGroup { group in
            for index in targets.indices {
                group.addTask {
                    await self.probeAtStart(index)
                    await self.probeWhileOpen(index)
                }
            }
        }
    }

    public func write(_ events: [ForwardedEvent]) async throws -> SinkResult {
        var result = SinkResult()
        var parts = envelopes.bodies(events[...], maxBytes: settings.maxBatchBytes)
        var next = 0
        while next < parts.count {
            let part = parts[next]
            next += 1
            switch try await send(part) {
            case .delivered:
                result.delivered += part.count
            case .invalidEvent(let index, let reason) where index >= 0 && index < part.count:
                result.drop(1, .invalidEvent)
                deadLetters?.append(part[(part.startIndex + index)...].prefix(1), reason: .invalidEvent, reply: reason, logger: logger)
                logger.error(
                    "HEC rejected one event as invalid; dropped it and resending the others",
                    metadata: ["reply": "\(reason)", "event": "\(String(buffer: part[part.startIndex + index].json).prefix(300))"])
                var rest = Array(part)
                rest.remove(at: index)
                if !rest.isEmpty { parts.insert(rest[...], at: next) }
            case .tooLarge where part.count > 1:
                let middle = part.startIndex + part.count / 2
                parts.insert(contentsOf: [part[..<middle], part[middle...]], at: next)
            case .tooLarge:
                result.drop(1, .tooLarge)
                deadLetters?.append(part, reason: .tooLarge, reply: "HTTP 413", logger: logger)
                logger.error("HEC refused an event as too large (413); dropped it", metadata: ["event_bytes": "\(part.first!.json.readableBytes)"])
            case .rejected(let reason), .invalidEvent(_, let reason):
                result.drop(part.count, .rejected)
                deadLetters?.append(part, reason: .rejected, reply: reason, logger: logger)
                logger.error("HEC rejected a request for good; its events are dropped", metadata: ["reply": "\(reason)", "events": "\(part.count)"])
            case .retry, .authenticationFailed:
                preconditionFailure("the delivery state machine retries these itself")
            }
        }
        return result
    }

    public func shutdown() async {
        try? await client.shutdown()
    }

    // MARK: - Sending

    /// Sends one body until HEC gives a final answer, as `HECDeliveryStateMachine` directs.
    /// Cancellation (the shutdown bound) ends every wait and request in it.
    private func send(_ part: ArraySlice<ForwardedEvent>) async throws -> HECVerdict {
        let body: ByteBuffer
        if settings.gzip {
            // The uncompressed body is only a step: its buffer is reused from one request to the
            // next (a fresh megabyte per request made glibc's heap grow in steps).
            var plain = plainBodies.withLock { $0.popLast() } ?? ByteBuffer()
            plain.clear()
            envelopes.encode(part, into: &plain)
            body = try plain.compress(with: .gzip(configuration: .init(compressionLevel: Int32(settings.gzipLevel))))
            if plain.capacity <= settings.maxBatchBytes * 2 {
                plain.clear()
                plainBodies.withLock { if $0.count < settings.maxInFlight { $0.append(plain) } }
            }
        } else {
            body = envelopes.encode(part)
        }
        var machine = HECDeliveryStateMachine(policy: policy)
        var action = update { machine.next(&$0.pool, jitter: .random(in: 0.5...1)) }
        while true {
            switch action {
            case .post(let index):
                let verdict = try await post(body, to: index)
                report(verdict, endpoint: index, failures: machine.failures + 1)
                action = update { machine.posted(verdict, pool: &$0.pool, now: .now(), jitter: .random(in: 0.5...1)) }
            case .retry(let delay):
                try await Task.sleep(for: delay)
                action = update { machine.next(&$0.pool, jitter: .random(in: 0.5...1)) }
            case .awaitEndpoint:
                await shared.wait(in: \.waiters, onCancel: ()) { state, _ in state.pool.allOpen ? nil : () }
                try Task.checkCancellation()
                action = update { machine.next(&$0.pool, jitter: .random(in: 0.5...1)) }
            case .pollAck(let index, let ackID, let delay):
                try await Task.sleep(for: delay)
                action = machine.polled(acknowledged: try await acknowledged(ackID, at: index), now: .now())
            case .resendUnacknowledged(let index, let ackID):
                statistics.retried()
                logger.warning(
                    "no indexer acknowledgement in time; sending the batch again (HEC may index it twice)",
                    metadata: [
                        "ack_id": "\(ackID)", "timeout": "\(settings.ackTimeout)", "events": "\(part.count)",
                        "url": "\(targets[index].endpoint.eventURL)",
                    ])
                action = update { machine.next(&$0.pool, jitter: .random(in: 0.5...1)) }
            case .finished(let verdict):
                if case .delivered(let ackID) = verdict, let index = machine.endpoint {
                    targets[index].events.increment(by: part.count)
                    if ackID == nil, settings.acknowledgements {
                        logger.warning("HEC answered without an ackId although -hec-ack is on; counting the batch as delivered")
                    }
                }
                return verdict
            }
        }
    }

    /// Changes the endpoints' health under the lock; a circuit that opened or closed is logged,
    /// shown in its gauge, and wakes whoever waits for one (requests, probers).
    private func update<Result>(_ change: (inout Shared) -> Result) -> Result {
        let (result, changes, usable, waiters) = shared.withLock { state in
            let result = change(&state)
            let changes = state.pool.takeChanges()
            let usable = (0..<state.pool.count).filter { !state.pool.isOpen($0) }.count
            return (result, changes, usable, changes.isEmpty ? [] : state.waiters.takeAll())
        }
        for change in changes {
            switch change {
            case .opened(let index, let failures):
                targets[index].circuitOpen.record(1)
                logger.warning(
                    "HEC circuit open after repeated failures: probing its health endpoint before sending to it again",
                    metadata: [
                        "url": "\(targets[index].endpoint.healthURL)", "failures": "\(failures)",
                        "endpoints_taking_requests": "\(usable)",
                    ])
            case .closed(let index):
                targets[index].circuitOpen.record(0)
                logger.info("HEC health endpoint answers healthy: closing the circuit", metadata: ["url": "\(targets[index].endpoint.eventURL)"])
            }
        }
        for waiter in waiters { waiter.resume() }
        return result
    }

    /// While the endpoint's circuit is open: wait the pool's probe delay, probe, tell the pool.
    /// Parked (no timer) while the circuit is closed; ends when cancelled.
    private func probeWhileOpen(_ index: Int) async {
        while !Task.isCancelled {
            await shared.wait(in: \.waiters, onCancel: ()) { state, _ in state.pool.isOpen(index) ? () : nil }
            guard let delay = shared.withLock({ $0.pool.probeDelay(index, jitter: .random(in: 0.5...1)) }) else { continue }
            do { try await Task.sleep(for: delay) } catch { return }
            let healthy = await health(index) == .healthy
            guard !Task.isCancelled else { return }
            update { $0.pool.probed(index, healthy: healthy) }
        }
    }

    /// Counts and logs an answer, and keeps `/readyz`'s view of the token current.
    private func report(_ verdict: HECVerdict, endpoint index: Int, failures: Int) {
        let url = targets[index].endpoint.eventURL
        switch verdict {
        case .retry(let reason, _):
            statistics.retried()
            targets[index].failures.increment()
            logFailure("HEC request failed; will retry", reason: reason, url: url, failures: failures)
        case .authenticationFailed(let reason):
            shared.withLock { $0.tokenRefused[index] = reason }
            statistics.retried()
            if logs.withLock({ $0.authentication.shouldLog() }) != nil {
                logger.error(
                    "HEC refuses the token: the events stay buffered and are sent once the token works. Check -hec-token",
                    metadata: ["reply": "\(reason)", "url": "\(url)", "attempts": "\(failures)"])
            }
        default:
            shared.withLock { $0.tokenRefused[index] = nil }
            if failures > 1 { logger.info("HEC accepts requests again", metadata: ["failed_attempts": "\(failures - 1)", "url": "\(url)"]) }
        }
    }

    /// One request; a network error or timeout is a `.retry` verdict, cancellation is thrown.
    private func post(_ body: ByteBuffer, to index: Int) async throws -> HECVerdict {
        targets[index].requests.increment()
        var request = HTTPClientRequest(url: targets[index].endpoint.eventURL)
        request.method = .POST
        request.headers.add(name: "Authorization", value: authorization)
        request.headers.add(name: "Content-Type", value: "application/json")
        if settings.gzip { request.headers.add(name: "Content-Encoding", value: "gzip") }
        if settings.acknowledgements { request.headers.add(name: "X-Splunk-Request-Channel", value: channel) }
        request.body = .bytes(body)
        let started = ContinuousClock.now
        defer { statistics.hecRequest(took: ContinuousClock.now - started) }
        do {
            let response = try await client.execute(request, timeout: TimeAmount(settings.requestTimeout))
            let reply = try await response.body.collect(upTo: 64 * 1024)
            return HECVerdict.classify(
                status: response.status, body: String(buffer: reply), retryAfter: response.headers.first(name: "Retry-After"))
        } catch {
            try Task.checkCancellation()
            return .retry(reason: Self.describe(error), retryAfterSeconds: nil)
        }
    }

    // MARK: - Indexer acknowledgement

    /// Asks the endpoint that took the request (`/services/collector/ack`) whether `ackID` is indexed:
    /// ack IDs are the indexer's own.
    private func acknowledged(_ ackID: Int, at index: Int) async throws -> Bool {
        let endpoint = targets[index].endpoint
        var request = HTTPClientRequest(url: endpoint.base + "/services/collector/ack?channel=" + channel)
        request.method = .POST
        request.headers.add(name: "Authorization", value: authorization)
        request.headers.add(name: "X-Splunk-Request-Channel", value: channel)
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: #"{"acks":[\#(ackID)]}"#))
        do {
            let response = try await client.execute(request, timeout: TimeAmount(settings.requestTimeout))
            let reply = String(buffer: try await response.body.collect(upTo: 64 * 1024))
            if response.status == .ok, reply.range(of: #""\#(ackID)"\s*:\s*true"#, options: .regularExpression) != nil {
                return true
            }
            if response.status == .badRequest, HECReply(reply).code == 14 {
                logger.error("HEC says acknowledgement is disabled for this token (code 14): turn off -hec-ack; counting the batch as delivered")
                return true
            }
        } catch {
            try Task.checkCancellation()
            logFailure("HEC acknowledgement query failed; will ask again", reason: Self.describe(error), url: endpoint.eventURL, failures: 1)
        }
        return false
    }

    // MARK: - Health

    enum Health: Equatable {
        case healthy
        case tokenRefused(String)
        case unhealthy(String)
        case unreachable(String)
    }

    func health(_ index: Int) async -> Health {
        var request = HTTPClientRequest(url: targets[index].endpoint.healthURL)
        request.headers.add(name: "Authorization", value: authorization)
        do {
            let response = try await client.execute(request, timeout: TimeAmount(settings.requestTimeout))
            let reply = HECReply(String(buffer: try await response.body.collect(upTo: 64 * 1024)))
            let described = "HTTP \(response.status.code)" + (reply.code.map { " code \($0)" } ?? "") + (reply.text.map { " \"\($0)\"" } ?? "")
            switch response.status.code {
            case 200: return .healthy
            case 400, 401, 403: return .tokenRefused(described)
            default: return .unhealthy(described)
            }
        } catch {
            return .unreachable(Self.describe(error))
        }
    }

    private func probeAtStart(_ index: Int) async {
        let metadata: Logger.Metadata = ["url": "\(targets[index].endpoint.eventURL)"]
        switch await health(index) {
        case .healthy:
            logger.info("HEC is reachable and healthy", metadata: metadata)
        case .tokenRefused(let reply):
            shared.withLock { $0.tokenRefused[index] = reply }
            logger.error("HEC refuses the token (\(reply)): events will be buffered until it is fixed", metadata: metadata)
        case .unhealthy(let reply):
            logger.warning("HEC answers but is not healthy (\(reply)): sending will retry", metadata: metadata)
        case .unreachable(let why):
            logger.error("cannot reach HEC (\(why)): sending will retry", metadata: metadata)
        }
    }

    // MARK: - Helpers

    private func logFailure(_ message: Logger.Message, reason: String, url: String, failures: Int) {
        guard let suppressed = logs.withLock({ $0.failure.shouldLog() }) else { return }
        logger.warning(
            message,
            metadata: ["reason": "\(reason)", "url": "\(url)", "attempt": "\(failures)", "suppressed_since_last": "\(suppressed)"])
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "connect timeout"
            case .deadlineExceeded, .readTimeout: return "request timeout"
            case .remoteConnectionClosed: return "connection closed by HEC"
            default: return "\(error)"
            }
        }
        if let error = error as? NIOSSLError { return "TLS: \(error)" }
        if error is NIOSSLExtraError { return "TLS: \(error)" }
        return "\(error)"
    }
}
