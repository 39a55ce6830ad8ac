import AsyncHTTPClient
import CompressNIO
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL

#if canImport(Glibc)
import Glibc
#endif

/// Sends batches to Splunk's HTTP Event Collector.
///
/// A batch is delivered, or its events are counted as dropped by reason: transient failures
/// (5xx, 429, network errors, timeouts) are retried with exponential backoff and full jitter for as
/// long as it takes, so the buffer fills and the connections stop reading; a refused token keeps the
/// events and keeps probing; only events HEC rejects for good are dropped. Only the shutdown bound
/// ends the waiting.
public final class HECSink: EventSink {
    private let settings: HECSettings
    private let endpoint: HECEndpoint
    private let authorization: String
    private let client: HTTPClient
    private let envelopes: HECEnvelopes
    private let statistics: ForwarderStatistics
    private let logger: Logger
    private let logs = Locked(Logs())
    private let condition = Locked(Condition())
    private let deadLetters: DeadLetterFile?
    /// The indexer-acknowledgement channel of this process (sent on every request when acks are on).
    let channel = UUID().uuidString.lowercased()

    public var maxConcurrentWrites: Int { settings.maxInFlight }

    /// What `/readyz` reports: a refused token or an open circuit make the output not ready.
    private struct Condition {
        var tokenRefused: String?
        var circuitOpen: String?
    }

    public var readiness: OutputReadiness {
        let condition = condition.withLock { $0 }
        if let reply = condition.tokenRefused { return .notReady("HEC refuses the token (\(reply))") }
        if let reason = condition.circuitOpen { return .notReady("HEC circuit open (\(reason)); probing its health endpoint") }
        return .ready
    }

    private struct Logs {
        var failure = RateLimitedLog(interval: .seconds(10))
        var authentication = RateLimitedLog(interval: .seconds(60))
    }

    public init(
        settings: HECSettings, token: String, eventLoopGroup: any EventLoopGroup, statistics: ForwarderStatistics,
        logger: Logger
    ) throws {
        guard let endpoint = settings.endpoint else { throw ConfigurationError.invalid("-output-type hec needs -hec-url") }
        self.settings = settings
        self.endpoint = endpoint
        self.authorization = "Splunk " + token
        self.statistics = statistics
        self.logger = logger
        self.envelopes = HECEnvelopes(settings: settings, host: settings.host ?? Self.hostname())
        self.deadLetters = try settings.deadLetterPath.map { try DeadLetterFile(path: $0) }
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: TimeAmount(settings.connectTimeout), read: TimeAmount(settings.requestTimeout))
        configuration.connectionPool = .init(idleTimeout: .seconds(60))
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

    public func start() async {
        await probeAtStart()
    }

    public func write(_ events: [ForwardedEvent], abandon: EventLoopFuture<Void>) async throws -> SinkResult {
        var result = SinkResult()
        var parts = envelopes.bodies(events[...], maxBytes: settings.maxBatchBytes)
        var next = 0
        while next < parts.count {
            let part = parts[next]
            next += 1
            switch try await send(part, abandon: abandon) {
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
                preconditionFailure("send(_:) retries these itself")
            }
        }
        return result
    }

    public func shutdown() async {
        try? await client.shutdown()
    }

    // MARK: - Sending

