import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// Accepts Frame Streams connections on unix sockets and TCP, enforces the connection cap, runs
/// each connection as its own task, and sweeps for handshake and idle timeouts.
///
/// On graceful shutdown it stops accepting (the socket file is removed), lets open connections
/// hand over what they have already received for a short drain window, then closes them.
public final class DnstapListener: Service {
    public struct Settings: Sendable {
        public var addresses: [ListenAddress]
        public var unixSocketMode: UInt16
        public var unixSocketGroup: String?
        public var maxFrameSize: Int
        public var handshakeTimeout: TimeAmount
        public var idleTimeout: TimeAmount?
        /// `-allow-from` (TCP only); nil: every address.
        public var allowList: AllowList?
        /// How often the TLS files are looked at for a change.
        public var tlsWatchInterval: TimeAmount = .seconds(2)

        public init(configuration: ForwarderConfiguration) {
            allowList = configuration.allowFrom
            addresses = configuration.listenAddresses
            unixSocketMode = configuration.unixSocketMode
            unixSocketGroup = configuration.unixSocketGroup
            maxFrameSize = configuration.maxFrameSize
            handshakeTimeout = TimeAmount(configuration.handshakeTimeout)
            idleTimeout = configuration.idleTimeout.map(TimeAmount.init)
        }
    }

    enum Accepted: Sendable {
        case connection(ConnectionReads, ConnectionRecord)
        case rejected
    }

    private let settings: Settings
    private let registry: ConnectionRegistry
    private let statistics: ForwarderStatistics
    private let shutdown: ShutdownCoordinator
    private let group: any EventLoopGroup
    private let logger: Logger
    private let bound = Published<[SocketAddress]>()
    private let servers = Locked<[any Channel]>([])
    /// Bound by `bind()`, taken by `run()`.
    private let pending = Locked<[NIOAsyncChannel<Accepted, Never>]?>(nil)
    private let rejectionLog = Locked(RateLimitedLog(interval: .seconds(1), burst: 10))
    private let reserve: DescriptorReserve
    /// The TLS context of the TCP listener (nil: plain Frame Streams).
    public let tls: TLSCredentials?
    /// With TLS: reloads the certificates on SIGHUP (trapped from `bind()` on) and when they change.
    private let reloader = Locked<CertificateReloader?>(nil)
    /// The filters (`-message-types`, the names files, `-sample-rate`); nil: every event is written.
    public let filter: EventFilter?
    /// With a names file: SIGHUP (trapped from `bind()` on) reads it again.
    private let namesSignals = Locked<UnixSignalsSequence?>(nil)
    /// `-transactions`: the queries waiting for their responses, shared by every connection; nil: off.
    public let transactions: TransactionTable?
    /// What happens on each admitted connection.
    private let connections: ConnectionServer
    /// Each connection's task runs on its channel's event loop (`EventLoopTaskExecutor`).
    private let executors: EventLoopTaskExecutors

    public init(
        settings: Settings, registry: ConnectionRegistry, buffer: EventBuffer, statistics: ForwarderStatistics,
        resolutionMap: ResolutionMap? = nil, tls: TLSCredentials? = nil, filter: EventFilter? = nil,
        transactions: TransactionTable? = nil, shutdown: ShutdownCoordinator, group: any EventLoopGroup,
        reserve: DescriptorReserve = DescriptorReserve(), logger: Logger
    ) {
        self.reserve = reserve
        self.transactions = transactions
        self.tls = tls
        self.filter = filter
        self.settings = settings
        self.registry = registry
        self.statistics = statistics
        self.connections = ConnectionServer(
            maxFrameSize: settings.maxFrameSize, registry: registry, statistics: statistics, resolutionMap: resolutionMap,
            filter: filter, transactions: transactions, encoders: EncoderPool(resolutionMap: resolutionMap),
            intake: EventIntake(buffer: buffer, statistics: statistics), logger: logger)
        self.shutdown = shutdown
        self.group = group
        self.executors = EventLoopTaskExecutors(group: group)
        self.logger = logger
    }

    /// The addresses actually bound (TCP port 0 becomes the real port), once listening.
    public func boundAddresses() async throws -> [SocketAddress] {
        try await bound.value()
    }

    /// Whether every listener is bound and accepting (false before binding and once shutting down).
    public var isListening: Bool {
        !shutdown.isShuttingDown && bound.hasValue && servers.withLock { $0.allSatisfy(\.isActive) }
    }

