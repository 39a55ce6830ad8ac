import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// The admin HTTP server (`-admin-listen`): HTTP/1.1 on its own address, never on the dnstap
/// listeners. It only moves bytes; `AdminAPI` answers. It is the last part to stop, so `/readyz`
/// and `/metrics` answer while the service drains.
public final class AdminServer: Service, Sendable {
    public static let maxConnections = 64
    static let idleTimeout = TimeAmount.seconds(30)
    static let maxRequestBody = 64 * 1024

    private let address: HostPort
    private let api: AdminAPI
    private let group: any EventLoopGroup
    private let reserve: DescriptorReserve
    private let logger: Logger
    private let state = Locked(State())

    private let bound = Published<SocketAddress>()

    private struct State {
        var server: (any Channel)?
        var open: [ObjectIdentifier: any Channel] = [:]
    }

    init(address: HostPort, api: AdminAPI, group: any EventLoopGroup, reserve: DescriptorReserve, logger: Logger) {
        self.address = address
        self.api = api
        self.group = group
        self.reserve = reserve
        self.logger = logger
    }

    /// The address actually bound (port 0 becomes the real port), once listening.
    public func boundAddress() async throws -> SocketAddress {
        try await bound.value()
    }

    typealias ServerChannel = NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
    /// Bound by `bind()`, taken by `run()`.
    private let pending = Locked<ServerChannel?>(nil)

    /// Binds the admin address (the service group runs only once it is bound); the error names it.
    public func bind() async throws {
        guard bound.current == nil else { return }
        let server: ServerChannel
        do {
            let (statistics, reserve, logger) = (api.statistics, reserve, logger)
            server = try await ServerBootstrap(group: group)
                .serverChannelInitializer { channel in
                    AcceptErrorReporter.install(on: channel, statistics: statistics, reserve: reserve, logger: logger)
                }
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: address.host, port: address.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if reserve.isReleased {
                            // Accepted on the reserve descriptor (out of descriptors): close it at once.
                            reserve.restore(whenClosed: channel)
                            channel.close(promise: nil)
                        }
                        try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: Self.idleTimeout))
                        try channel.pipeline.syncOperations.addHandler(CloseWhenIdle())
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            let failure = AdminServerError.cannotListen(address, "\(error)")
            bound.publish(.failure(failure))
            throw failure
        }
        let local = server.channel.localAddress!
        state.withLock { $0.server = server.channel }
        pending.withLock { $0 = server }
        bound.publish(.success(local))
        logger.info("admin API listening", metadata: ["address": "\(local)"])
    }

    /// Closes what `bind()` bound when the service never ran (another listener failed to bind).
    public func closeUnused() async {
        if let server = pending.withLock({ $0.take() }) { try? await server.channel.close() }
    }

    public func run() async throws {
        try await bind()
        guard let server = pending.withLock({ $0.take() }) else { return }

        try await withGracefulShutdownHandler {
            try await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in inbound {
                        let admitted = state.withLock { state -> Bool in
                            guard state.open.count < Self.maxConnections else { return false }
                            state.open[ObjectIdentifier(connection.channel)] = connection.channel
                            return true
                        }
                        guard admitted else {
                            connection.channel.close(promise: nil)
                            continue
                        }
                        group.addTask {
                            await self.serve(connection)
                            _ = self.state.withLock { $0.open.removeValue(forKey: ObjectIdentifier(connection.channel)) }
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            let channels = self.state.withLock { state in [state.server].compactMap { $0 } + Array(state.open.values) }
            for channel in channels { channel.close(promise: nil) }
        }
        logger.info("admin API stopped")
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                var bodyBytes = 0
                for try await part in inbound {
                    switch part {
                    case .head(let request):
                        head = request
                        bodyBytes = 0
                    case .body(let chunk):
                        bodyBytes += chunk.readableBytes
                        if bodyBytes > Self.maxRequestBody { return }
                    case .end:
                        guard let request = head else { return }
                        head = nil
                        let response = api.handle(method: request.method, uri: request.uri)
                        try await write(response, for: request, to: outbound)
                        if !request.isKeepAlive { return }
                    }
                }
            }
        } catch {
            logger.debug("admin connection ended with an error", metadata: ["error": "\(error)"])
        }
    }

    private func write(
        _ response: AdminResponse, for request: HTTPRequestHead, to outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>
    ) async throws {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: "\(response.body.readableBytes)")
        headers.add(name: "Cache-Control", value: "no-store")
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        try await outbound.write(.head(HTTPResponseHead(version: request.version, status: response.status, headers: headers)))
        if request.method != .HEAD { try await outbound.write(.body(.byteBuffer(response.body))) }
        try await outbound.write(.end(nil))
    }
}

/// Closes an admin connection that has sent nothing for `AdminServer.idleTimeout`.
private final class CloseWhenIdle: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

public enum AdminServerError: Error, CustomStringConvertible {
    case cannotListen(HostPort, String)

    public var description: String {
        switch self {
        case .cannotListen(let address, let why):
            return "cannot listen for the admin API on \(address.host):\(address.port): \(why) (-admin-listen; empty turns it off)"
        }
    }
}