    /// Sends one body until HEC gives a final answer; transient failures are retried.
    private func send(_ part: ArraySlice<ForwardedEvent>, abandon: EventLoopFuture<Void>) async throws -> HECVerdict {
        var plain = envelopes.encode(part)
        let body = settings.gzip ? try plain.compress(with: .gzip(configuration: .init(compressionLevel: Int32(settings.gzipLevel)))) : plain
        var failures = 0
        while true {
            let verdict: HECVerdict
            do {
                verdict = try await race(abandon) { try await self.post(body) }
            } catch SinkError.deadlineExceeded {
                throw SinkError.deadlineExceeded
            } catch {
                verdict = .retry(reason: Self.describe(error), retryAfterSeconds: nil)
            }
            switch verdict {
            case .retry(let reason, let retryAfter):
                failures += 1
                statistics.retried()
                logFailure("HEC request failed; will retry", reason: reason, failures: failures)
                if failures >= settings.circuitBreakerThreshold {
                    try await waitUntilHealthy(after: failures, abandon: abandon)
                } else {
                    try await pause(backoff(failures, retryAfter: retryAfter), abandon: abandon)
                }
            case .authenticationFailed(let reason):
                condition.withLock { $0.tokenRefused = reason }
                failures += 1
                statistics.retried()
                let suppressed = logs.withLock { $0.authentication.shouldLog() }
                if suppressed != nil {
                    logger.error(
                        "HEC refuses the token: the events stay buffered and are sent once the token works. Check -hec-token",
                        metadata: ["reply": "\(reason)", "url": "\(endpoint.eventURL)", "attempts": "\(failures)"])
                }
                try await pause(backoff(failures, retryAfter: nil), abandon: abandon)
            case .delivered(let ackID) where settings.acknowledgements:
                guard let ackID else {
                    logger.warning("HEC answered without an ackId although -hec-ack is on; counting the batch as delivered")
                    return verdict
                }
                if try await acknowledged(ackID, abandon: abandon) { return verdict }
                failures += 1
                statistics.retried()
                logger.warning(
                    "no indexer acknowledgement in time; sending the batch again (HEC may index it twice)",
                    metadata: ["ack_id": "\(ackID)", "timeout": "\(settings.ackTimeout)", "events": "\(part.count)"])
            default:
                condition.withLock { $0.tokenRefused = nil }
                if failures > 0 {
                    logger.info("HEC accepts requests again", metadata: ["failed_attempts": "\(failures)"])
                }
                return verdict
            }
        }
    }

    private func post(_ body: ByteBuffer) async throws -> HECVerdict {
        var request = HTTPClientRequest(url: endpoint.eventURL)
        request.method = .POST
        request.headers.add(name: "Authorization", value: authorization)
        request.headers.add(name: "Content-Type", value: "application/json")
        if settings.gzip { request.headers.add(name: "Content-Encoding", value: "gzip") }
        if settings.acknowledgements { request.headers.add(name: "X-Splunk-Request-Channel", value: channel) }
        request.body = .bytes(body)
        let response = try await client.execute(request, timeout: TimeAmount(settings.requestTimeout))
        let reply = try await response.body.collect(upTo: 64 * 1024)
        return HECVerdict.classify(
            status: response.status, body: String(buffer: reply), retryAfter: response.headers.first(name: "Retry-After"))
    }

    /// Exponential backoff with full jitter, at least the server's Retry-After.
    private func backoff(_ failures: Int, retryAfter: Int?) -> Duration {
        let cap = settings.retryMaxDelay
        let exponential = settings.retryInitialDelay * (1 << min(failures - 1, 20))
        let ceiling = min(cap, exponential)
        let jittered = ceiling * Double.random(in: 0.5...1.0)
        guard let retryAfter else { return jittered }
        return max(jittered, .seconds(min(retryAfter, 300)))
    }

    /// The circuit is open: probe the health endpoint until HEC answers healthy.
    private func waitUntilHealthy(after failures: Int, abandon: EventLoopFuture<Void>) async throws {
        logger.warning(
            "HEC circuit open after repeated failures: probing its health endpoint before sending again",
            metadata: ["url": "\(endpoint.healthURL)", "failures": "\(failures)"])
        condition.withLock { $0.circuitOpen = "\(failures) failures in a row" }
        defer { condition.withLock { $0.circuitOpen = nil } }
        var probes = 0
        while true {
            probes += 1
            try await pause(backoff(min(failures + probes, 20), retryAfter: nil), abandon: abandon)
            if case .healthy = try await race(abandon, { await self.health() }) {
                logger.info("HEC health endpoint answers healthy: closing the circuit")
                return
            }
        }
    }

    // MARK: - Indexer acknowledgement

