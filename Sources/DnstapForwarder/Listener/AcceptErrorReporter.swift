#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore

/// Sits on a listening channel in front of NIO's `AcceptBackoffHandler`: an error accepting a
/// connection (most often EMFILE, out of file descriptors under a flood) is counted and logged at
/// most once every 10 s, then passed on, so NIO pauses accepting for a second. Out of descriptors,
/// it also releases the reserve descriptor, so that the pause can start (`DescriptorReserve`).
/// The connections already open are not touched.
final class AcceptErrorReporter: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    private let statistics: ForwarderStatistics
    private let reserve: DescriptorReserve
    private let logger: Logger
    private var log = RateLimitedLog(interval: .seconds(10))

    init(statistics: ForwarderStatistics, reserve: DescriptorReserve, logger: Logger) {
        self.statistics = statistics
        self.reserve = reserve
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        statistics.acceptError()
        let outOfDescriptors = (error as? IOError).map { $0.errnoCode == EMFILE || $0.errnoCode == ENFILE } ?? false
        if outOfDescriptors { reserve.release() }
        if let notLogged = log.shouldLog() {
            var hint = ""
            if outOfDescriptors {
                hint = ": out of file descriptors (raise ulimit -n or lower -max-connections); waiting connections are refused one a second"
            }
            logger.warning(
                "cannot accept a connection\(hint)",
                metadata: [
                    "error": "\(error)",
                    "accept_errors_total": "\(statistics.acceptErrors.load(ordering: .relaxed))",
                    "not_logged": "\(notLogged)",
                ])
        }
        context.fireErrorCaught(error)
    }
}

extension AcceptErrorReporter {
    /// Puts a reporter on a listening channel (for `serverChannelInitializer`).
    static func install(
        on channel: any Channel, statistics: ForwarderStatistics, reserve: DescriptorReserve, logger: Logger
    ) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(
                AcceptErrorReporter(statistics: statistics, reserve: reserve, logger: logger))
        }
    }
}