    /// Binds every address (the service group runs only once all are bound). On a failure,
    /// nothing stays bound and the socket files are removed; the error names the address.
    public func bind() async throws {
        guard bound.current == nil else { return }
        let servers: [NIOAsyncChannel<Accepted, Never>]
        do {
            servers = try await bindAll()
        } catch {
            bound.publish(.failure(error))
            throw error
        }
        if let tls {
            let reloader = await CertificateReloader(
                tls: tls, interval: settings.tlsWatchInterval, statistics: statistics, logger: logger)
            self.reloader.withLock { $0 = reloader }
        }
        if filter?.hasFiles == true {
            let signals = await UnixSignalsSequence(trapping: .sighup)
            namesSignals.withLock { $0 = signals }
        }
        pending.withLock { $0 = servers }
        self.servers.withLock { $0 = servers.map(\.channel) }
        bound.publish(.success(servers.compactMap { $0.channel.localAddress }))
        var metadata: Logger.Metadata = [
            "addresses": "\(settings.addresses.map(\.description).joined(separator: ", "))",
            "max_connections": "\(registry.maxConnections)",
            "max_connections_per_peer": "\(registry.maxPerPeer.map(String.init) ?? "off")",
            "allow_from": "\(settings.allowList?.description ?? "any")",
        ]
        if let tls {
            metadata["tls"] = "on, client certificates \(tls.requiresClientCertificate ? "required" : "not asked for")"
            metadata["tls_certificate"] = "\(tls.current.name), valid until \(RFC3339.string(micros: tls.current.notValidAfter * 1_000_000))"
        }
        logger.info("listening for dnstap", metadata: metadata)
    }

