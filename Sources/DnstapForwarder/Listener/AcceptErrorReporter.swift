#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore

/// Sits on a listening channel in front of NIO's `AcceptBackoffHandler`: an error accepting a
/// connection (most often EMFILE, out of file descriptors under a flood) is counted and logged at
/// most once every 10 s, then passed on, so NIO pauses accepting for a second instead of spinning.
/// The connections already open are not touched.
final class AcceptErrorReporter: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    private let statistics: ForwarderStatistics
    private let logger: Logger
    private var log = RateLimitedLog(interval: .seconds(10))

    init(statistics: ForwarderStatistics, logger: Logger) {
        self.statistics = statistics
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        statistics.acceptError()
        if let notLogged = log.shouldLog() {
            var hint = ""
            if let error = error as? IOError, error.errnoCode == EMFILE || error.errnoCode == ENFILE {
                hint = ": out of file descriptors; raise the limit (ulimit -n) or lower -max-connections"
            }
            logger.warning(
                "cannot accept a connection\(hint); accepting again in 1 s",
                metadata: [
                    "error": "\(error)",
                    "accept_errors_total": "\(statistics.acceptErrors.load(ordering: .relaxed))",
                    "not_logged": "\(notLogged)",
                ])
        }
        context.fireErrorCaught(error)
    }
}
