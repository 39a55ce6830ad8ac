import NIOCore
import NIOSSL
import NIOTLS

/// Sits after the `NIOSSLServerHandler` of a TLS connection: when the handshake completes it
/// names the sender (the verified client certificate's name, else the peer address); when the
/// handshake fails it tells the listener why, so the refusal is counted and logged by reason.
/// The error still goes on down the pipeline, which closes the connection.
final class TLSSessionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let record: ConnectionRecord
    private let onVerified: @Sendable (ConnectionRecord) -> Void
    private let onRefused: @Sendable (ConnectionRecord, RefusalReason, String) -> Void
    private var handshakeDone = false
    private var reported = false

    init(
        record: ConnectionRecord, onVerified: @escaping @Sendable (ConnectionRecord) -> Void,
        onRefused: @escaping @Sendable (ConnectionRecord, RefusalReason, String) -> Void
    ) {
        self.record = record
        self.onVerified = onVerified
        self.onRefused = onRefused
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event, !handshakeDone {
            handshakeDone = true
            let certificate = try? context.pipeline.syncOperations.nioSSL_peerCertificate()
            let name = certificate.flatMap(TLSCredentials.senderName(of:))
            record.setSender(name ?? record.peerAddress ?? record.peer)
            onVerified(record)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        refuse(TLSCredentials.refusal(for: error), detail: "\(error)")
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Closed before the handshake ended without an error from TLS (the peer went away, or the
        // handshake timeout closed it): a failed handshake too, unless the listener closed it.
        if record.closeRequest == nil { refuse(.tlsHandshakeFailed, detail: "closed during the TLS handshake") }
        context.fireChannelInactive()
    }

    private func refuse(_ reason: RefusalReason, detail: String) {
        guard !handshakeDone, !reported else { return }
        reported = true
        record.noteRefused(reason, detail: detail)
        onRefused(record, reason, detail)
    }
}
