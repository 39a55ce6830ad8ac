import DnstapForwarder
import CompressNIO
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// An in-process Splunk HEC for tests. It checks the protocol strictly (POST, `Authorization:
/// Splunk <token>`, gzip when announced, concatenated envelopes each with a numeric `time` and an
/// `event` object) and answers each request as scripted: a status and body, a hang, or a dropped
/// connection. Events of requests it answers 200 are kept.
public final class HECTestServer: Sendable {
    public enum Behavior: Sendable {
        /// Answer with this status and HEC body (e.g. 503, `{"text":"Server is busy","code":9}`).
        case respond(status: Int, body: String, headers: [(String, String)] = [])
        /// Never answer.
        case hang
        /// Close the connection without answering.
        case dropConnection

        public static let success = Behavior.respond(status: 200, body: #"{"text":"Success","code":0}"#)
    }

    private struct State {
        var script: [Behavior] = []
        var defaultBehavior = Behavior.success
        var events: [String] = []
        var requests = 0
        var violations: [String] = []
        var waiters: [(Int, CheckedContinuation<Void, Never>, id: Int)] = []
        var nextWaiterID = 0
        var healthy = true
        var acks = false
        var nextAckID = 0
        var lostAcks = Set<Int>()
        var ackQueries = 0
    }

    public let token: String
    private let state = Locked(State())
    private let channel: Locked<(any Channel)?> = Locked(nil)
    /// The accepted connections, closed by `stop()` as a stopped indexer's would be.
    private let connections = Locked<[ObjectIdentifier: any Channel]>([:])
    public let port: Int

    public let scheme: String

