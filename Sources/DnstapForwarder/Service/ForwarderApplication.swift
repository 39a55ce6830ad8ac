import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// The whole service, built from a configuration: buffer, exporter, listener and statistics,
/// run by one `ServiceGroup`. The executable and the integration tests both use it.
public final class ForwarderApplication: Sendable {
    public let configuration: ForwarderConfiguration
    public let metrics = PrometheusExporter()
    public let statistics: ForwarderStatistics
    public let resolutionMap: ResolutionMap
    public let activity: ConnectionActivityTracker
    /// The admin API (nil when `-admin-listen` is empty).
    public let admin: AdminServer?
    public let registry: ConnectionRegistry
    public let buffer: EventBuffer
    public let listener: DnstapListener
    public let shutdown: ShutdownCoordinator
    private let exporter: BatchExporter
    private let sink: any EventSink
    private let reporter: StatisticsReporter
    private let serviceGroup: ServiceGroup
    private let logger: Logger

    /// - Parameters:
    ///   - sink: where events go; nil builds the one `configuration.output` names.
    ///   - signals: the signals that start a graceful shutdown (none in tests).
    ///   - clock: the clock the shutdown bound runs on (a manual one in tests).
    public init(
        configuration: ForwarderConfiguration, sink: (any EventSink)? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        signals: [UnixSignal] = [.sigterm, .sigint], clock: any Clock<Duration> = ContinuousClock(), logger: Logger
    ) throws {
        self.configuration = configuration
        self.logger = logger
        let startedAt = WallClock.nowMicros()
        statistics = ForwarderStatistics(metricsFactory: metrics.metricsFactory, maxSenderSeries: configuration.maxSenderSeries)
        resolutionMap = ResolutionMap(settings: configuration.resolutionMap, metricsFactory: metrics.metricsFactory)
        activity = ConnectionActivityTracker(settings: configuration.activity)
        shutdown = ShutdownCoordinator(timeout: configuration.shutdownTimeout, clock: clock)
        // The names files are read before any output opens: a file that cannot be read ends the start.
        let filter = configuration.filters.isActive ? try EventFilter(settings: configuration.filters) : nil
        let sink = try sink ?? Self.makeSink(configuration, eventLoopGroup: eventLoopGroup, statistics: statistics, logger: logger)
        self.sink = sink
        // The TLS files load before anything opens: a file that does not load ends the start.
        let tls = try configuration.tls.map(TLSCredentials.init(files:))
        registry = ConnectionRegistry(
            maxConnections: configuration.maxConnections, maxPerPeer: configuration.maxConnectionsPerPeer, activity: activity)
        let backpressure = BackpressureReporter(
            capacity: configuration.bufferSize, statistics: statistics, logger: logger.with(component: "buffer"))
        buffer = EventBuffer(capacity: configuration.bufferSize, timerLoop: eventLoopGroup.next()) { backpressure.paused() }
        exporter = BatchExporter(
            buffer: buffer, sink: sink, batchSize: configuration.batchSize, flushInterval: configuration.flushInterval,
            statistics: statistics, shutdown: shutdown, logger: logger.with(component: "exporter"))
        let reserve = DescriptorReserve()
        let transactions = configuration.transactions.enabled ? TransactionTable(settings: configuration.transactions) : nil
        listener = DnstapListener(
            settings: .init(configuration: configuration), registry: registry, buffer: buffer, statistics: statistics,
            resolutionMap: resolutionMap, tls: tls, filter: filter, transactions: transactions, shutdown: shutdown,
            group: eventLoopGroup, reserve: reserve, logger: logger.with(component: "listener"))
        reporter = StatisticsReporter(
            statistics: statistics, registry: registry, buffer: buffer, interval: configuration.statsInterval,
            logger: logger.with(component: "statistics"))
        let listener = listener
        let registry = registry
        let buffer = buffer
        let statistics = statistics
        let resolutionMap = resolutionMap
        let activity = activity
        let metrics = metrics
        metrics.addGauge("dnstap_connections_active") { registry.active }
        metrics.addGauge("dnstap_connections_max") { registry.maxConnections }
        metrics.addGauge("dnstap_buffer_events") { buffer.fill }
        metrics.addGauge("dnstap_buffer_capacity") { buffer.capacity }
        metrics.addGauge("dnstap_buffer_oldest_event_age_seconds", seconds: { Double(buffer.oldestQueuedAge.nanoseconds) / 1e9 })
        metrics.addGauge("dnstap_spool_pending_events") { statistics.spoolPending }
        metrics.addGauge("dnstap_resolution_map_entries") { resolutionMap.statistics.entries }
        metrics.addGauge("dnstap_resolution_map_capacity") { resolutionMap.settings.capacity }
        metrics.addGauge("dnstap_listening") { listener.isListening ? 1 : 0 }
        if let transactions {
            metrics.addGauge("dnstap_transactions_pending") { transactions.pending }
            metrics.addGauge("dnstap_transactions_capacity") { transactions.settings.tableSize }
        }
        metrics.addGauge("dnstap_output_ready") { sink.readiness == .ready ? 1 : 0 }
        if case .hec = configuration.output {
            metrics.addGauge("dnstap_hec_circuit_open") { sink.isCircuitOpen ? 1 : 0 }
        }
        if sink.spoolUsage != nil {
            metrics.addGauge("dnstap_spool_bytes") { sink.spoolUsage?.bytes ?? 0 }
            metrics.addGauge("dnstap_spool_capacity_bytes") { sink.spoolUsage?.capacity ?? 0 }
        }
        if let tls {
            metrics.addGauge("dnstap_tls_certificate_expiry_timestamp_seconds") { Int(tls.current.notValidAfter) }
        }
        if let address = configuration.adminListen {
            let api = AdminAPI(
                statistics: statistics, registry: registry, buffer: buffer, resolutionMap: resolutionMap,
                activity: activity, metrics: metrics, listening: { listener.isListening }, output: { sink.readiness },
                startedAtMicros: startedAt, transactions: transactions)
            admin = AdminServer(
                address: address, api: api, group: eventLoopGroup, reserve: reserve, logger: logger.with(component: "admin"))
        } else {
            admin = nil
        }
        // Shutdown runs in reverse order: the listener stops first, the exporter drains, the
        // admin API (which reports the drain) stops last.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let admin { services.append(.init(service: admin)) }
        services.append(.init(service: ResolutionMapSweeper(map: resolutionMap, interval: .seconds(10))))
        var groupConfiguration = ServiceGroupConfiguration(
            services: services + [
                .init(service: exporter),
                .init(service: reporter),
                .init(service: listener, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
            ],
            gracefulShutdownSignals: signals,
            cancellationSignals: [],
            logger: logger.with(component: "lifecycle"))
        // A backstop only (the exporter keeps to the shutdown bound itself). No cancellation bound:
        // ServiceLifecycle ends the process with a fatal error when that one runs out.
        // Its margin is wide: when it fires, ServiceLifecycle cancels every service and the run ends
        // as failed (a CancellationError, exit 1) although the bound held; on a starved scheduler
        // (the test suite under ThreadSanitizer on 2 cores) the few steps after the bound took over 5 s.
        groupConfiguration.maximumGracefulShutdownDuration = configuration.shutdownTimeout + .seconds(30)
        groupConfiguration.maximumCancellationDuration = nil
        serviceGroup = ServiceGroup(configuration: groupConfiguration)
    }

    static func makeSink(
        _ configuration: ForwarderConfiguration, eventLoopGroup: any EventLoopGroup, statistics: ForwarderStatistics,
        logger: Logger
    ) throws -> any EventSink {
        switch configuration.output {
        case .stdout:
            return JSONLinesSink(fileDescriptor: 1)
        case .file:
            var settings = configuration.file
            settings.hostname = configuration.hec.host ?? HECSink.hostname()
            return try FileSink(settings: settings, statistics: statistics, logger: logger.with(component: "file"))
        case .hec(let endpoints, let token):
            // The spool first: it can fail to open, and then no HTTP client is left to shut down.
            let spool = try configuration.hec.spoolPath.map {
                try Spool(
                    directory: $0, maxBytes: configuration.hec.spoolMaxBytes, fsyncInterval: configuration.hec.spoolFsyncInterval,
                    logger: logger.with(component: "spool"))
            }
            let hec = try HECSink(
                endpoints: endpoints, token: token, settings: configuration.hec, eventLoopGroup: eventLoopGroup,
                statistics: statistics, logger: logger.with(component: "hec"))
            guard let spool else { return hec }
            return SpoolingSink(spool: spool, downstream: hec, statistics: statistics, logger: logger.with(component: "spool"))
        }
    }

    /// Runs until a signal or `triggerGracefulShutdown()`, then drains. Returns the summary.
    @discardableResult
    public func run() async throws -> RunSummary {
        logger.info("starting dnstap-forwarder", metadata: configuration.logMetadata)
        DescriptorLimit.warnIfTooLow(maxConnections: configuration.maxConnections, logger: logger)
        var failure: (any Error)?
        do {
            try await bindListeners()
            try await serviceGroup.run()
        } catch {
            failure = error
        }
        let summary = RunSummary(statistics: statistics, failure: failure)
        var metadata = reporter.metadata()
        metadata["undelivered"] = "\(summary.undelivered)"
        if summary.spoolPending > 0 { metadata["left_in_spool"] = "\(summary.spoolPending)" }
        // How long the stop took, from its start to here (the bound is -shutdown-timeout).
        if let started = shutdown.started {
            metadata["shutdown_s"] = "\(Double((NIODeadline.now() - started).nanoseconds / 1_000_000) / 1000)"
        }
        if let failure {
            metadata["error"] = "\(failure)"
            logger.error("stopped: the service failed", metadata: metadata)
        } else if summary.undelivered > 0 {
            logger.error("stopped: \(summary.undelivered) accepted events were not delivered", metadata: metadata)
        } else {
            logger.info("stopped: every accepted event was delivered", metadata: metadata)
        }
        return summary
    }

    /// Binds every listener before any service runs: an address that cannot be bound (dnstap unix
    /// or TCP, admin) ends the run at once with an error naming it, nothing left bound.
    private func bindListeners() async throws {
        do {
            try await listener.bind()
            try await admin?.bind()
        } catch {
            await listener.closeUnused()
            await admin?.closeUnused()
            await sink.shutdown()
            throw error
        }
    }

    public func triggerGracefulShutdown() async {
        await serviceGroup.triggerGracefulShutdown()
    }
}

/// What a run ended with, for the exit status.
public struct RunSummary: Sendable {
    public var eventsOut: Int
    public var undelivered: Int
    /// Events safe in the durable spool, to be sent at the next start (not lost).
    public var spoolPending: Int
    public var failure: String?

    init(statistics: ForwarderStatistics, failure: (any Error)?) {
        eventsOut = statistics.eventsOut.load(ordering: .relaxed)
        undelivered = statistics.droppedTotal
        spoolPending = statistics.spoolPending
        self.failure = failure.map { "\($0)" }
    }

    /// 0: clean; 1: the service failed (e.g. could not bind); 3: events were left undelivered.
    public var exitStatus: Int32 {
        if failure != nil { return 1 }
        return undelivered > 0 ? 3 : 0
    }
}

extension Logger {
    func with(component: String) -> Logger {
        var logger = self
        logger[metadataKey: "component"] = "\(component)"
        return logger
    }
}