    public func run() async throws {
        try await bind()
        let servers = pending.withLock { $0.take() } ?? []
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                for server in servers {
                    group.addTask { try await self.acceptLoop(server) }
                }
                group.addTask { await self.sweepLoop() }
                if let reloader = self.reloader.withLock({ $0 }) {
                    group.addTask { await reloader.run { await self.shutdown.waitUntilBegun() } }
                }
                if let signals = self.namesSignals.withLock({ $0 }), let filter = self.filter {
                    group.addTask { await self.reloadNames(filter, on: signals) }
                }
                if let transactions = self.transactions {
                    group.addTask { await self.expireTransactions(transactions) }
                }
            }
        } onGracefulShutdown: {
            self.stopAccepting()
        }
        removeSocketFiles()
        // Every connection has ended: no query can be held any more, and none is left behind.
        if let transactions { await handUnanswered(transactions.drain(), logger: logger) }
        logger.info("listener stopped")
    }

    /// Closes what `bind()` bound when the service never ran (another listener failed to bind).
    public func closeUnused() async {
        for server in pending.withLock({ $0.take() }) ?? [] { try? await server.channel.close() }
        removeSocketFiles()
    }

    /// Writes the queries whose response did not come within `-transaction-timeout`, a few times
    /// a timeout, until the shutdown begins (then the listener writes every pending one).
    private func expireTransactions(_ transactions: TransactionTable) async {
        let tick = min(max(TimeAmount.nanoseconds(transactions.settings.timeout.nanosecondsClamped / 8), .milliseconds(10)), .milliseconds(250))
        while !shutdown.isShuttingDown {
            await pause(tick)
            if Task.isCancelled || shutdown.isShuttingDown { return }
            await handUnanswered(transactions.expire(), logger: logger)
        }
    }

    private func handUnanswered(_ queries: [HeldQuery], logger: Logger) async {
        guard !queries.isEmpty else { return }
        let allocator = ByteBufferAllocator()
        statistics.transactions([.unanswered: queries.count])
        await connections.intake.queue(HeldQuery.unansweredEvents(queries, allocator: allocator), logger: logger)
    }

    /// Reads the names files again on each SIGHUP, until the shutdown begins.
    private func reloadNames(_ filter: EventFilter, on signals: UnixSignalsSequence) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in signals { filter.reload(logger: self.logger) }
            }
            await shutdown.waitUntilBegun()
            group.cancelAll()
        }
    }

    // MARK: - Binding

    private func bindAll() async throws -> [NIOAsyncChannel<Accepted, Never>] {
        var servers: [NIOAsyncChannel<Accepted, Never>] = []
        do {
            for address in settings.addresses {
                do {
                    servers.append(try await bind(address))
                } catch let error as ConfigurationError {
                    throw error
                } catch {
                    throw ListenerError.cannotListen(address, "\(error)")
                }
            }
        } catch {
            for server in servers { try? await server.channel.close() }
            removeSocketFiles()
            throw error
        }
        return servers
    }

    /// Socket reads a connection makes each time it is readable, and the largest of them.
    static let readsPerCycle: UInt = 1
    static let largestRead = 64 * 1024

    private func bind(_ address: ListenAddress) async throws -> NIOAsyncChannel<Accepted, Never> {
        let statistics = statistics
        let reserve = reserve
        let logger = logger
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelInitializer { channel in
                AcceptErrorReporter.install(on: channel, statistics: statistics, reserve: reserve, logger: logger)
            }
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // A channel keeps up to `maxMessagesPerRead` of its receive buffers for reuse, each of up to
            // the allocator's largest size, for as long as it is open, idle or not: 16 reads of up to
            // 256 KiB let a connection that had once taken a burst keep 0.5-4 MiB (200 such
            // connections: 1.6 MiB each). One of up to 64 KiB bounds that to 64 KiB (200 connections
            // after a burst: 93 KiB each in all, against 190 with two reads a cycle), and measured the
            // same CPU a message on the benchmark (README, "Performance"). For TLS it also bounds
            // what swift-nio-ssl hands on in one read cycle (it decrypts a cycle's reads into one
            // buffer, and the connection queues up to 8 of those).
            .childChannelOption(.maxMessagesPerRead, value: Self.readsPerCycle)
            .childChannelOption(
                .recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 8192, maximum: Self.largestRead))
        switch address {
        case .unix(let path):
            let server = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true) { channel in
                self.initializeChild(channel, transport: .unix)
            }
            try applySocketPermissions(path)
            return server
        case .tcp(let host, let port):
            let transport: ConnectionTransport = tls == nil ? .tcp : .tls
            return try await bootstrap
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .bind(host: host, port: port) { channel in
                    self.initializeChild(channel, transport: transport)
                }
        case .pdns(let host, let port):
            return try await bootstrap.bind(host: host, port: port) { channel in
                self.initializeChild(channel, transport: .pdns)
            }
        }
    }

    private func applySocketPermissions(_ path: String) throws {
        if let group = settings.unixSocketGroup {
            guard let gid = Self.groupID(group) else {
                throw ConfigurationError.invalidValue(.unixSocketGroup, group, "no such group")
            }
            guard chown(path, uid_t.max, gid) == 0 else {
                throw ConfigurationError.invalid("cannot set group \(group) on \(path): \(String(cString: strerror(errno)))")
            }
        }
        guard chmod(path, mode_t(settings.unixSocketMode)) == 0 else {
            throw ConfigurationError.invalid("cannot set mode on \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func groupID(_ name: String) -> gid_t? {
        if let number = gid_t(name) { return number }
        guard let entry = getgrnam(name) else { return nil }
        return entry.pointee.gr_gid
    }

    private func removeSocketFiles() {
        for case .unix(let path) in settings.addresses {
            var info = stat()
            if lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
        }
    }

    /// Runs on the event loop for each accepted socket: admission is decided here, at once, before
    /// any TLS work: the allow-list, then the connection cap, then the cap per peer.
    private func initializeChild(_ channel: any Channel, transport: ConnectionTransport) -> EventLoopFuture<Accepted> {
        channel.eventLoop.makeCompletedFuture {
            let peer = Self.describePeer(channel, transport: transport)
            let address = transport.isNetwork ? channel.remoteAddress?.ipAddress : nil
            // Accepted on the reserve descriptor: refuse it, and take the reserve back once it is closed.
            let outOfDescriptors = reserve.isReleased
            var refusal: RefusalReason?
            if let allowList = settings.allowList, transport.isNetwork, !(address.map(allowList.allows) ?? false) {
                refusal = .notAllowed
            } else if outOfDescriptors {
                refusal = .outOfDescriptors
            } else if shutdown.isShuttingDown {
                refusal = .shuttingDown
            } else if !registry.tryReserve() {
                refusal = .connectionCap
            } else if !registry.tryReservePeer(address) {
                registry.releaseReservation()
                refusal = .perPeerCap
            }
            if let refusal {
                logRefusal(refusal, peer: peer, detail: nil)
                if outOfDescriptors { reserve.restore(whenClosed: channel) }
                channel.close(promise: nil)
                return .rejected
            }
            // The record first: the TLS handler names it once the handshake is done. Whatever fails
            // from here closes it, which frees the slots taken above.
            let record = registry.open(peer: peer, transport: transport, channel: channel)
            do {
                if transport == .tls, let tls {
                    let session = TLSSessionHandler(
                        record: record, onVerified: { [connections] in connections.logOpened($0) },
                        onRefused: { [self] record, reason, detail in logRefusal(reason, peer: record.peer, detail: detail) })
                    try channel.pipeline.syncOperations.addHandlers([NIOSSLServerHandler(context: tls.context), session])
                } else if transport == .tcp || transport == .pdns {
                    record.setSender(address ?? peer)
                }
                // PowerDNS's stream has no handshake: its messages start at once.
                if transport == .pdns { record.noteHandshakeComplete() }
                let reads = ConnectionReads(eventLoop: channel.eventLoop)
                try channel.pipeline.syncOperations.addHandler(reads)
                statistics.accepted()
                return .connection(reads, record)
            } catch {
                registry.close(record, reason: .ioError)
                throw error
            }
        }
    }

    /// Counts a refusal and logs it (at most ten lines a second, then a count of those left out).
    private func logRefusal(_ reason: RefusalReason, peer: String, detail: String?) {
        statistics.rejected(reason)
        guard let suppressed = rejectionLog.withLock({ $0.shouldLog() }) else { return }
        let message: String
        switch reason {
        case .connectionCap: message = "connection rejected: at the connection cap"
        case .perPeerCap: message = "connection rejected: this address is at -max-connections-per-peer"
        case .notAllowed: message = "connection rejected: address not in -allow-from"
        case .outOfDescriptors: message = "connection rejected: out of file descriptors"
        case .shuttingDown: message = "connection rejected: shutting down"
        case .noClientCertificate: message = "TLS connection refused: the client sent no certificate"
        case .untrustedCertificate: message = "TLS connection refused: the client certificate is not from the client CA, or is expired"
        case .tlsHandshakeFailed: message = "TLS connection refused: the handshake failed"
        }
        var metadata: Logger.Metadata = [
            "peer": "\(peer)", "reason": "\(reason.rawValue)", "active": "\(registry.active)",
            "max_connections": "\(registry.maxConnections)",
            "rejected_total": "\(statistics.connectionsRejected.load(ordering: .relaxed))",
            "suppressed_since_last": "\(suppressed)",
        ]
        if let limit = registry.maxPerPeer, reason == .perPeerCap { metadata["max_connections_per_peer"] = "\(limit)" }
        if let detail { metadata["detail"] = "\(detail)" }
        logger.warning("\(message)", metadata: metadata)
    }

    static func describePeer(_ channel: any Channel, transport: ConnectionTransport) -> String {
        switch transport {
        case .tcp, .tls, .pdns: return channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "tcp:?"
        case .unix: return "unix:" + (channel.localAddress?.pathname ?? "?")
        }
    }

    // MARK: - Connections

    private func acceptLoop(_ server: NIOAsyncChannel<Accepted, Never>) async throws {
        try await server.executeThenClose { inbound in
            try await withThrowingDiscardingTaskGroup { group in
                for try await accepted in inbound {
                    guard case .connection(let reads, let record) = accepted else { continue }
                    group.addTask(executorPreference: executors.executor(for: record.channel.eventLoop)) {
                        await self.connections.serve(reads, record: record)
                    }
                }
            }
        }
    }

    // MARK: - Timeouts and shutdown

    private var sweepInterval: TimeAmount {
        let shortest = min(settings.handshakeTimeout, settings.idleTimeout ?? settings.handshakeTimeout)
        return min(max(shortest / 4, .milliseconds(20)), .seconds(1))
    }

    /// The drain window: how long open connections may go on handing over data at shutdown.
    private var drainWindow: TimeAmount { min(.seconds(1), shutdown.timeoutAmount / 4) }

    private func sweepLoop() async {
        while true {
            // A tick, cut short when the shutdown begins; while shutting down, ticks are short:
            // the listener is done as soon as its connections are.
            await pause(shutdown.isShuttingDown ? .milliseconds(20) : sweepInterval)
            if Task.isCancelled { return }
            let now = NIODeadline.now()
            let records = registry.snapshot()
            if let started = shutdown.started {
                if now >= started + drainWindow {
                    for record in records { record.requestClose(.shutdown) }
                }
                if records.isEmpty && servers.withLock({ $0.allSatisfy { !$0.isActive } }) { return }
                continue
            }
            for record in records {
                if !record.isHandshakeComplete {
                    if now - record.startedAt >= settings.handshakeTimeout { record.requestClose(.handshakeTimeout) }
                } else if let idle = settings.idleTimeout, !record.isWaitingForRoom, now - record.lastActivity >= idle {
                    record.requestClose(.idleTimeout)
                }
            }
        }
    }

    /// Sleeps for `interval`, cut short when the shutdown begins (a whole interval once it has).
    private func pause(_ interval: TimeAmount) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: .nanoseconds(interval.nanoseconds)) }
            if !shutdown.isShuttingDown { group.addTask { await self.shutdown.waitUntilBegun() } }
            await group.next()
            group.cancelAll()
        }
    }

    private func stopAccepting() {
        shutdown.begin()
        let servers = self.servers.withLock { $0 }
        for server in servers { server.close(promise: nil) }
        removeSocketFiles()
        logger.info(
            "shutting down: stopped accepting; draining open connections",
            metadata: ["open_connections": "\(registry.active)", "drain_window_ms": "\(drainWindow.nanoseconds / 1_000_000)"])
    }
}

public enum ListenerError: Error, CustomStringConvertible {
    case cannotListen(ListenAddress, String)

    public var description: String {
        switch self {
        case .cannotListen(let address, let why): return "cannot listen on \(address): \(why)"
        }
    }
}

extension TimeAmount {
    static func / (lhs: TimeAmount, rhs: Int64) -> TimeAmount { .nanoseconds(lhs.nanoseconds / rhs) }
}