    /// Polls `/services/collector/ack` for `ackID` until HEC reports it indexed (true), or the ack
    /// timeout passes (false: the caller sends the batch again).
    private func acknowledged(_ ackID: Int, abandon: EventLoopFuture<Void>) async throws -> Bool {
        let deadline = ContinuousClock.now + settings.ackTimeout
        while ContinuousClock.now < deadline {
            try await pause(settings.ackPollInterval, abandon: abandon)
            var request = HTTPClientRequest(url: endpoint.base + "/services/collector/ack?channel=" + channel)
            request.method = .POST
            request.headers.add(name: "Authorization", value: authorization)
            request.headers.add(name: "X-Splunk-Request-Channel", value: channel)
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: #"{"acks":[\#(ackID)]}"#))
            let query = request
            do {
                let response = try await race(abandon) { [client, settings] in
                    let request = query
                    let response = try await client.execute(request, timeout: TimeAmount(settings.requestTimeout))
                    return (response.status, String(buffer: try await response.body.collect(upTo: 64 * 1024)))
                }
                if response.0 == .ok, response.1.range(of: #""\#(ackID)"\s*:\s*true"#, options: .regularExpression) != nil {
                    return true
                }
                if response.0 == .badRequest, HECReply(response.1).code == 14 {
                    logger.error("HEC says acknowledgement is disabled for this token (code 14): turn off -hec-ack; counting the batch as delivered")
                    return true
                }
            } catch SinkError.deadlineExceeded {
                throw SinkError.deadlineExceeded
            } catch {
                logFailure("HEC acknowledgement query failed; will ask again", reason: Self.describe(error), failures: 1)
            }
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

    func health() async -> Health {
        var request = HTTPClientRequest(url: endpoint.healthURL)
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

    private func probeAtStart() async {
        let metadata: Logger.Metadata = ["url": "\(endpoint.eventURL)"]
        switch await health() {
        case .healthy:
            logger.info("HEC is reachable and healthy", metadata: metadata)
        case .tokenRefused(let reply):
            condition.withLock { $0.tokenRefused = reply }
            logger.error("HEC refuses the token (\(reply)): events will be buffered until it is fixed", metadata: metadata)
        case .unhealthy(let reply):
            logger.warning("HEC answers but is not healthy (\(reply)): sending will retry", metadata: metadata)
        case .unreachable(let why):
            logger.error("cannot reach HEC (\(why)): sending will retry", metadata: metadata)
        }
    }

    // MARK: - Helpers

    private func logFailure(_ message: Logger.Message, reason: String, failures: Int) {
        guard let suppressed = logs.withLock({ $0.failure.shouldLog() }) else { return }
        logger.warning(
            message,
            metadata: ["reason": "\(reason)", "url": "\(endpoint.eventURL)", "attempt": "\(failures)", "suppressed_since_last": "\(suppressed)"])
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

    /// Waits `delay`, unless the shutdown bound runs out first.
    private func pause(_ delay: Duration, abandon: EventLoopFuture<Void>) async throws {
        try await race(abandon) { try await Task.sleep(for: delay) }
    }
}

/// Runs `operation`, or throws `SinkError.deadlineExceeded` as soon as `abandon` completes
/// (and cancels the operation).
func race<T: Sendable>(_ abandon: EventLoopFuture<Void>, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await AbandonWaiter(abandon).wait()
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw SinkError.deadlineExceeded }
        return value
    }
}

/// Waits for a future, but returns (throwing CancellationError) as soon as the task is cancelled.
struct AbandonWaiter: Sendable {
    let future: EventLoopFuture<Void>

    init(_ future: EventLoopFuture<Void>) { self.future = future }

    private final class Once: Sendable {
        let continuation = Locked<CheckedContinuation<Void, any Error>?>(nil)
        func resume(throwing error: (any Error)? = nil) {
            guard let waiting = continuation.withLock({ $0.take() }) else { return }
            if let error { waiting.resume(throwing: error) } else { waiting.resume() }
        }
    }

    func wait() async throws {
        let once = Once()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                once.continuation.withLock { $0 = continuation }
                if Task.isCancelled { once.resume(throwing: CancellationError()) }
                future.whenComplete { _ in once.resume() }
            }
        } onCancel: {
            once.resume(throwing: CancellationError())
        }
    }
}