    /// Starts on 127.0.0.1 (port 0: an ephemeral one); with `certificate` and `privateKey` (PEM
    /// files), it serves HTTPS.
    public init(token: String = "test-token", port: Int = 0, certificate: String? = nil, privateKey: String? = nil) async throws {
        self.token = token
        let box = ServerBox()
        var tls: NIOSSLContext?
        if let certificate, let privateKey {
            let configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: privateKey, format: .pem)))
            tls = try NIOSSLContext(configuration: configuration)
        }
        scheme = tls == nil ? "http" : "https"
        let context = tls
        let connections = connections
        let bound = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let id = ObjectIdentifier(channel)
                connections.withLock { $0[id] = channel }
                channel.closeFuture.whenComplete { _ in connections.withLock { _ = $0.removeValue(forKey: id) } }
                return channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(RequestHandler(server: box))
                }
            }
            .bind(host: "127.0.0.1", port: port).get()
        self.port = bound.localAddress!.port!
        channel.withLock { $0 = bound }
        box.server.withLock { $0 = self }
    }

    public var url: String { "\(scheme)://127.0.0.1:\(port)/services/collector" }

    /// Answers the next requests with these behaviors, in order; then `defaultBehavior`.
    public func script(_ behaviors: [Behavior]) { state.withLock { $0.script += behaviors } }
    public func setDefault(_ behavior: Behavior) { state.withLock { $0.defaultBehavior = behavior } }
    public func setHealthy(_ healthy: Bool) { state.withLock { $0.healthy = healthy } }

    /// Indexer acknowledgement on: requests need a channel, successes carry an ackId, and
    /// `/services/collector/ack` reports them, except the ackIds in `lost`, which stay false forever.
    public func enableAcknowledgements(losing lost: Set<Int> = []) {
        state.withLock {
            $0.acks = true
            $0.lostAcks = lost
        }
    }

    public var ackQueries: Int { state.withLock { $0.ackQueries } }

    /// The `event` objects accepted so far, as JSON text, in arrival order.
    public var events: [String] { state.withLock { $0.events } }
    public var requests: Int { state.withLock { $0.requests } }
    /// Protocol violations seen (must stay empty).
    public var violations: [String] { state.withLock { $0.violations } }

    /// Returns once `count` events have arrived, or when the task is cancelled.
    public func waitForEvents(_ count: Int) async {
        let id = state.withLock { state -> Int in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let done = state.withLock { state -> Bool in
                    if state.events.count >= count || Task.isCancelled { return true }
                    state.waiters.append((count, continuation, id: id))
                    return false
                }
                if done { continuation.resume() }
            }
        } onCancel: {
            let cancelled = state.withLock { state -> CheckedContinuation<Void, Never>? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index).1
            }
            cancelled?.resume()
        }
    }

    /// Stops listening and closes every connection (keep-alive ones too), as a stopped indexer.
    public func stop() async {
        let bound = channel.withLock { $0 }
        try? await bound?.close()
        for connection in connections.withLock({ Array($0.values) }) { try? await connection.close() }
    }

    // MARK: - Handling

    enum Answer {
        case respond(HTTPResponseStatus, String, [(String, String)])
        case hang
        case drop
    }

    func handle(head: HTTPRequestHead, body: ByteBuffer) -> Answer {
        if head.method == .POST && head.uri.hasPrefix("/services/collector/ack") {
            return answerAckQuery(head: head, body: body)
        }
        if head.method == .GET && head.uri.hasPrefix("/services/collector/health") {
            let healthy = state.withLock { $0.healthy }
            return healthy
                ? .respond(.ok, #"{"text":"HEC is healthy","code":17}"#, [])
                : .respond(.serviceUnavailable, #"{"text":"HEC is unhealthy, queues are full","code":18}"#, [])
        }
        var problems: [String] = []
        let acks = state.withLock { $0.acks }
        if acks && head.headers.first(name: "X-Splunk-Request-Channel") == nil {
            return .respond(.badRequest, #"{"text":"Data channel is missing","code":10}"#, [])
        }
        if head.method != .POST { problems.append("method \(head.method)") }
        if !head.uri.hasPrefix("/services/collector") { problems.append("path \(head.uri)") }
        if head.headers.first(name: "Authorization") != "Splunk \(token)" {
            problems.append("Authorization header \(head.headers.first(name: "Authorization") ?? "missing")")
        }
        var payload = body
        if head.headers.first(name: "Content-Encoding") == "gzip" {
            do {
                payload = try payload.decompress(with: .gzip())
            } catch {
                problems.append("body announced as gzip does not decompress: \(error)")
            }
        }
        let envelopes = Self.splitConcatenatedObjects(String(buffer: payload))
        var events: [String] = []
        for envelope in envelopes {
            guard let object = try? JSONSerialization.jsonObject(with: Data(envelope.utf8)) as? [String: Any] else {
                problems.append("an envelope is not a JSON object: \(envelope.prefix(80))")
                continue
            }
            if !(object["time"] is NSNumber) { problems.append("envelope without a numeric time") }
            guard let event = object["event"] as? [String: Any] else {
                problems.append("envelope without an event object")
                continue
            }
            if object["sourcetype"] as? String == nil || object["host"] as? String == nil || object["source"] as? String == nil {
                problems.append("envelope without host/source/sourcetype")
            }
            let eventJSON = (try? JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) }
            events.append(eventJSON ?? "")
        }
        if envelopes.isEmpty { problems.append("empty body") }
        let (behavior, ready) = state.withLock { state -> (Behavior, [CheckedContinuation<Void, Never>]) in
            state.requests += 1
            state.violations += problems
            var behavior = state.script.isEmpty ? state.defaultBehavior : state.script.removeFirst()
            if case .respond(let status, _, _) = behavior, status == 200, problems.isEmpty {
                state.events += events
                if state.acks {
                    behavior = .respond(status: 200, body: #"{"text":"Success","code":0,"ackId":\#(state.nextAckID)}"#)
                    state.nextAckID += 1
                }
            }
            let count = state.events.count
            let ready = state.waiters.filter { $0.0 <= count }.map(\.1)
            state.waiters.removeAll { $0.0 <= count }
            return (behavior, ready)
        }
        for waiter in ready { waiter.resume() }
        if !problems.isEmpty { return .respond(.badRequest, #"{"text":"Invalid data format","code":6}"#, []) }
        switch behavior {
        case .respond(let status, let body, let headers): return .respond(HTTPResponseStatus(statusCode: status), body, headers)
        case .hang: return .hang
        case .dropConnection: return .drop
        }
    }

    private func answerAckQuery(head: HTTPRequestHead, body: ByteBuffer) -> Answer {
        let text = String(buffer: body)
        let ids = text.split { !$0.isNumber }.compactMap { Int($0) }
        let answer = state.withLock { state -> String in
            state.ackQueries += 1
            guard state.acks else { return "" }
            return ids.map { #""\#($0)":\#($0 < state.nextAckID && !state.lostAcks.contains($0))"# }.joined(separator: ",")
        }
        if !state.withLock({ $0.acks }) { return .respond(.badRequest, #"{"text":"ACK is disabled","code":14}"#, []) }
        if head.headers.first(name: "Authorization") != "Splunk \(token)" {
            return .respond(.forbidden, #"{"text":"Invalid token","code":4}"#, [])
        }
        return .respond(.ok, #"{"acks":{\#(answer)}}"#, [])
    }

    /// Splits `{…}{…}\n{…}` into the objects' texts (strings and escapes respected).
    static func splitConcatenatedObjects(_ text: String) -> [String] {
        var objects: [String] = []
        var depth = 0
        var inString = false
        var escaped = false
        var start: String.Index?
        for index in text.indices {
            let character = text[index]
            if inString {
                if escaped { escaped = false } else if character == "\\" { escaped = true } else if character == "\"" { inString = false }
                continue
            }
            switch character {
            case "\"": inString = true
            case "{":
                if depth == 0 { start = index }
                depth += 1
            case "}":
                depth -= 1
                if depth == 0, let begin = start { objects.append(String(text[begin...index])) }
            default: break
            }
        }
        return objects
    }

    final class ServerBox: Sendable {
        let server = Locked<HECTestServer?>(nil)
    }

    final class RequestHandler: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        private let server: ServerBox
        private var head: HTTPRequestHead?
        private var body = ByteBuffer()

        init(server: ServerBox) { self.server = server }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                self.head = head
                body.clear()
            case .body(var chunk):
                body.writeBuffer(&chunk)
            case .end:
                guard let head, let server = server.server.withLock({ $0 }) else { return }
                switch server.handle(head: head, body: body) {
                case .respond(let status, let text, let extra):
                    var headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", "\(text.utf8.count)")])
                    for (name, value) in extra { headers.add(name: name, value: value) }
                    context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
                    context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
                    context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                case .hang:
                    break
                case .drop:
                    context.close(promise: nil)
                }
            }
        }
    }
}
